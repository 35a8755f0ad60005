"""Request bodies through the real API process: the checks every body passes before anything decodes it
(in open and keys mode, on every route that takes a body), the per-process bound on bodies being read,
the memory a burst of large bodies leaves behind, and a client that leaves mid-upload."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

ADMIN_KEY = "admin-secret-key-bodies"
CLIENT_KEY = "sk-e2e-bodies-key"
MOCK = '[[channels]]\nname = "mock"\ntype = "mock"\nmodels = ["mock-1"]\n'
KEYS = '[access]\nmode = "keys"\n\n[[access.keys]]\nname = "main"\nkey_env = "AIAPI_E2E_BODIES_KEY"\n\n'
MB = 1024 * 1024


@pytest.fixture(scope="module", params=["open", "keys"])
def gateway(request: pytest.FixtureRequest, redis_url: str) -> Iterator[GatewayProcesses]:
    config = (KEYS if request.param == "keys" else "") + MOCK
    env = {"AIAPI_ADMIN_KEY": ADMIN_KEY, "AIAPI_E2E_BODIES_KEY": CLIENT_KEY}
    with GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0, env=env) as processes:
        yield processes


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


ROUTES = [
    ("POST", "/v1/chat/completions", b'{"model": "mock-1", "messages": %s}', CLIENT_KEY),
    ("POST", "/v1/responses", b'{"model": "mock-1", "input": %s}', CLIENT_KEY),
    ("PUT", "/admin/channels/c", b'{"name": "c", "type": "mock", "models": %s}', ADMIN_KEY),
    ("PUT", "/admin/channels/mock/accounts/a", b'{"name": "a", "api_key": %s}', ADMIN_KEY),
    ("POST", "/admin/keys", b'{"name": "k", "models": %s}', ADMIN_KEY),
    ("PATCH", "/admin/keys/main", b'{"models": %s}', ADMIN_KEY),
]
BODIES = {
    "nested": _deep(100_000),
    "invalid UTF-8": b'"\xed\xa0\x80"',
}


@pytest.mark.parametrize(("method", "path", "template", "key"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
@pytest.mark.parametrize("part", list(BODIES), ids=list(BODIES))
def test_a_body_no_decoder_may_read_is_a_400_before_any_decoding(
    gateway: GatewayProcesses, method: str, path: str, template: bytes, key: str, part: str
) -> None:
    # Regression: in keys mode, admission read the model out of the body before the checks ran: a
    # RecursionError (or UnicodeDecodeError), answered 500.
    reply = httpx.request(
        method,
        gateway.base_url.removesuffix("/v1") + path,
        content=template % BODIES[part],
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "nested too deeply" in error["message"] or "not valid UTF-8" in error["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("part", list(BODIES), ids=list(BODIES))
def test_the_messages_front_door_refuses_such_a_body_in_anthropics_shape(
    gateway: GatewayProcesses, path: str, part: str
) -> None:
    reply = httpx.post(
        gateway.base_url.removesuffix("/v1") + path,
        content=b'{"model": "mock-1", "max_tokens": 5, "messages": %s}' % BODIES[part],
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    assert "nested too deeply" in body["error"]["message"] or "not valid UTF-8" in body["error"]["message"]


@pytest.fixture(scope="module")
def small_budget(redis_url: str) -> Iterator[GatewayProcesses]:
    config = f"[server]\nmax_body_bytes = {8 * MB}\nmax_body_bytes_in_flight = {12 * MB}\n\n{MOCK}"
    with GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0) as processes:
        yield processes


def _port(gateway: GatewayProcesses) -> int:
    return int(gateway.base_url.rsplit(":", 1)[1].split("/")[0])


def _open_upload(gateway: GatewayProcesses, length: int, sent: bytes) -> socket.socket:
    """A chat request declaring ``length`` bytes of body, of which only ``sent`` has been sent."""
    sock = socket.create_connection(("127.0.0.1", _port(gateway)))
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {length}\r\n\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def _metric(gateway: GatewayProcesses, name: str, **labels: str) -> float:
    text = httpx.get(f"{gateway.base_url.removesuffix('/v1')}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _body(size: int) -> bytes:
    return b'{"model": "nope", "messages": [{"role": "user", "content": "' + b"x" * (size - 100) + b'"}]}'


def _ask_large(client: openai.OpenAI) -> None:
    """A 5 MB chat request through the SDK, for a model nobody serves: 404 once it is read and decoded."""
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x" * 5 * MB}])


def test_a_body_past_the_bound_of_bodies_being_read_gets_a_quick_503(small_budget: GatewayProcesses) -> None:
    client = openai.OpenAI(base_url=small_budget.base_url, api_key="unused", max_retries=0)
    held = _open_upload(small_budget, 8 * MB, b'{"model": ')  # 8 of the 12 MB, declared
    try:
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as refused:
            _ask_large(client)
        assert time.monotonic() - started < 2
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.response.json()["error"]["code"] == "server_busy"
    finally:
        held.close()
    time.sleep(0.2)
    with pytest.raises(openai.NotFoundError):  # the held upload's share was given back: read, decoded, 404
        _ask_large(client)


def test_a_client_leaving_mid_upload_is_logged_as_a_client_close(small_budget: GatewayProcesses) -> None:
    before = _metric(small_budget, "aiapi_http_requests_total", route="/v1/chat/completions", status="499")
    upload = _open_upload(small_budget, MB, b'{"model": "mock-1", "messages": [')
    time.sleep(0.2)
    upload.close()
    deadline = time.monotonic() + 5
    while _metric(small_budget, "aiapi_http_requests_total", route="/v1/chat/completions", status="499") == before:
        assert time.monotonic() < deadline, small_budget.logs()
        time.sleep(0.05)
    assert _metric(small_budget, "aiapi_http_requests_total", route="/v1/chat/completions", status="500") == 0
    assert "POST /v1/chat/completions 499" in small_budget.logs()


@pytest.fixture(scope="module")
def large_budget(redis_url: str) -> Iterator[GatewayProcesses]:
    # The default bound; deadlines long enough for a gigabyte of uploads on a loaded machine.
    config = f"[server]\nheader_timeout_s = 60\nbody_timeout_s = 300\n\n{MOCK}"
    with GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0) as processes:
        yield processes


def test_memory_taken_by_a_burst_of_large_bodies_is_given_back(large_budget: GatewayProcesses) -> None:
    # Regression: 200 concurrent 5 MB bodies took the API from 58 MB to 964 MB, and 616 MB stayed held.
    assert large_budget.api is not None
    api = psutil.Process(large_budget.api.pid)
    baseline = api.memory_info().rss
    peak = baseline
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, api.memory_info().rss)
            time.sleep(0.02)

    async def burst() -> Counter[int]:
        body = _body(5 * MB)
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=large_budget.base_url, timeout=60, limits=limits) as http:
            replies = await asyncio.gather(*(http.post("/chat/completions", content=body) for _ in range(200)))
        return Counter(reply.status_code for reply in replies)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = asyncio.run(burst())
    finally:
        sampling = False
        sampler.join()
    time.sleep(3)
    after = api.memory_info().rss
    print(
        f"\nRSS: {baseline / MB:.0f} MB before, {peak / MB:.0f} MB at most, {after / MB:.0f} MB 3 s after; {statuses}"
    )
    assert set(statuses) <= {404, 503} and statuses[404] >= 40, "the default bound (256 MB) admits ~50 at once"
    assert peak - baseline < 600 * MB, "bodies being read at once are bounded"
    assert after - baseline < 100 * MB, "the memory the bodies took is given back"
