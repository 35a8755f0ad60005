"""A fake chayns (the cube host and the auth host in one) speaking the intercom thread protocol over HTTP.

Routes, as chayns has them:

- ``GET /chayns-ai-chatbot/nativeModelChatbot``: the model catalog (no token needed)
- ``GET /v2/userSettings``: the token's ``personId``
- ``POST /intercom-backend/v2/thread?forceCreate=true``: a new thread with its first message
- ``POST /intercom-backend/v2/thread/{id}/message``: a follow-up message
- ``GET /intercom-backend/v2/thread/{id}/message?take=&afterDate=``: the messages since a time; 204 when none
- ``POST /image-service/v3/Images/{personId}``: a multipart image upload (field ``file``)

Every route but the catalog needs ``Authorization: Bearer <token>`` (401 otherwise); a token starting with
``bad`` is refused too. A token's ``personId`` is ``P-<token>``; a thread is visible to its creator only.

The agent answers each posted message after the first ``--empty-polls`` polls (204 until then), with a
reasoning message (``typeId`` 18) followed by its answer (``typeId`` 1); the poll also returns the posted
message itself. Answers depend only on the thread, by model (``showName``):

- ``fake-chat``: ``reply <n> to: <posted text>``, ``n`` counting the agent's answers in the thread
- ``fake-echo``: exactly the text posted
- ``fake-xml``: a call of ``get_weather`` for Paris in the tool bridge's XML after the trigger found in
  the thread (``The weather is fine.`` once tool results were posted; ``No tools.`` without
  a trigger)
- ``fake-silent``: never answers
- ``fake-broken``: polls fail with HTTP 500

An answer ends in `` [images: <n>]`` when the posted message had images attached.

``GET /_stats`` returns counters; ``GET /_threads`` every thread with its members and messages;
``GET /_uploads`` every uploaded image's file name, media type and size.

    python -m tests.fakes.chayns_upstream --port 0 [--empty-polls N]
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import itertools
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from tests.fakes._serving import FakeProcess, argument_parser, serve

__all__ = ("MODELS", "RunningChaynsUpstream", "create_app")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MODELS = {name: f"AGENT-{name}" for name in ("fake-chat", "fake-echo", "fake-xml", "fake-silent", "fake-broken")}
"""showName → the agent's personId."""

_TRIGGER = re.compile(r"<<CALL_[a-z0-9]+>>")
_RESULTS = re.compile(r"<function_results>\s*<result")
_CALL = (
    '<function_calls>\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n</invoke>\n'
    "</function_calls>"
)
_THREAD_PATH = re.compile(r"^/intercom-backend/v2/thread/([^/]+)/message$")
_UPLOAD_PATH = re.compile(r"^/image-service/v3/Images/([^/]+)$")
_encoder = msgspec.json.Encoder()


class _Image(msgspec.Struct):
    url: str


class _NewMember(msgspec.Struct, rename="camel"):
    person_id: str
    is_admin: bool = False


class _NewMessage(msgspec.Struct):
    text: str
    images: list[_Image] = msgspec.field(default_factory=list)


