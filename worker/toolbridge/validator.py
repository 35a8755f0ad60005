"""Checks the calls parsed out of a model's text before a client sees them, and repairs what it safely can.

Modes: ``none`` passes every named call through untouched; ``relaxed`` requires a known tool, an object of
arguments and every required parameter, after fixing the obvious (aliases coding agents' tools are often
called with, numbers written as strings, one value where the schema wants a list); ``strict`` also runs
the full JSON Schema. A call cut off by the end of the output is refused by both, except, in ``relaxed``,
one whose partial text is still worth having (``attempt_completion``, ``ask_followup_question``).
Independently of the mode, a client that handles one call per turn (Cline, Roo Code, Kilo Code) gets only
the first valid call.

When no valid call remains although the model tried to call a tool, or the request demanded a call, the
fallback decides: ``discard`` keeps only the text; ``attempt_completion`` turns the text into that tool's
``result``; ``read_file`` reads the file the model was after (a path from a dropped call or the text).
A fallback whose tool the client did not offer behaves as ``discard``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec
from jsonschema import exceptions as jsonschema_exceptions  # type: ignore[import-untyped]
from jsonschema import validators as jsonschema_validators

from shared.generation import FunctionTool, ToolChoice
from worker.toolbridge._codec import FAIL, JsonObject, coerce_scalar, dumps, json_types, loads, tool_schemas
from worker.toolbridge.parser import ParsedCall

__all__ = (
    "DroppedCall",
    "Fallback",
    "ToolCallValidator",
    "ValidationMode",
    "ValidationResult",
    "extract_paths",
    "normalize_arguments",
)

ValidationMode = Literal["none", "relaxed", "strict"]
Fallback = Literal["discard", "attempt_completion", "read_file"]


class DroppedCall(msgspec.Struct, frozen=True):
    call: ParsedCall
    reason: str


class ValidationResult(msgspec.Struct, frozen=True):
    calls: list[ParsedCall]
    """The calls to send on, arguments normalized; may hold one call a fallback made up."""
    text: str
    """The text to send on (emptied when the ``attempt_completion`` fallback took it)."""
    dropped: list[DroppedCall] = msgspec.field(default_factory=list)
    fallback: Fallback | None = None
    """The fallback that ran, if one did."""


_PATH_TOOLS = frozenset(
    {
        "read_file",
        "write_to_file",
        "apply_diff",
        "insert_content",
        "search_and_replace",
        "replace_in_file",
        "list_files",
        "search_files",
        "list_code_definition_names",
        "delete_file",
        "edit_file",
    }
)
_PATH_ALIASES = ("file_path", "filepath", "file", "filename", "file_name")
# Names models use instead of a tool's own parameter name, for tools whose schema they misremember.
_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("write_to_file", "content"): ("contents", "file_content", "file_contents", "text", "code"),
    ("execute_command", "command"): ("cmd", "shell_command", "script"),
    ("attempt_completion", "result"): ("message", "answer", "response", "text", "content"),
    ("ask_followup_question", "question"): ("message", "prompt", "text", "query"),
    ("search_files", "regex"): ("pattern", "query", "search"),
    ("apply_diff", "diff"): ("patch", "changes"),
    ("replace_in_file", "diff"): ("patch", "changes"),
}
# Required parameters whose empty value makes the call pointless.
_NOT_BLANK = frozenset({"path", "command", "question", "regex", "diff", "result"})
_PARTIAL_OK = frozenset({"attempt_completion", "ask_followup_question"})
_PYTHON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
_BACKTICKED = re.compile(r"`([^`\s]{1,300})`")
_PATHLIKE = re.compile(r"[\w.~/\\-]*[\w-]\.[A-Za-z0-9]{1,8}")


def _properties(schema: JsonObject | None) -> JsonObject:
    props = schema.get("properties") if schema else None
    return props if isinstance(props, dict) else {}


def _rename(args: JsonObject, canonical: str, aliases: Sequence[str], props: JsonObject) -> None:
    if canonical in args or (props and canonical not in props):
        return
    for alias in aliases:
        if alias in args and alias not in props:
            args[canonical] = args.pop(alias)
            return


def _file_entries(value: Any) -> list[Any]:
    entries = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, str) and entry.strip():
            out.append({"path": entry.strip()})
        elif isinstance(entry, dict):
            entry = dict(entry)
            _rename(entry, "path", ("file", "name", *_PATH_ALIASES), {})
            if isinstance(entry.get("path"), str) and entry["path"].strip():
                out.append(entry)
    return out


def _read_file_shape(args: JsonObject, props: JsonObject) -> None:
    """Roo and Kilo read a list of ``files``; Cline and most others one ``path``."""
    if "files" in props and "path" not in props and "files" not in args:
        for key in ("paths", "path", *_PATH_ALIASES, "args"):
            if key in args:
                args["files"] = _file_entries(args.pop(key))
                break
    elif "files" in props and "files" in args:
        args["files"] = _file_entries(args["files"])
    elif "path" in props and "files" not in props and "path" not in args:
        files = _file_entries(args.pop("files", None) or args.pop("paths", None) or [])
        if files:
            args["path"] = files[0]["path"]


def normalize_arguments(name: str, args: JsonObject, schema: JsonObject | None = None) -> JsonObject:
    """Fix the argument names and shapes models commonly get wrong for coding agents' own tools.

    With a schema, a parameter is only renamed to one the schema has, and never away from one it has."""
    args = dict(args)
    props = _properties(schema)
    if name in _PATH_TOOLS:
        _rename(args, "path", _PATH_ALIASES, props)
    for (tool, canonical), aliases in _ALIASES.items():
        if tool == name:
            _rename(args, canonical, aliases, props)
    if name == "read_file":
        _read_file_shape(args, props)
    if name == "attempt_completion" and "result" in args and not isinstance(args["result"], str):
        args["result"] = dumps(args["result"])
    if name == "write_to_file" and "line_count" in props and isinstance(args.get("content"), str):
        content = args["content"]
        args.setdefault("line_count", content.count("\n") + (0 if content.endswith("\n") or not content else 1))
    if name == "execute_command" and "requires_approval" in props:
        # Unsure whether the command is harmful, the safe answer is to ask the user.
        args.setdefault("requires_approval", True)
    return args


def _fits(value: Any, types: frozenset[str]) -> bool:
    return any(_PYTHON_TYPES[t](value) for t in types if t in _PYTHON_TYPES)


def _item_key(item_schema: JsonObject) -> str | None:
    props = _properties(item_schema)
    required = [k for k in item_schema.get("required", []) if isinstance(k, str)]
    for key in ("path", "text", "name", "id"):
        if key in props and (key in required or not required):
            return key
    return required[0] if required else None


def _coerce(value: Any, schema: Any, depth: int = 0) -> Any:
    """Bring a value the model wrote loosely to the shape its schema asks for, when that is unambiguous."""
    if not isinstance(schema, dict) or depth > 8:
        return value
    types = json_types(schema)
    if types and not _fits(value, types):
        value = _reshape(value, types)
    if isinstance(value, dict):
        props = _properties(schema)
        return {k: _coerce(v, props.get(k), depth + 1) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items: JsonObject = schema["items"]
        key = _item_key(items) if "object" in json_types(items) else None
        wrapped = [{key: v} if key and isinstance(v, str) else v for v in value]
        return [_coerce(v, items, depth + 1) for v in wrapped]
    return value


def _reshape(value: Any, types: frozenset[str]) -> Any:
    if isinstance(value, float) and "integer" in types and value.is_integer():
        return int(value)
    if isinstance(value, str):
        scalar = coerce_scalar(value.strip(), types)
        if scalar is not FAIL:
            return scalar
        parsed = loads(value.strip()) if types & {"array", "object"} else FAIL
        if parsed is not FAIL and _fits(parsed, types):
            return parsed
    if "array" in types and value is not None:
        return [value]
    if "string" in types and value is not None:
        return value if isinstance(value, str) else dumps(value)
    return value


def extract_paths(text: str, limit: int = 5) -> list[str]:
    """File paths a text mentions: backticked ones first, then bare tokens with a directory and extension."""
    found: list[str] = []
    candidates = [m.group(1) for m in _BACKTICKED.finditer(text)]
    candidates += [t for t in text.split() if "/" in t or "\\" in t]
    for candidate in candidates:
        token = candidate.strip("\"'()[]{}<>,;:!?").removesuffix(".")
        if "://" in token or not _PATHLIKE.fullmatch(token) or token in found:
            continue
        found.append(token)
        if len(found) == limit:
            break
    return found


class ToolCallValidator:
    """Validates one turn's calls against the tools the client offered."""

    def __init__(
        self,
        tools: Sequence[FunctionTool],
        mode: ValidationMode = "relaxed",
        fallback: Fallback = "discard",
        *,
        one_call_per_turn: bool = False,
        choice: ToolChoice | None = None,
        require_call: bool = False,
    ) -> None:
        self.mode: ValidationMode = mode
        self.fallback: Fallback = fallback
        self.one_call_per_turn = one_call_per_turn
        self._schemas = tool_schemas(tools)
        self._forced = choice.name if choice is not None and choice.mode == "function" else None
        self.require_call = require_call or (choice is not None and choice.mode in ("required", "function"))
        self._validators: dict[str, Any] = {}

    def check(self, calls: Sequence[ParsedCall], text: str) -> ValidationResult:
        valid: list[ParsedCall] = []
        dropped: list[DroppedCall] = []
        for call in calls:
            checked = self._check_one(call)
            if isinstance(checked, str):
                dropped.append(DroppedCall(call, checked))
            elif self.one_call_per_turn and valid:
                dropped.append(DroppedCall(call, "only one tool call is allowed per turn"))
            else:
                valid.append(checked)
        if valid or not (dropped or self.require_call):
            return ValidationResult(valid, text, dropped)
        return self._fall_back(text, dropped)

    def _check_one(self, call: ParsedCall) -> ParsedCall | str:
        if not call.name:
            return "the call names no tool"
        if self.mode == "none":
            return call
        schema = self._schemas.get(call.name)
        if schema is None:
            return f"unknown tool '{call.name}'"
        if self.mode == "strict" and self._forced and call.name != self._forced:
            return f"tool_choice requires '{self._forced}'"
        if call.truncated and (self.mode == "strict" or call.name not in _PARTIAL_OK):
            return "the output ended inside this call"
        args = loads(call.arguments_json)
        if not isinstance(args, dict):
            return "the arguments are not a JSON object"
        args = _coerce(normalize_arguments(call.name, args, schema), schema)
        problem = self._missing(args, schema) or (
            self._schema_error(call.name, args) if self.mode == "strict" else None
        )
        return problem or ParsedCall(call.name, dumps(args), call.truncated)

    @staticmethod
    def _missing(args: JsonObject, schema: JsonObject) -> str | None:
        required = schema.get("required")
        for key in required if isinstance(required, list) else ():
            if not isinstance(key, str):
                continue
            if args.get(key) is None:
                return f"missing required parameter '{key}'"
            if key in _NOT_BLANK and isinstance(args[key], str) and not args[key].strip():
                return f"required parameter '{key}' is empty"
        return None

    def _schema_error(self, name: str, args: JsonObject) -> str | None:
        validator = self._validator(name)
        if validator is None:
            return None
        try:
            error = jsonschema_exceptions.best_match(validator.iter_errors(args))
        except Exception:  # an unresolvable $ref or the like: the schema's fault, not the call's
            return None
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"{where}: {error.message}" if where else str(error.message)

    def _validator(self, name: str) -> Any:
        if name not in self._validators:
            schema = self._schemas.get(name) or {}
            cls = jsonschema_validators.validator_for(schema, default=jsonschema_validators.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema_exceptions.SchemaError:
                self._validators[name] = None
            else:
                self._validators[name] = cls(schema)
        return self._validators[name]

    def _fall_back(self, text: str, dropped: list[DroppedCall]) -> ValidationResult:
        if self.fallback == "attempt_completion" and "attempt_completion" in self._schemas:
            result = text.strip() or "; ".join(f"{d.call.name or 'tool call'}: {d.reason}" for d in dropped)
            args = normalize_arguments("attempt_completion", {"result": result}, self._schemas["attempt_completion"])
            call = ParsedCall("attempt_completion", dumps(args))
            return ValidationResult([call], "", dropped, "attempt_completion")
        if self.fallback == "read_file" and "read_file" in self._schemas:
            read = self._read_file_call(text, dropped)
            if read is not None:
                return ValidationResult([read], text, dropped, "read_file")
        return ValidationResult([], text, dropped, "discard")

    def _read_file_call(self, text: str, dropped: list[DroppedCall]) -> ParsedCall | None:
        paths: list[str] = []
        for item in dropped:
            args = loads(item.call.arguments_json)
            for key in ("path", *_PATH_ALIASES, "paths", "files") if isinstance(args, dict) else ():
                entries = _file_entries(args.get(key, []))
                paths += [e["path"].strip() for e in entries if e["path"].strip() not in paths]
        paths += [p for p in extract_paths(text) if p not in paths]
        if not paths:
            return None
        schema = self._schemas["read_file"]
        props = _properties(schema)
        key = next((k for k in ("path", *_PATH_ALIASES) if k in props), "path")
        shaped = {"files": [{"path": p} for p in paths[:5]]} if "files" in props else {key: paths[0]}
        checked = self._check_one(ParsedCall("read_file", dumps(shaped)))
        return checked if isinstance(checked, ParsedCall) else None
