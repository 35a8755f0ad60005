"""The admin API for API keys: create, list, change, delete, and read their usage.

Guarded like the rest of the admin API (:func:`api.admin.channels.require_admin`). The server generates
each key and returns it once, in the answer to its creation; only its SHA-256 digest is stored. Keys from
the config file are listed and their usage is readable, but they are changed in the file only.

    POST   /admin/keys                  create (body: name, models, rpm, tpm, budget_tokens, budget_usd,
                                        budget_usd_monthly, enabled)
    GET    /admin/keys                  every key, config and admin-created, never the key itself
    GET    /admin/keys/{name}
    PATCH  /admin/keys/{name}           change limits (body: any of models, rpm, tpm, budgets, enabled)
    DELETE /admin/keys/{name}           revoke it, with its usage (other API processes: within cache_s)
    GET    /admin/keys/{name}/usage     usage per model and in total, and the current windows

A change takes effect at once on the API process that made it, and within ``[access] cache_s`` on the
others.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath
from msgspec import UNSET, UnsetType

from api.access.admission import access_for
from api.access.keys import Access
from api.access.store import KeyUsage, StoredKey
from api.admin._common import Deleted, json_response
from api.intake.decoding import decode_body
from api.openapi import documented
from shared.access_config import Count, KeyPolicy
from shared.errors import Conflict, NotFound
from shared.ledger_config import Usd

__all__ = ("HANDLERS", "create_key", "delete_key", "get_key", "key_usage", "list_keys", "update_key")

_PATHS = "/keys"
_ONE = f"{_PATHS}/{{name:str}}"


class KeyView(msgspec.Struct, kw_only=True):
    name: str
    source: Literal["config", "admin"]
    models: list[str]
    rpm: int
    tpm: int
    budget_tokens: int
    budget_usd: float
    budget_usd_monthly: float
    enabled: bool
    created: int | None
    key: str | UnsetType = UNSET
    """The key itself: only in the answer to its creation, never again."""
    object: Literal["api_key"] = "api_key"


class KeyList(msgspec.Struct):
    data: list[KeyView]
    object: Literal["list"] = "list"


class KeyChanges(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    models: list[str] | UnsetType = UNSET
    rpm: Count | UnsetType = UNSET
    tpm: Count | UnsetType = UNSET
    budget_tokens: Count | UnsetType = UNSET
    budget_usd: Usd | UnsetType = UNSET
    budget_usd_monthly: Usd | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


_policy_decoder = msgspec.json.Decoder(KeyPolicy)
_changes_decoder = msgspec.json.Decoder(KeyChanges)


def _view(key: KeyPolicy, *, secret: str | UnsetType = UNSET) -> KeyView:
    stored = isinstance(key, StoredKey)
    return KeyView(
        name=key.name,
        source="admin" if stored else "config",
        models=key.models,
        rpm=key.rpm,
        tpm=key.tpm,
        budget_tokens=key.budget_tokens,
        budget_usd=key.budget_usd,
        budget_usd_monthly=key.budget_usd_monthly,
        enabled=key.enabled,
        created=key.created if isinstance(key, StoredKey) else None,
        key=secret,
    )


def _configured(access: Access, name: str) -> KeyPolicy | None:
    return next((key for key in access.config.keys if key.name == name), None)


def _from_config(name: str) -> Conflict:
    return Conflict(f"The key '{name}' comes from the config file; change it there.", code="config_key")


async def _find(access: Access, name: str) -> KeyPolicy:
    key = _configured(access, name) or await access.store.find(name)
    if key is None:
        raise NotFound(f"No API key named '{name}'.", code="key_not_found")
    return key


@post(_PATHS, status_code=201, operation_class=documented(KeyView, body=KeyPolicy, status=201))
async def create_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    access = access_for(request)
    policy = decode_body(_policy_decoder, await request.body())
    if _configured(access, policy.name) is not None:
        raise _from_config(policy.name)
    secret, record = await access.store.create(policy)
    access.forget()
    return json_response(_view(record, secret=secret), status=201)


@get(_PATHS, operation_class=documented(KeyList))
async def list_keys(request: Request[Any, Any, Any]) -> Response[bytes]:
    access = access_for(request)
    keys: list[KeyPolicy] = [*access.config.keys, *await access.store.stored()]
    return json_response(KeyList([_view(key) for key in keys]))


@get(_ONE, operation_class=documented(KeyView))
async def get_key(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    return json_response(_view(await _find(access_for(request), name)))


@patch(_ONE, status_code=200, operation_class=documented(KeyView, body=KeyChanges))
async def update_key(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    access = access_for(request)
    key = await _find(access, name)
    if not isinstance(key, StoredKey):
        raise _from_config(name)
    changes = decode_body(_changes_decoder, await request.body())
    fields = {field: value for field, value in msgspec.structs.asdict(changes).items() if value is not UNSET}
    updated = msgspec.structs.replace(key, **fields)
    if not await access.store.replace(updated):
        raise NotFound(f"No API key named '{name}'.", code="key_not_found")
    access.forget()
    return json_response(_view(updated))


@delete(_ONE, status_code=200, operation_class=documented(Deleted))
async def delete_key(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    access = access_for(request)
    if _configured(access, name) is not None:
        raise _from_config(name)
    if not await access.store.delete(name):
        raise NotFound(f"No API key named '{name}'.", code="key_not_found")
    access.forget()
    return json_response(Deleted(name))


@get(f"{_ONE}/usage", operation_class=documented(KeyUsage))
async def key_usage(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    access = access_for(request)
    await _find(access, name)
    return json_response(await access.store.usage(name, int(time.time())))


HANDLERS = (create_key, list_keys, get_key, update_key, delete_key, key_usage)
