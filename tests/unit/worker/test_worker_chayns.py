"""The chayns provider against httpx.MockTransport: threads, polling, thread reuse, images, errors."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import math
import re
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from shared.config import Account, ChaynsChannel
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamTimeout
from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import FunctionTool, GenerationRequest, ImagePart, Message, TextPart, ToolCall
from worker.providers import ProviderOutput, UpstreamCall
from worker.providers import chayns as chayns_module
from worker.providers.chayns import ChaynsProvider
from worker.providers.chayns_thread import ThreadState, decode_state, fingerprint, render
from worker.registry import default_registry
from worker.toolbridge.provider import BridgedProvider

Override = Callable[[httpx.Request], httpx.Response | None]
PNG = b"\x89PNG\r\n\x1a\nfake"
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


class MemoryState:
    """An in-memory SessionState, as one conversation's Redis key would behave."""

    def __init__(self, value: bytes | None = None) -> None:
        self.value = value
        self.saves = 0

    async def load(self) -> bytes | None:
        return self.value

    async def save(self, value: bytes) -> None:
        self.value = value
        self.saves += 1


class Upstream:
    """chayns' endpoints in memory. The agent answers ``answer <n>`` to the n-th posted message: the first
    ``empty_polls`` polls get 204, the next one the posted message and the agent's reasoning only, the
    ones after that the answer too. ``override`` may answer any request instead."""

    def __init__(self, *, empty_polls: int = 2, catalog: list[dict[str, str]] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.catalog = catalog or [
            {"showName": "Model A", "personId": "AGENT-A"},
            {"showName": "Model B", "personId": "AGENT-B"},
        ]
        self.empty_polls = empty_polls
        self.override: Override = lambda _: None
        self.reply: str | None = None
        self._clock = 0
        self._posted = 0
        self.posted_at: list[str] = []
        """The ``creationTime`` of each posted message."""
        self._waiting = 0

    def routes(self, name: str) -> list[httpx.Request]:
        return [r for r in self.requests if _route(r) == name]

    def bodies(self, name: str) -> list[Any]:
        return [msgspec.json.decode(r.content) for r in self.routes(name)]

    def _time(self) -> str:
        self._clock += 1
        return f"2026-01-01T00:00:{self._clock:02d}.000Z"

    def _posted_message(self) -> dict[str, Any]:
        self._posted += 1
        self._waiting = self.empty_polls + 1
        self.posted_at.append(self._time())
        return {"creationTime": self.posted_at[-1], "author": {"id": "U-1"}, "typeId": 1, "text": "ignored"}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if (response := self.override(request)) is not None:
            return response
        route = _route(request)
        if route == "catalog":
            return httpx.Response(200, json=self.catalog)
        if route == "settings":
            token = request.headers["authorization"].removeprefix("Bearer ")
            return httpx.Response(200, json={"personId": f"P-{token}", "firstName": "x"})
        if route == "create":
            body = msgspec.json.decode(request.content)
            members = [
                {"id": "U-1", "personId": body["members"][0]["personId"], "isAdmin": True},
                {"id": "A-1", "personId": body["members"][1]["personId"]},
            ]
            return httpx.Response(201, json={"id": "T-1", "members": members, "messages": [self._posted_message()]})
        if route == "post":
            return httpx.Response(201, json=self._posted_message())
        if route == "upload":
            name = f"{len(self.routes('upload'))}.png"
            return httpx.Response(201, json={"image": {"path": f"/v3/{name}"}, "baseDomain": "https://tsimg.cloud/"})
        if self._waiting > 1:
            self._waiting -= 1
            return httpx.Response(204)
        mine = {"creationTime": self._time(), "author": {"id": "U-1"}, "typeId": 1, "text": "question"}
        thought = {"creationTime": self._time(), "author": {"id": "A-1"}, "typeId": 18, "text": "hmm"}
        answer = {
            "creationTime": self._time(),
            "author": {"id": "A-1"},
            "typeId": 1,
            "text": self.reply or f"answer {self._posted}",
        }
        if self._waiting:
            self._waiting -= 1
            return httpx.Response(200, json=[mine, thought])
        return httpx.Response(200, json=[mine, thought, answer])


def _route(request: httpx.Request) -> str:
    path = request.url.path
    if path.endswith("/nativeModelChatbot"):
        return "catalog"
    if path.endswith("/v2/userSettings"):
        return "settings"
    if path.startswith("/image-service/"):
        return "upload"
    if path == "/intercom-backend/v2/thread":
        return "create"
    return "post" if request.method == "POST" else "poll"


def _channel(**kwargs: Any) -> ChaynsChannel:
    fields: dict[str, Any] = {
        "name": "chayns",
        "models": ["Model A"],
        "base_url": "http://cube/",
        "auth_url": "http://auth",
        "api_key": "tok",
        "poll_interval_s": 0.001,
        **kwargs,
    }
    return ChaynsChannel(**fields)


def _provider(upstream: Upstream, **channel: Any) -> ChaynsProvider:
    return ChaynsProvider(_channel(**channel), transport=httpx.MockTransport(upstream))


def _user(text: str, *images: str) -> Message:
    return Message("user", [TextPart(text), *(ImagePart(url) for url in images)])


def _assistant(text: str) -> Message:
    return Message("assistant", [TextPart(text)])


async def _run(
    provider: ChaynsProvider,
    messages: list[Message],
    *,
    state: MemoryState | None = None,
    account: Account | None = None,
    model: str = "Model A",
) -> list[ProviderOutput]:
    request = GenerationRequest(id="g", request_id="r", model="m", messages=messages, reply_to="c", created=1)
    call = UpstreamCall(request, model, account or Account("acc", "tok"), state or MemoryState())
    return [output async for output in provider.stream(call)]


async def test_a_new_thread_is_created_and_polled_until_the_agent_answers() -> None:
    upstream = Upstream()
    outputs = await _run(_provider(upstream, thread_type=9), [_user("hello")])
    assert outputs == [TextDelta("answer 1"), Usage(input_tokens=2, output_tokens=2), Finished("stop")]
    catalog, settings = upstream.routes("catalog")[0], upstream.routes("settings")[0]
    assert str(catalog.url) == "http://cube/chayns-ai-chatbot/nativeModelChatbot"
    assert "authorization" not in catalog.headers
    assert str(settings.url) == "http://auth/v2/userSettings" and settings.headers["authorization"] == "Bearer tok"
    create = upstream.routes("create")[0]
    assert create.url.params["forceCreate"] == "true" and create.headers["authorization"] == "Bearer tok"
    assert upstream.bodies("create") == [
        {
            "members": [{"personId": "P-tok", "isAdmin": True}, {"personId": "AGENT-A"}],
            "typeId": 9,
            "messages": [{"text": "hello"}],
            "nerMode": "None",
            "priority": 0,
        }
    ]
    polls = upstream.routes("poll")
    assert len(polls) == 4, "204, 204, reasoning only, answer"
    assert all(p.url.path == "/intercom-backend/v2/thread/T-1/message" for p in polls)
    assert dict(polls[0].url.params) == {"take": "1000", "afterDate": upstream.posted_at[0]}


async def test_usage_is_estimated_from_the_text_sent_and_received() -> None:
    upstream = Upstream()
    upstream.reply = "x" * 9
    messages = [Message("system", [TextPart("be brief")]), _user("hello there")]
    outputs = await _run(_provider(upstream), messages)
    sent = upstream.bodies("create")[0]["messages"][0]["text"]
    assert outputs[1] == Usage(input_tokens=math.ceil(len(sent) / 4), output_tokens=3)


def test_the_transcript_format() -> None:
    messages = [
        Message("system", [TextPart("Answer briefly.")]),
        _user("What is this?", "https://img/1.png"),
        Message("assistant", [TextPart("Let me look.")], tool_calls=[ToolCall("c1", "zoom", '{"x":1}')]),
        Message("tool", [TextPart("zoomed")], tool_call_id="c1"),
        _user("And these?", "https://img/2.png", PNG_URL),
    ]
    outgoing = render(messages)
    assert outgoing.text == (
        "[System]\nAnswer briefly.\n\n"
        "[User]\nWhat is this?\n[Image 1]\n\n"
        '[Assistant]\nLet me look.\n[Tool call c1: zoom] {"x":1}\n\n'
        "[Tool result c1]\nzoomed\n\n"
        "[User]\nAnd these?\n[Image 2]\n[Image 3]"
    )
    assert [image.url for image in outgoing.images] == ["https://img/1.png", "https://img/2.png", PNG_URL]
    assert render([_user("just this")]).text == "just this"
    assert render([Message("system", [TextPart("s")]), _user("u")]).text == "[System]\ns\n\n[User]\nu"


async def test_the_thread_is_remembered_after_the_reply() -> None:
    state = MemoryState()
    messages = [Message("system", [TextPart("sys")]), _user("hello")]
    await _run(_provider(Upstream()), messages, state=state)
    assert decode_state(state.value) == ThreadState(
        thread_id="T-1",
        user_author_id="U-1",
        account="acc",
        model="Model A",
        covered=2,
        fingerprint=fingerprint(messages),
    )


async def test_a_continuation_posts_only_the_new_message_to_the_same_thread() -> None:
    upstream, state = Upstream(), MemoryState()
    provider = _provider(upstream)
    first = [Message("system", [TextPart("sys")]), _user("hello")]
    reply = await _run(provider, first, state=state)
    assert reply[0] == TextDelta("answer 1")
    second = [*first, _assistant("answer 1 as the client saw it"), _user("and now? ü")]
    outputs = await _run(provider, second, state=state)
    assert outputs[0] == TextDelta("answer 2")
    assert outputs[1] == Usage(input_tokens=3, output_tokens=2)
    assert len(upstream.routes("create")) == 1
    post = upstream.routes("post")[0]
    assert post.url.path == "/intercom-backend/v2/thread/T-1/message"
    assert upstream.bodies("post") == [{"text": "and now? ü", "cursorPosition": 10}]
    assert upstream.routes("poll")[-1].url.params["afterDate"] == upstream.posted_at[1]
    saved = decode_state(state.value)
    assert saved is not None and (saved.covered, saved.fingerprint) == (4, fingerprint(second))
    # And the turn after that continues from the new state.
    third = [*second, _assistant("answer 2"), _user("three")]
    await _run(provider, third, state=state)
    assert len(upstream.routes("create")) == 1 and upstream.bodies("post")[-1]["text"] == "three"


async def test_several_new_messages_are_posted_as_a_transcript() -> None:
    upstream, state = Upstream(), MemoryState()
    provider = _provider(upstream)
    await _run(provider, [_user("hello")], state=state)
    second = [_user("hello"), _assistant("a"), _user("one"), _user("two", "https://img/x.png")]
    await _run(provider, second, state=state)
    assert upstream.bodies("post") == [
        {
            "text": "[User]\none\n\n[User]\ntwo\n[Image 1]",
            "cursorPosition": 32,
            "images": [{"url": "https://img/x.png"}],
        }
    ]


@pytest.mark.parametrize(
    ("second", "account", "model"),
    [
        ([_user("hello"), _assistant("a"), _user("next")], Account("other", "tok2"), "Model A"),
        ([_user("hello"), _assistant("a"), _user("next")], Account("acc", "tok"), "Model B"),
        ([_user("edited"), _assistant("a"), _user("next")], Account("acc", "tok"), "Model A"),
        ([_user("hello")], Account("acc", "tok"), "Model A"),
        ([_user("hello"), _assistant("a")], Account("acc", "tok"), "Model A"),
        ([_user("hello"), _user("no reply between"), _user("next")], Account("acc", "tok"), "Model A"),
        ([_user("hello"), _assistant("a"), _user("b"), _assistant("c"), _user("d")], Account("acc", "tok"), "Model A"),
    ],
    ids=["other-account", "other-model", "edited-history", "regenerate", "no-new-message", "no-reply", "unseen-reply"],
)
async def test_a_request_that_does_not_continue_the_thread_starts_a_new_one(
    second: list[Message], account: Account, model: str
) -> None:
    upstream, state = Upstream(), MemoryState()
    provider = _provider(upstream)
    await _run(provider, [_user("hello")], state=state)
    await _run(provider, second, state=state, account=account, model=model)
    assert len(upstream.routes("create")) == 2 and upstream.routes("post") == []
    assert upstream.bodies("create")[1]["messages"][0]["text"] == render(second).text
    saved = decode_state(state.value)
    assert saved is not None and (saved.account, saved.model, saved.covered) == (account.name, model, len(second))


async def test_unreadable_state_starts_a_new_thread() -> None:
    upstream = Upstream()
    await _run(_provider(upstream), [_user("hello")], state=MemoryState(b"{not json"))
    assert len(upstream.routes("create")) == 1


async def test_a_thread_that_is_gone_is_replaced_by_a_new_one() -> None:
    upstream, state = Upstream(), MemoryState()
    provider = _provider(upstream)
    await _run(provider, [_user("hello")], state=state)
    upstream.override = lambda r: httpx.Response(404, json={"message": "gone"}) if _route(r) == "post" else None
    second = [_user("hello"), _assistant("a"), _user("next")]
    outputs = await _run(provider, second, state=state)
    assert outputs[0] == TextDelta("answer 2")
    assert upstream.bodies("create")[1]["messages"][0]["text"] == "[User]\nhello\n\n[Assistant]\na\n\n[User]\nnext"


async def test_images_are_uploaded_or_passed_through() -> None:
    upstream = Upstream()
    await _run(_provider(upstream), [_user("look", PNG_URL, "https://example.com/cat.jpg")])
    upload = upstream.routes("upload")[0]
    assert upload.url.path == "/image-service/v3/Images/P-tok" and upload.headers["authorization"] == "Bearer tok"
    header = f"Content-Type: {upload.headers['content-type']}\r\n\r\n".encode()
    form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + upload.content)
    (part,) = form.iter_parts()
    assert part.get_param("name", header="content-disposition") == "file"
    assert (part.get_filename(), part.get_content_type(), part.get_payload(decode=True)) == (
        "image.png",
        "image/png",
        PNG,
    )
    assert upstream.bodies("create")[0]["messages"][0] == {
        "text": "look",
        "images": [{"url": "https://tsimg.cloud/v3/1.png"}, {"url": "https://example.com/cat.jpg"}],
    }


