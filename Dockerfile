FROM python:3.12-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY api ./api
COPY worker ./worker
COPY shared ./shared
RUN pip install --no-cache-dir --no-deps . && useradd --system --uid 10001 aiapi
USER aiapi
EXPOSE 8000
CMD ["aiapi", "api", "--host", "0.0.0.0", "--port", "8000"]
