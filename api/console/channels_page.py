"""The Channels page: every channel in force, its accounts (keys masked) and health; enable, disable, add, edit.

Health is the accounts' cooldowns (with the failure that started each), the generations running on the
channel, and its last hour in the request log: requests, errors and time to first token.

Changes go through the same store as the admin API (:mod:`api.admin.channels`), so every API and worker
process picks them up within seconds. A key field left empty when editing keeps the key in force.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from api.admin.channels import channel_view
from api.console.figures import LEDGER_DOWN
from api.console.guard import PREFIX
from api.console.overview import overview_figures
from api.console.render import page
from api.state import GatewayState, gateway_state
from shared.config import ChannelConfig, HttpChannel, channel_problem
from shared.keys import ChannelKeys

__all__ = ("HANDLERS",)

CHANNEL_TYPES = ("openai", "openai_responses", "anthropic", "chayns", "mock")
_TEXT_FIELDS = ("name", "type", "base_url", "models", "api_key", "priority", "weight", "max_concurrency")


async def _find(state: GatewayState, name: str) -> ChannelConfig | None:
    return next((channel for channel in await state.channels.effective() if channel.name == name), None)


def _prefill(channel: ChannelConfig) -> dict[str, str]:
    """The edit form's fields for ``channel``; its key is never put in the page."""
    fields = {
        "name": channel.name,
        "type": str(msgspec.to_builtins(channel)["type"]),
        "models": ", ".join(model if isinstance(model, str) else model.name for model in channel.models),
        "priority": str(channel.priority),
        "weight": str(channel.weight),
        "max_concurrency": str(channel.max_concurrency),
        "api_key": "",
    }
    if isinstance(channel, HttpChannel):
        fields["base_url"] = channel.base_url
    return fields


async def _channels_page(request: Request[Any, Any, Any], status: int = 200, **context: Any) -> Template:
    state = gateway_state(request)
    views = [await channel_view(state, channel) for channel in await state.channels.effective()]
    running = {
        view.name: [member.decode() for member in await state.redis.zrange(ChannelKeys.running(view.name), 0, 19)]
        for view in views
        if view.running
    }
    context.setdefault("form", {"type": "openai", "priority": "0", "weight": "1", "max_concurrency": "0"})
    kinds = {view.name: type(view.config).__struct_config__.tag for view in views}
    try:
        last_hour, _, _ = await overview_figures(request).figures()
        health = {row.group: row for row in last_hour.by_channel}
    except LEDGER_DOWN:
        health = {}
        context.setdefault("note", "The request log is unavailable: the channels' last hour is not shown.")
    return page(
        request,
        "channels",
        status,
        channels=views,
        kinds=kinds,
        running=running,
        health=health,
        types=CHANNEL_TYPES,
        **context,
    )


@get("/channels")
async def channels(request: Request[Any, Any, Any], edit: FromQuery[str | None] = None) -> Template:
    if edit:
        channel = await _find(gateway_state(request), edit)
        if channel is not None:
            return await _channels_page(request, form=_prefill(channel), editing=channel.name)
    return await _channels_page(request)


def _channel(form: dict[str, str], current: ChannelConfig | None) -> ChannelConfig:
    """The channel the form describes, merged over the one in force (so fields the form lacks are kept)."""
    raw: dict[str, Any] = msgspec.to_builtins(current) if current is not None else {}
    raw.update(
        name=form.get("name", "").strip(),
        type=form.get("type", ""),
        models=[model.strip() for model in form.get("models", "").split(",") if model.strip()],
        priority=form.get("priority", "0").strip() or "0",
        weight=form.get("weight", "1").strip() or "1",
        max_concurrency=form.get("max_concurrency", "0").strip() or "0",
    )
    if raw["type"] != "mock":
        raw["base_url"] = form.get("base_url", "").strip()
        if form.get("api_key", "").strip():
            raw["api_key"], raw["api_key_env"], raw["accounts"] = form["api_key"].strip(), None, []
    else:
        for field in ("base_url", "api_key", "api_key_env", "accounts"):
            raw.pop(field, None)
    channel: ChannelConfig = msgspec.convert(raw, ChannelConfig, strict=False)
    return channel


@post("/channels", status_code=303)
async def save_channel(request: Request[Any, Any, Any]) -> Template | Redirect:
    state = gateway_state(request)
    form = {name: value for name, value in (await request.form()).items() if isinstance(value, str)}
    shown = {name: form.get(name, "") for name in _TEXT_FIELDS if name != "api_key"}
    current = await _find(state, form.get("name", "").strip())
    editing = form.get("editing") or None
    if current is not None and editing != current.name:
        return await _channels_page(request, 400, form=shown, error=f"A channel named '{current.name}' exists already.")
    try:
        channel = _channel(form, current)
    except msgspec.ValidationError as exc:
        return await _channels_page(request, 400, form=shown, editing=editing, error=str(exc))
    problem = channel_problem(channel)
    if problem:
        return await _channels_page(
            request, 400, form=shown, editing=editing, error=f"Channel '{channel.name}': {problem}"
        )
    await state.channels.put(channel)
    await state.reload_channels()
    return Redirect(f"{PREFIX}/channels", status_code=303)


@post("/channels/{name:str}/enabled", status_code=303)
async def toggle_channel(request: Request[Any, Any, Any], name: FromPath[str]) -> Template | Redirect:
    state = gateway_state(request)
    channel = await _find(state, name)
    if channel is None:
        return await _channels_page(request, 404, error=f"No channel named '{name}'.")
    enabled = (await request.form()).get("enabled") == "1"
    await state.channels.put(msgspec.structs.replace(channel, enabled=enabled))
    await state.reload_channels()
    return Redirect(f"{PREFIX}/channels", status_code=303)


HANDLERS = (channels, save_channel, toggle_channel)