@pytest.mark.parametrize("url", ["data:image/png;base64,@@@", "ftp://host/x.png"])
async def test_an_unusable_image_is_the_clients_mistake(url: str) -> None:
    upstream = Upstream()
    with pytest.raises(InvalidRequest):
        await _run(_provider(upstream), [_user("look", url)])
    assert upstream.routes("create") == []


async def test_catalog_and_person_are_cached() -> None:
    upstream = Upstream()
    provider = _provider(upstream)
    await _run(provider, [_user("a")])
    await _run(provider, [_user("b")], model="Model B")
    assert len(upstream.routes("catalog")) == 1 and len(upstream.routes("settings")) == 1
    await _run(provider, [_user("c")], account=Account("second", "tok2"))
    await _run(provider, [_user("d")], account=Account("acc", "renewed"))
    assert [r.headers["authorization"] for r in upstream.routes("settings")] == [
        "Bearer tok",
        "Bearer tok2",
        "Bearer renewed",
    ]
    assert upstream.bodies("create")[-1]["members"][0]["personId"] == "P-renewed"


async def test_a_model_missing_from_the_catalog_refetches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = Upstream()
    provider = _provider(upstream)
    await _run(provider, [_user("a")])
    with pytest.raises(UpstreamError) as caught:
        await _run(provider, [_user("b")], model="New Model")
    assert caught.value.code == "upstream_model_missing" and caught.value.status == 502
    assert len(upstream.routes("catalog")) == 1, "a recent catalog is not fetched again for every miss"
    monkeypatch.setattr(chayns_module, "_MISSING_REFETCH_S", 0.0)
    upstream.catalog = [*upstream.catalog, {"showName": "New Model", "personId": "AGENT-NEW"}]
    await _run(provider, [_user("b")], model="New Model")
    assert len(upstream.routes("catalog")) == 2
    assert upstream.bodies("create")[-1]["members"][1] == {"personId": "AGENT-NEW"}


