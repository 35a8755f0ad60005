"""The Keys page: create API keys (shown once), change their limits, disable and revoke them, and their usage.

A key's own page shows its usage and spend per day, read from the request log.

It works on the same store as the admin API (:mod:`api.admin.keys`); config-file keys are shown, and
changed in the file only.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from api.access.admission import access_for
from api.access.keys import Access
from api.access.store import KeyUsage, StoredKey
from api.console.figures import LEDGER_DOWN, daily_usage
from api.console.guard import PREFIX
from api.console.render import page
from api.state import gateway_state
from shared.access_config import KeyPolicy
from shared.errors import Conflict, GatewayError

__all__ = ("HANDLERS",)


class KeyRow(msgspec.Struct, kw_only=True):
    key: KeyPolicy
    editable: bool
    usage: KeyUsage


_DAYS = 30
_LIMITS = ("rpm", "tpm", "budget_tokens", "budget_usd", "budget_usd_monthly")


def _models(text: str) -> list[str]:
    return [model.strip() for model in text.replace("\n", ",").split(",") if model.strip()]


def _limits(form: dict[str, str]) -> dict[str, Any]:
    """The form's limit fields as a policy's fields; msgspec checks their types and ranges."""
    return {
        "models": _models(form.get("models", "")),
        **{field: form.get(field, "").strip() or "0" for field in _LIMITS},
    }


async def _rows(access: Access) -> list[KeyRow]:
    now = int(time.time())
    keys: list[KeyPolicy] = [*access.config.keys, *await access.store.stored()]
    return [
        KeyRow(key=key, editable=isinstance(key, StoredKey), usage=await access.store.usage(key.name, now))
        for key in keys
    ]


async def _keys_page(request: Request[Any, Any, Any], status: int = 200, **context: Any) -> Template:
    access = access_for(request)
    return page(request, "keys", status, rows=await _rows(access), mode=access.config.mode, **context)


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {name: value for name, value in (await request.form()).items() if isinstance(value, str)}


@get("/keys")
async def keys(request: Request[Any, Any, Any]) -> Template:
    return await _keys_page(request)


@get("/keys/{name:str}")
async def key_detail(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    """One key: its limits and its usage and spend per day over the last 30 days, from the request log."""
    access = access_for(request)
    key = next((key for key in access.config.keys if key.name == name), None) or await access.store.find(name)
    if key is None:
        return await _keys_page(request, 404, error=f"No key named '{name}'.")
    since_ms = (int(time.time()) // 86400 - _DAYS + 1) * 86_400_000
    try:
        days, error = await daily_usage(gateway_state(request).ledger.engine, name, since_ms), None
    except LEDGER_DOWN:
        days, error = [], "The request log's database is unavailable: the usage per day is not shown."
    usage = await access.store.usage(name, int(time.time()))
    return page(request, "key", key=key, usage=usage, days=days, error=error, current="keys")


@post("/keys", status_code=200)
async def create_key(request: Request[Any, Any, Any]) -> Template:
    form = await _form(request)
    access = access_for(request)
    try:
        policy = msgspec.convert({"name": form.get("name", "").strip(), **_limits(form)}, KeyPolicy, strict=False)
        if any(key.name == policy.name for key in access.config.keys):
            raise Conflict(f"A key named '{policy.name}' is in the config file.", code="config_key")
        secret, record = await access.store.create(policy)
    except (msgspec.ValidationError, GatewayError) as exc:
        return await _keys_page(request, 400, error=str(exc), form=form)
    access.forget()
    return await _keys_page(request, 201, created=record, secret=secret)


@post("/keys/{name:str}/limits", status_code=303)
async def change_limits(request: Request[Any, Any, Any], name: FromPath[str]) -> Template | Redirect:
    access = access_for(request)
    key = await access.store.find(name)
    if key is None:
        return await _keys_page(request, 404, error=f"No key named '{name}' was created here.")
    try:
        changed = msgspec.convert(
            {**msgspec.structs.asdict(key), **_limits(await _form(request))}, StoredKey, strict=False
        )
    except msgspec.ValidationError as exc:
        return await _keys_page(request, 400, error=f"Key '{name}': {exc}")
    await access.store.replace(changed)
    access.forget()
    return Redirect(f"{PREFIX}/keys", status_code=303)


@post("/keys/{name:str}/enabled", status_code=303)
async def toggle_key(request: Request[Any, Any, Any], name: FromPath[str]) -> Template | Redirect:
    access = access_for(request)
    key = await access.store.find(name)
    if key is None:
        return await _keys_page(request, 404, error=f"No key named '{name}' was created here.")
    await access.store.replace(msgspec.structs.replace(key, enabled=(await _form(request)).get("enabled") == "1"))
    access.forget()
    return Redirect(f"{PREFIX}/keys", status_code=303)


@post("/keys/{name:str}/revoke", status_code=303)
async def revoke_key(request: Request[Any, Any, Any], name: FromPath[str]) -> Template | Redirect:
    access = access_for(request)
    if not await access.store.delete(name):
        return await _keys_page(request, 404, error=f"No key named '{name}' was created here.")
    access.forget()
    return Redirect(f"{PREFIX}/keys", status_code=303)


HANDLERS = (keys, key_detail, create_key, change_limits, toggle_key, revoke_key)
