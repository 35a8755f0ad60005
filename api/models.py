"""``GET /v1/models`` and ``GET /v1/models/{model}``: what the configured channels serve to this key.

A client that sends ``anthropic-version`` (Anthropic's SDKs, Claude Code) gets the list in Anthropic's shape.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath

from api.access.admission import authenticate
from api.openapi import documented
from api.state import gateway_state
from shared.access_config import KeyPolicy
from shared.errors import ModelNotFound

__all__ = ("HANDLERS", "list_models", "retrieve_model")

_CREATED = 1_700_000_000
"""A fixed timestamp: configured models have no creation date, and clients only need an int."""
_CREATED_AT = "2023-11-14T22:13:20Z"
"""The same moment as Anthropic writes it (RFC 3339)."""
_ANTHROPIC = "anthropic-version"


class Model(msgspec.Struct):
    id: str
    owned_by: str
    created: int = _CREATED
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    data: list[Model]
    object: Literal["list"] = "list"


class AnthropicModel(msgspec.Struct):
    id: str
    display_name: str
    created_at: str = _CREATED_AT
    type: Literal["model"] = "model"


class AnthropicModelList(msgspec.Struct):
    data: list[AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None


_encoder = msgspec.json.Encoder()


def _visible(key: KeyPolicy | None, model: str) -> bool:
    """A key limited to some models sees only those."""
    return key is None or not key.models or model in key.models


@get("/models", operation_class=documented(ModelList))
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    key = await authenticate(request)
    catalog = gateway_state(request).catalog
    visible = [(name, owner) for name, owner in catalog.models() if _visible(key, name)]
    body: ModelList | AnthropicModelList = ModelList([Model(name, owner) for name, owner in visible])
    if _ANTHROPIC in request.headers:
        names = [name for name, _ in visible]
        data = [AnthropicModel(name, name) for name in names]
        body = AnthropicModelList(data, False, names[0] if names else None, names[-1] if names else None)
    return Response(_encoder.encode(body), media_type="application/json")


@get("/models/{model:path}", operation_class=documented(Model))
async def retrieve_model(request: Request[Any, Any, Any], model: FromPath[str]) -> Response[bytes]:
    key = await authenticate(request)
    name = model.lstrip("/")
    owners = dict(gateway_state(request).catalog.models())
    if name not in owners or not _visible(key, name):
        raise ModelNotFound(name)
    found: Model | AnthropicModel = Model(name, owners[name])
    if _ANTHROPIC in request.headers:
        found = AnthropicModel(name, name)
    return Response(_encoder.encode(found), media_type="application/json")


HANDLERS = (list_models, retrieve_model)
"""Route handlers, mounted under each public prefix."""
