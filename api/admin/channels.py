"""The admin API: channels and their accounts, changed at runtime and stored in Redis.

Served only when the admin key is set (``[admin] api_key_env``, by default ``AIAPI_ADMIN_KEY``);
every request must bear it as ``Authorization: Bearer <key>``. Changes reach every API and worker
process within seconds (see :mod:`shared.channel_store`). Keys are never returned, only masked.

    GET    /admin/channels                              every channel in force, with account health
    GET    /admin/channels/{name}
    PUT    /admin/channels/{name}                       create or replace (body: a channel, as in the config;
                                                        its name may be left out, the path gives it)
    DELETE /admin/channels/{name}
    PUT    /admin/channels/{name}/accounts/{account}    create or replace one account
    DELETE /admin/channels/{name}/accounts/{account}
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Response, delete, get, put
from litestar.params import FromPath

from api.admin._common import Deleted, json_response
from api.intake.decoding import decode_body
from api.openapi import documented
from api.state import GatewayState, gateway_state
from shared.config import (
    AccountConfig,
    AnthropicChannel,
    ChannelConfig,
    ChaynsChannel,
    HttpChannel,
    MockChannel,
    OpenAIChannel,
    ResponsesChannel,
    channel_problem,
)
from shared.errors import InvalidRequest, NotFound
from shared.keys import ChannelKeys

__all__ = (
    "HANDLERS",
    "ChannelView",
    "channel_view",
    "delete_account",
    "delete_channel",
    "get_channel",
    "list_channels",
    "put_account",
    "put_channel",
)


class AccountView(msgspec.Struct):
    name: str
    enabled: bool
    has_key: bool
    cooling_down: str | None
    """Why the account is resting after a failure, while it is."""


class ChannelView(msgspec.Struct):
    name: str
    source: Literal["config", "admin"]
    running: int
    """Generations on the channel now (counted only for channels with a concurrency limit)."""
    accounts: list[AccountView]
    config: ChannelConfig
    """The channel as configured, with keys masked."""
    object: Literal["channel"] = "channel"


class ChannelList(msgspec.Struct):
    data: list[ChannelView]
    object: Literal["list"] = "list"


HttpChannels = OpenAIChannel | ResponsesChannel | AnthropicChannel | ChaynsChannel

_channel_decoder = msgspec.json.Decoder(ChannelConfig)
_account_decoder = msgspec.json.Decoder(AccountConfig)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_PATHS = "/channels"


def _mask(key: str | None) -> str | None:
    if key is None:
        return None
    return f"{key[:3]}…{key[-4:]}" if len(key) > 12 else "…"


def _masked(channel: ChannelConfig) -> ChannelConfig:
    if not isinstance(channel, HttpChannel):
        return channel
    accounts = [msgspec.structs.replace(a, api_key=_mask(a.api_key)) for a in channel.accounts]
    return msgspec.structs.replace(channel, api_key=_mask(channel.api_key), accounts=accounts)


def _kept(key: str | None, current: str | None, *, param: str, moved: bool = False) -> str | None:
    """A key sent back exactly as we showed it masked means "unchanged": keep the real one.

    Not when the channel now sends its keys elsewhere (``moved``): a masked view PUT back with another
    ``base_url`` would otherwise send the real key to a host of the caller's choosing.
    """
    if key is None or current is None or key != _mask(current):
        return key
    if moved:
        raise InvalidRequest(
            f"'{param}' is masked, but the channel's destination changed (type, base_url or auth_url): "
            "send the key itself again.",
            param=param,
        )
    return current


def _destination(channel: HttpChannel) -> tuple[str, ...]:
    """Where a channel's keys are sent: its protocol and hosts."""
    auth_url = channel.auth_url if isinstance(channel, ChaynsChannel) else ""
    return (str(channel.__struct_config__.tag), channel.base_url.rstrip("/"), auth_url.rstrip("/"))


def _unmasked(channel: ChannelConfig, current: ChannelConfig | None) -> ChannelConfig:
    """``channel`` with masked keys (a GET's answer edited and PUT back) replaced by the keys in force."""
    if not isinstance(channel, HttpChannel) or not isinstance(current, HttpChannel):
        return channel
    moved = _destination(channel) != _destination(current)
    api_key = _kept(channel.api_key, current.api_key, param="api_key", moved=moved)
    before = {account.name: account.api_key for account in current.accounts}
    accounts = [
        msgspec.structs.replace(
            account,
            api_key=_kept(account.api_key, before.get(account.name), param=f"accounts[{n}].api_key", moved=moved),
        )
        for n, account in enumerate(channel.accounts)
    ]
    return msgspec.structs.replace(channel, api_key=api_key, accounts=accounts)


