"""HTTP route handlers, each registered under ``/v1`` and the legacy ``/chaynsapi/v1``."""

from api.routes.chat import chat_completions
from api.routes.models import list_models, retrieve_model

__all__ = ("chat_completions", "list_models", "retrieve_model")
