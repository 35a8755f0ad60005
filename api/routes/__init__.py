"""HTTP route handlers, each registered under ``/v1`` and the legacy ``/chaynsapi/v1``."""

from api.routes import admin, admin_keys
from api.routes.chat import chat_completions
from api.routes.health import healthz, readyz
from api.routes.models import list_models, retrieve_model
from api.routes.responses import (
    cancel_response,
    create_response,
    delete_response,
    list_input_items,
    retrieve_response,
)

__all__ = (
    "admin",
    "admin_keys",
    "cancel_response",
    "chat_completions",
    "create_response",
    "delete_response",
    "healthz",
    "list_input_items",
    "list_models",
    "readyz",
    "retrieve_model",
    "retrieve_response",
)