class _NewThread(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    members: list[_NewMember]
    ner_mode: str
    priority: int
    type_id: int
    messages: list[_NewMessage]


class _FollowUp(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    text: str
    cursor_position: int
    images: list[_Image] = msgspec.field(default_factory=list)


class _Thread:
    def __init__(self, thread_id: str, owner: str, agent: str, model: str, type_id: int) -> None:
        self.id = thread_id
        self.owner = owner
        self.model = model
        self.type_id = type_id
        self.members = [
            {"id": f"{thread_id}-M1", "personId": owner, "isAdmin": True, "isAgent": False},
            {"id": f"{thread_id}-M2", "personId": agent, "isAdmin": False, "isAgent": True},
        ]
        self.user_author, self.agent_author = f"{thread_id}-M1", f"{thread_id}-M2"
        self.messages: list[dict[str, Any]] = []
        self.pending: tuple[int, str, int] | None = None
        """(polls still answered with 204, the posted text, its image count)."""


class FakeChayns:
    """The ASGI app."""

    def __init__(self, empty_polls: int) -> None:
        self.empty_polls = empty_polls
        self.stats = {"catalog": 0, "user_settings": 0, "threads_created": 0, "messages_posted": 0, "polls": 0}
        self.stats |= {"uploads": 0, "unauthorized": 0}
        self.threads: dict[str, _Thread] = {}
        self.uploads: list[dict[str, Any]] = []
        self._clock = itertools.count(1)
        self._ids = itertools.count(1)

    def _now(self) -> str:
        """Strictly increasing creation times, so ``afterDate`` comparisons are exact."""
        moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(milliseconds=next(self._clock))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
        body = await _body(receive)
        status, payload = self._route(method, path, headers, query, body)
        response = b"" if payload is None else _encoder.encode(payload)
        content_type = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": content_type})
        await send({"type": "http.response.body", "body": response})

    def _route(
        self, method: str, path: str, headers: dict[str, str], query: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if method == "GET" and path in ("/_stats", "/_threads", "/_uploads"):
            return 200, self._inspect(path)
        if method == "GET" and path == "/chayns-ai-chatbot/nativeModelChatbot":
            self.stats["catalog"] += 1
            return 200, [_catalog_entry(name, person) for name, person in MODELS.items()]
        person = _person(headers)
        if person is None:
            self.stats["unauthorized"] += 1
            return 401, {"message": "unauthorized"}
        if method == "GET" and path == "/v2/userSettings":
            self.stats["user_settings"] += 1
            return 200, {"personId": person, "firstName": "Fake", "lastName": "User", "locale": "de-DE"}
        if method == "POST" and path == "/intercom-backend/v2/thread" and query.get("forceCreate") == "true":
            return self._create(person, body)
        if method == "POST" and (match := _UPLOAD_PATH.match(path)):
            return self._upload(person, match.group(1), headers.get("content-type", ""), body)
        if (match := _THREAD_PATH.match(path)) and method in ("GET", "POST"):
            thread = self.threads.get(match.group(1))
            if thread is None or thread.owner != person:
                return 404, {"message": "thread not found"}
            return self._follow_up(thread, body) if method == "POST" else self._poll(thread, query)
        return 404, {"message": f"no route {method} {path}"}

    def _inspect(self, path: str) -> Any:
        if path == "/_stats":
            return self.stats
        if path == "/_threads":
            return [self._describe(thread) for thread in self.threads.values()]
        return self.uploads

    def _create(self, person: str, body: bytes) -> tuple[int, Any]:
        try:
            request = msgspec.json.decode(body, type=_NewThread)
        except msgspec.DecodeError as exc:
            return 400, {"message": f"bad thread: {exc}"}
        admins = [m.person_id for m in request.members if m.is_admin]
        agents = [m.person_id for m in request.members if m.person_id in MODELS.values()]
        if admins != [person] or len(agents) != 1 or len(request.members) != 2 or len(request.messages) != 1:
            return 400, {"message": "a thread needs the caller as admin, one agent and one message"}
        if request.ner_mode != "None" or request.priority != 0:
            return 400, {"message": "unexpected nerMode or priority"}
        model = next(name for name, agent in MODELS.items() if agent == agents[0])
        thread = _Thread(f"T{next(self._ids)}", person, agents[0], model, request.type_id)
        self.threads[thread.id] = thread
        self.stats["threads_created"] += 1
        first = request.messages[0]
        message = self._add(thread, first.text, first.images)
        return 201, {
            "id": thread.id,
            "typeId": thread.type_id,
            "nerMode": "None",
            "creationTime": message["creationTime"],
            "members": thread.members,
            "messages": [message],
        }

    def _follow_up(self, thread: _Thread, body: bytes) -> tuple[int, Any]:
        try:
            request = msgspec.json.decode(body, type=_FollowUp)
        except msgspec.DecodeError as exc:
            return 400, {"message": f"bad message: {exc}"}
        if request.cursor_position != len(request.text.encode("utf-16-le")) // 2:
            return 400, {"message": "cursorPosition is not at the end of the text"}
        self.stats["messages_posted"] += 1
        return 201, self._add(thread, request.text, request.images)

    def _add(self, thread: _Thread, text: str, images: list[_Image]) -> dict[str, Any]:
        message = self._message(thread, thread.user_author, 1, text)
        if images:
            message["images"] = [{"url": image.url} for image in images]
        thread.messages.append(message)
        thread.pending = (self.empty_polls, text, len(images))
        return message

    def _message(self, thread: _Thread, author: str, type_id: int, text: str) -> dict[str, Any]:
        return {
            "id": f"{thread.id}-m{len(thread.messages) + 1}",
            "threadId": thread.id,
            "author": {"id": author},
            "creationTime": self._now(),
            "typeId": type_id,
            "text": text,
        }

    def _poll(self, thread: _Thread, query: dict[str, str]) -> tuple[int, Any]:
        self.stats["polls"] += 1
        if thread.model == "fake-broken":
            return 500, {"message": "intercom is down"}
        if query.get("take") != "1000" or "afterDate" not in query:
            return 400, {"message": "take=1000 and afterDate are required"}
        if thread.pending is not None and thread.model != "fake-silent":
            empty, text, images = thread.pending
            if empty > 0:
                thread.pending = (empty - 1, text, images)
                return 204, None
            thread.pending = None
            thread.messages.append(self._message(thread, thread.agent_author, 18, "thinking about it"))
            thread.messages.append(self._message(thread, thread.agent_author, 1, self._answer(thread, text, images)))
        recent = [m for m in thread.messages if m["creationTime"] >= query["afterDate"]]
        return (200, recent) if recent else (204, None)

    def _answer(self, thread: _Thread, text: str, images: int) -> str:
        suffix = f" [images: {images}]" if images else ""
        if thread.model == "fake-echo":
            return text + suffix
        if thread.model == "fake-xml":
            trigger = next((m.group(0) for msg in thread.messages if (m := _TRIGGER.search(msg["text"]))), None)
            if trigger is None:
                return "No tools."
            return "The weather is fine." if _RESULTS.search(text) else f"Checking.\n{trigger}\n{_CALL}"
        answers = sum(1 for m in thread.messages if m["author"]["id"] == thread.agent_author and m["typeId"] == 1)
        return f"reply {answers + 1} to: {text}{suffix}"

    def _upload(self, person: str, target: str, content_type: str, body: bytes) -> tuple[int, Any]:
        if urllib.parse.unquote(target) != person:
            return 403, {"message": "images go to the caller's own folder"}
        header = f"Content-Type: {content_type}\r\n\r\n".encode()
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        files = [part for part in form.iter_parts() if part.get_param("name", header="content-disposition") == "file"]
        if not form.is_multipart() or len(files) != 1 or not files[0].get_filename():
            return 400, {"message": "expected one multipart field 'file' with a file name"}
        data = files[0].get_payload(decode=True)
        assert isinstance(data, bytes)
        self.stats["uploads"] += 1
        number = len(self.uploads) + 1
        name = files[0].get_filename()
        self.uploads.append({"filename": name, "content_type": files[0].get_content_type(), "size": len(data)})
        return 201, {
            "image": {"path": f"v3/{person}/{number}/{name}", "width": 1, "height": 1},
            "baseDomain": "https://tsimg.fake/",
        }

    def _describe(self, thread: _Thread) -> dict[str, Any]:
        return {
            "id": thread.id,
            "owner": thread.owner,
            "model": thread.model,
            "typeId": thread.type_id,
            "members": thread.members,
            "messages": thread.messages,
        }


def _catalog_entry(name: str, person: str) -> dict[str, Any]:
    return {
        "showName": name,
        "personId": person,
        "tobitId": 2000 + len(name),
        "usedModel": 1,
        "canHandleImages": True,
        "canHandleFunctionCalling": False,
        "canUseThinking": True,
        "supportedMimeTypes": ["image/png", "image/jpeg", "text/plain"],
        "skills": {"general": 50},
        "costIndicator": 10,
        "developer": "fake",
    }


def _person(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or token.startswith("bad"):
        return None
    return f"P-{token}"


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


def create_app(empty_polls: int = 2) -> FakeChayns:
    return FakeChayns(empty_polls)


def main() -> None:
    parser = argument_parser()
    parser.add_argument("--empty-polls", type=int, default=2)
    args = parser.parse_args()
    serve(create_app(args.empty_polls), host=args.host, port=args.port)


class RunningChaynsUpstream(FakeProcess):
    """The fake as a subprocess; ``url`` serves as both the channel's ``base_url`` and its ``auth_url``."""

    def __init__(self, *, empty_polls: int = 2) -> None:
        super().__init__("tests.fakes.chayns_upstream", ["--empty-polls", str(empty_polls)])

    @property
    def url(self) -> str:
        return self.root_url


if __name__ == "__main__":
    main()
