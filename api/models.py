"""``GET /v1/models`` and ``GET /v1/models/{model}``: what the configured channels serve to this key."""

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


class Model(msgspec.Struct):
    id: str
    owned_by: str
    created: int = _CREATED
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    data: list[Model]
    object: Literal["list"] = "list"


_encoder = msgspec.json.Encoder()


def _visible(key: KeyPolicy | None, model: str) -> bool:
    """A key limited to some models sees only those."""
    return key is None or not key.models or model in key.models


@get("/models", operation_class=documented(ModelList))
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    key = await authenticate(request)
    catalog = gateway_state(request).catalog
    body = ModelList([Model(name, owner) for name, owner in catalog.models() if _visible(key, name)])
    return Response(_encoder.encode(body), media_type="application/json")


@get("/models/{model:path}", operation_class=documented(Model))
async def retrieve_model(request: Request[Any, Any, Any], model: FromPath[str]) -> Response[bytes]:
    key = await authenticate(request)
    name = model.lstrip("/")
    owners = dict(gateway_state(request).catalog.models())
    if name not in owners or not _visible(key, name):
        raise ModelNotFound(name)
    return Response(_encoder.encode(Model(name, owners[name])), media_type="application/json")


HANDLERS = (list_models, retrieve_model)
"""Route handlers, mounted under each public prefix."""
