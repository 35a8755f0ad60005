"""Argument repairs for the calls a model wrote as text: the names and shapes models commonly get wrong for
coding agents' own tools (:func:`normalize_arguments`), and values written loosely for their schema
(:func:`coerce_to_schema`): numbers as strings, one value where a list is wanted, a list of paths where a
list of objects is wanted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from worker.toolbridge._codec import FAIL, JsonObject, coerce_scalar, dumps, json_types, loads

__all__ = (
    "PATH_ALIASES",
    "coerce_to_schema",
    "extract_paths",
    "file_entries",
    "normalize_arguments",
    "schema_properties",
)

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
PATH_ALIASES = ("file_path", "filepath", "file", "filename", "file_name")
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


def schema_properties(schema: JsonObject | None) -> JsonObject:
    """A schema's ``properties``; empty when it has none."""
    props = schema.get("properties") if schema else None
    return props if isinstance(props, dict) else {}


def _rename(args: JsonObject, canonical: str, aliases: Sequence[str], props: JsonObject) -> None:
    if canonical in args or (props and canonical not in props):
        return
    for alias in aliases:
        if alias in args and alias not in props:
            args[canonical] = args.pop(alias)
            return


def file_entries(value: Any) -> list[Any]:
    """``{"path": ...}`` objects from a path, a list of paths or a list of file objects; blank ones left out."""
    entries = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, str) and entry.strip():
            out.append({"path": entry.strip()})
        elif isinstance(entry, dict):
            entry = dict(entry)
            _rename(entry, "path", ("file", "name", *PATH_ALIASES), {})
            if isinstance(entry.get("path"), str) and entry["path"].strip():
                out.append(entry)
    return out


def _read_file_shape(args: JsonObject, props: JsonObject) -> None:
    """Roo and Kilo read a list of ``files``; Cline and most others one ``path``."""
    if "files" in props and "path" not in props and "files" not in args:
        for key in ("paths", "path", *PATH_ALIASES, "args"):
            if key in args:
                args["files"] = file_entries(args.pop(key))
                break
    elif "files" in props and "files" in args:
        args["files"] = file_entries(args["files"])
    elif "path" in props and "files" not in props and "path" not in args:
        files = file_entries(args.pop("files", None) or args.pop("paths", None) or [])
        if files:
            args["path"] = files[0]["path"]


def normalize_arguments(name: str, args: JsonObject, schema: JsonObject | None = None) -> JsonObject:
    """Fix the argument names and shapes models commonly get wrong for coding agents' own tools.

    With a schema, a parameter is only renamed to one the schema has, and never away from one it has."""
    args = dict(args)
    props = schema_properties(schema)
    if name in _PATH_TOOLS:
        _rename(args, "path", PATH_ALIASES, props)
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
    props = schema_properties(item_schema)
    required = [k for k in item_schema.get("required", []) if isinstance(k, str)]
    for key in ("path", "text", "name", "id"):
        if key in props and (key in required or not required):
            return key
    return required[0] if required else None


def coerce_to_schema(value: Any, schema: Any, depth: int = 0) -> Any:
    """Bring a value the model wrote loosely to the shape its schema asks for, when that is unambiguous."""
    if not isinstance(schema, dict) or depth > 8:
        return value
    types = json_types(schema)
    if types and not _fits(value, types):
        value = _reshape(value, types)
    if isinstance(value, dict):
        props = schema_properties(schema)
        return {k: coerce_to_schema(v, props.get(k), depth + 1) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items: JsonObject = schema["items"]
        key = _item_key(items) if "object" in json_types(items) else None
        wrapped = [{key: v} if key and isinstance(v, str) else v for v in value]
        return [coerce_to_schema(v, items, depth + 1) for v in wrapped]
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