def _named(body: bytes, name: str) -> bytes:
    """The channel body with its name taken from the path; a body naming another channel is refused."""
    fields = decode_body(_object_decoder, body)
    if "name" in fields and msgspec.json.decode(fields["name"]) != name:
        raise InvalidRequest(f"The body names another channel than the path's '{name}'.", param="name")
    fields["name"] = msgspec.Raw(msgspec.json.encode(name))
    return msgspec.json.encode(fields)


async def channel_view(state: GatewayState, channel: ChannelConfig) -> ChannelView:
    """The channel as the admin API and the console show it: keys masked, with its accounts' health."""
    redis = state.redis
    configs = channel.credential_configs()
    health = await redis.mget([ChannelKeys.health(channel.name, config.name) for config in configs])
    accounts = [
        AccountView(config.name, config.enabled, config.resolve() is not None, reason.decode() if reason else None)
        for config, reason in zip(configs, health, strict=True)
    ]
    running = await redis.zcard(ChannelKeys.running(channel.name)) if channel.max_concurrency else 0
    source: Literal["config", "admin"] = "admin" if channel.name in await state.channels.stored() else "config"
    return ChannelView(channel.name, source, running, accounts, _masked(channel))


async def _current(state: GatewayState, name: str) -> ChannelConfig | None:
    return next((channel for channel in await state.channels.effective() if channel.name == name), None)


async def _find(state: GatewayState, name: str) -> ChannelConfig:
    channel = await _current(state, name)
    if channel is None:
        raise NotFound(f"No channel named '{name}'.", code="channel_not_found")
    return channel


async def _store(state: GatewayState, channel: ChannelConfig) -> None:
    problem = channel_problem(channel)
    if problem:
        raise InvalidRequest(f"Channel '{channel.name}': {problem}.")
    await state.channels.put(channel)
    await state.reload_channels()


@get(_PATHS, operation_class=documented(ChannelList))
async def list_channels(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = gateway_state(request)
    return json_response(ChannelList([await channel_view(state, c) for c in await state.channels.effective()]))


@get(f"{_PATHS}/{{name:str}}", operation_class=documented(ChannelView))
async def get_channel(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    state = gateway_state(request)
    return json_response(await channel_view(state, await _find(state, name)))


@put(
    f"{_PATHS}/{{name:str}}",
    status_code=200,
    operation_class=documented(ChannelView, body=ChannelConfig),
)
async def put_channel(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    state = gateway_state(request)
    channel = decode_body(_channel_decoder, _named(await request.body(), name))
    channel = _unmasked(channel, await _current(state, name))
    await _store(state, channel)
    return json_response(await channel_view(state, channel))


@delete(f"{_PATHS}/{{name:str}}", status_code=200, operation_class=documented(Deleted))
async def delete_channel(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    state = gateway_state(request)
    await _find(state, name)
    await state.channels.remove(name)
    await state.reload_channels()
    return json_response(Deleted(name))


async def _http_channel(state: GatewayState, name: str) -> HttpChannels:
    channel = await _find(state, name)
    if isinstance(channel, MockChannel):
        raise InvalidRequest(f"Channel '{name}' takes no accounts.")
    return channel


@put(
    f"{_PATHS}/{{name:str}}/accounts/{{account:str}}",
    status_code=200,
    operation_class=documented(ChannelView, body=AccountConfig),
)
async def put_account(request: Request[Any, Any, Any], name: FromPath[str], account: FromPath[str]) -> Response[bytes]:
    state = gateway_state(request)
    channel = await _http_channel(state, name)
    body = decode_body(_account_decoder, await request.body())
    if body.name != account:
        raise InvalidRequest(f"The body names account '{body.name}' but the path '{account}'.", param="name")
    previous = next((a.api_key for a in channel.accounts if a.name == account), None)
    body = msgspec.structs.replace(body, api_key=_kept(body.api_key, previous, param="api_key"))
    accounts = [a for a in channel.accounts if a.name != account] + [body]
    updated = msgspec.structs.replace(channel, accounts=accounts)
    await _store(state, updated)
    return json_response(await channel_view(state, updated))


@delete(
    f"{_PATHS}/{{name:str}}/accounts/{{account:str}}",
    status_code=200,
    operation_class=documented(Deleted),
)
async def delete_account(
    request: Request[Any, Any, Any], name: FromPath[str], account: FromPath[str]
) -> Response[bytes]:
    state = gateway_state(request)
    channel = await _http_channel(state, name)
    if all(a.name != account for a in channel.accounts):
        raise NotFound(f"Channel '{name}' has no account '{account}'.", code="account_not_found")
    await _store(state, msgspec.structs.replace(channel, accounts=[a for a in channel.accounts if a.name != account]))
    return json_response(Deleted(account))


HANDLERS = (list_channels, get_channel, put_channel, delete_channel, put_account, delete_account)