async def test_a_failed_catalog_refresh_keeps_the_known_models(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = Upstream()
    provider = _provider(upstream)
    await _run(provider, [_user("a")])
    monkeypatch.setattr(chayns_module, "_CATALOG_TTL_S", 0.0)
    upstream.override = lambda r: httpx.Response(503) if _route(r) == "catalog" else None
    assert (await _run(provider, [_user("b")]))[0] == TextDelta("answer 2")
    assert len(upstream.routes("catalog")) == 2


@pytest.mark.parametrize("route", ["catalog", "settings", "create", "poll", "upload"])
@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [(400, InvalidRequest, 400), (401, UpstreamError, 502), (429, RateLimited, 429), (500, UpstreamError, 502)],
)
async def test_http_errors_are_mapped(route: str, status: int, kind: type[GatewayError], expected: int) -> None:
    upstream = Upstream()
    upstream.override = lambda r: httpx.Response(status, json={"message": "no"}) if _route(r) == route else None
    with pytest.raises(kind) as caught:
        await _run(_provider(upstream), [_user("look", PNG_URL)])
    assert caught.value.status == expected


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("refused"), 502, "upstream_unreachable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    ],
)
async def test_transport_failures(exc: Exception, status: int, code: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response | None:
        if _route(request) == "poll":
            raise exc
        return None

    upstream = Upstream()
    upstream.override = fail
    with pytest.raises(GatewayError) as caught:
        await _run(_provider(upstream), [_user("x")])
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_an_unreadable_reply_is_an_upstream_error() -> None:
    upstream = Upstream()
    upstream.override = lambda r: httpx.Response(201, content=b"<html>") if _route(r) == "create" else None
    with pytest.raises(UpstreamError) as caught:
        await _run(_provider(upstream), [_user("x")])
    assert caught.value.code == "upstream_bad_reply"


async def test_no_reply_in_time_is_a_timeout() -> None:
    upstream = Upstream(empty_polls=10**6)
    state = MemoryState()
    with pytest.raises(UpstreamTimeout):
        await _run(_provider(upstream, reply_timeout_s=0.05, poll_interval_s=0.01), [_user("x")], state=state)
    assert 2 <= len(upstream.routes("poll")) <= 6
    assert state.saves == 0


async def test_cancelling_stops_polling_at_once() -> None:
    upstream = Upstream(empty_polls=10**6)
    provider = _provider(upstream, poll_interval_s=0.005)
    polling = asyncio.Event()

    def watch(request: httpx.Request) -> None:
        if len(upstream.routes("poll")) >= 3:
            polling.set()

    upstream.override = watch
    task = asyncio.create_task(_run(provider, [_user("x")]))
    await asyncio.wait_for(polling.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    polls = len(upstream.routes("poll"))
    await asyncio.sleep(0.05)
    assert len(upstream.routes("poll")) == polls


async def test_tool_calls_come_from_the_agents_text_through_the_bridge() -> None:
    upstream = Upstream()

    def answer_with_a_call(request: httpx.Request) -> httpx.Response | None:
        if _route(request) != "poll" or len(upstream.routes("poll")) < 2:
            return None
        trigger = re.search(r"<<CALL_[a-z0-9]+>>", upstream.bodies("create")[0]["messages"][0]["text"])
        assert trigger is not None
        call = '<function_calls>\n<invoke name="lookup">\n<parameter name="q">cats</parameter>\n</invoke>\n'
        call += "</function_calls>"
        text = f"Looking.\n{trigger.group(0)}\n{call}"
        return httpx.Response(200, json=[{"creationTime": "z", "author": {"id": "A-1"}, "typeId": 1, "text": text}])

    upstream.override = answer_with_a_call
    registered = default_registry().create(_channel())
    assert isinstance(registered, BridgedProvider)
    await registered.aclose()
    provider = BridgedProvider(_provider(upstream))
    schema = msgspec.Raw(b'{"type":"object","properties":{"q":{"type":"string"}}}')
    request = GenerationRequest(
        id="g",
        request_id="r",
        model="m",
        messages=[_user("find cats")],
        reply_to="c",
        created=1,
        tools=[FunctionTool("lookup", parameters=schema)],
    )
    outputs = [o async for o in provider.stream(UpstreamCall(request, "Model A", Account("acc", "tok")))]
    texts = "".join(o.text for o in outputs if isinstance(o, TextDelta))
    started = [o for o in outputs if isinstance(o, ToolCallStarted)]
    arguments = "".join(o.arguments for o in outputs if isinstance(o, ToolCallDelta))
    assert texts.strip() == "Looking."
    assert [(o.index, o.name) for o in started] == [(0, "lookup")]
    assert msgspec.json.decode(arguments) == {"q": "cats"}
    assert outputs[-1] == Finished("tool_calls")
    await provider.aclose()
