"""The calls the bridge makes up when a turn ends without a call it can send although one was wanted.

* :func:`completion_call`: the turn's text becomes ``attempt_completion``'s ``result``; coding agents end
  a task with that tool, and a reply without any tool call is an error to them.
* :func:`read_file_call`: ``read_file`` of the file the model was after, from a path in a call that was
  dropped or in its text (a model that says it cannot see a file usually names it).
* :func:`forced_call`: a call of the tool the request's ``tool_choice`` demands (:func:`forced_tool`),
  with the arguments the model wrote as a JSON object in its text when it did, else filled from the
  schema's defaults and, for text parameters, the user's message.

None of them checks its call; the validator does, as for any other call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from worker.toolbridge._codec import FAIL, JsonObject, dumps, json_types, loads
from worker.toolbridge.normalize import PATH_ALIASES, extract_paths, file_entries, normalize_arguments
from worker.toolbridge.normalize import schema_properties as properties
from worker.toolbridge.parsed import ParsedCall

__all__ = ("completion_call", "forced_call", "forced_tool", "read_file_call")

_MAX_PATHS = 5
_MAX_OBJECTS = 16
_decoder = json.JSONDecoder()


def completion_call(text: str, explanation: str, schema: JsonObject) -> ParsedCall:
    """``attempt_completion`` with the text as its result, or the explanation when there is no text."""
    args = normalize_arguments("attempt_completion", {"result": text.strip() or explanation}, schema)
    return ParsedCall("attempt_completion", dumps(args))


def read_file_call(text: str, dropped: Sequence[ParsedCall], schema: JsonObject) -> ParsedCall | None:
    """``read_file`` in the shape the client's schema has (one ``path`` or a list of ``files``)."""
    paths: list[str] = []
    for call in dropped:
        args = loads(call.arguments_json)
        for key in ("path", *PATH_ALIASES, "paths", "files") if isinstance(args, dict) else ():
            entries = file_entries(args.get(key, []))
            paths += [e["path"].strip() for e in entries if e["path"].strip() not in paths]
    paths += [p for p in extract_paths(text) if p not in paths]
    if not paths:
        return None
    props = properties(schema)
    key = next((k for k in ("path", *PATH_ALIASES) if k in props), "path")
    shaped = {"files": [{"path": p} for p in paths[:_MAX_PATHS]]} if "files" in props else {key: paths[0]}
    return ParsedCall("read_file", dumps(shaped))


def forced_tool(schemas: Mapping[str, JsonObject], forced: str | None, text: str) -> str | None:
    """The tool a forced call goes to: the one ``tool_choice`` names, else the only one, else the first
    one the model's text mentions, else the first one."""
    if forced is not None:
        return forced if forced in schemas else None
    names = list(schemas)
    if len(names) <= 1:
        return names[0] if names else None
    return next((name for name in names if name in text), names[0])


def _json_object(text: str, props: JsonObject, required: Sequence[str]) -> JsonObject | None:
    """The first JSON object in the text that fits the tool: no unknown keys, every required one."""
    start = text.find("{")
    for _ in range(_MAX_OBJECTS):
        if start < 0:
            return None
        try:
            value, _end = _decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if (
            isinstance(value, dict)
            and value
            and (not props or value.keys() <= props.keys())
            and all(key in value for key in required)
        ):
            return value
        start = text.find("{", start + 1)
    return None


def _fill(schema: Any, user_text: str) -> Any:
    """A value for one parameter: its default, constant or first allowed value, else the user's message
    when it takes text; :data:`FAIL` when nothing sensible can be given."""
    if not isinstance(schema, dict):
        return user_text or FAIL
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    types = json_types(schema)
    return user_text if user_text and (not types or "string" in types) else FAIL


def forced_call(name: str, schema: JsonObject, text: str, user_text: str) -> ParsedCall | None:
    """A call of ``name``; ``None`` when a required parameter cannot be filled."""
    props = properties(schema)
    listed = schema.get("required")
    required = [key for key in listed if isinstance(key, str)] if isinstance(listed, list) else []
    found = _json_object(text, props, required)
    if found is not None:
        return ParsedCall(name, dumps(normalize_arguments(name, found, schema)))
    args: JsonObject = {}
    for key in required or list(props):
        value = _fill(props.get(key), user_text.strip())
        if value is not FAIL:
            args[key] = value
        elif key in required:
            return None
    return ParsedCall(name, dumps(normalize_arguments(name, args, schema)))
