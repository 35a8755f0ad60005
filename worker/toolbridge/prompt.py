"""The request side of the text bridge: tell a model without native tool calling how to call tools in
plain text, and re-encode the tool traffic already in the conversation in that same text form.

The canonical form, which the model is asked to write and the history is encoded in::

    <<CALL_k3x9q2>>
    <function_calls>
    <invoke name="read_file">
    <parameter name="path">src/main.py</parameter>
    <parameter name="limit">200</parameter>
    </invoke>
    </function_calls>

The first line is the per-request trigger (:func:`new_trigger`). Several ``invoke`` elements may follow
each other. A string value is written verbatim, with no quoting or escaping; a value containing a line
break is put on lines of its own, and the one line break after the opening and before the closing tag is
not part of it. Any other JSON value (number, boolean, null, array, object) is written as compact JSON.
When a value could not be read back exactly that way (a string that looks like JSON where the schema does
not say string, or one containing ``</parameter>``), the whole call is written as one JSON object instead,
``<invoke name="n">{"k": ...}</invoke>``, with ``<`` escaped as ``\\u003c``.

Tool results go back to the model as a user message::

    <function_results>
    <result call_id="call_1" name="read_file">
    ...the tool's output, verbatim...
    </result>
    </function_results>
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec import UNSET

from shared.generation import FunctionTool, ImagePart, Message, TextPart, ToolCall, ToolChoice
from worker.toolbridge._codec import (
    FAIL,
    JsonObject,
    close_tag,
    decode_parameter,
    dumps,
    loads,
    property_types,
    tool_schemas,
)
from worker.toolbridge._markup import CDATA

__all__ = ("apply_bridge", "encode_calls", "encode_history", "new_trigger", "tool_instructions")

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
_PARAMETER_CLOSE = close_tag("parameter")


def new_trigger(session_id: str | None = None) -> str:
    """A marker unknown to the client, so a call the model really makes is told apart from one it quotes.

    Within a session it stays the same from turn to turn: the prompt then starts identically each turn,
    which upstream prompt caches and thread-keeping providers (chayns) depend on.
    """
    if session_id is None:
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(8))
    else:
        digest = hashlib.sha256(f"aiapi-bridge-trigger:{session_id}".encode()).digest()
        token = "".join(_TOKEN_ALPHABET[byte % len(_TOKEN_ALPHABET)] for byte in digest[:8])
    return f"<<CALL_{token}>>"


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _offered(tools: Sequence[FunctionTool], choice: ToolChoice | None) -> list[FunctionTool]:
    if choice is None or choice.mode in ("auto", "required"):
        return list(tools)
    if choice.mode == "none":
        return []
    forced = [tool for tool in tools if tool.name == choice.name]
    return forced or list(tools)


def _choice_rule(choice: ToolChoice | None, require_call: bool) -> str:
    if choice is not None and choice.mode == "function" and choice.name:
        return f"- In this reply you must call the tool `{choice.name}`."
    if choice is not None and choice.mode == "required":
        return "- In this reply you must call at least one tool."
    if require_call:
        return "- Every reply must call a tool. When the task is finished, call the tool that reports the result."
    return "- Call a tool only when it is needed. Otherwise answer normally and do not write the marker."


def _describe(tool: FunctionTool) -> str:
    lines = [f'<tool name="{_attr(tool.name)}">']
    if tool.description:
        lines.append(f"<description>{tool.description.strip()}</description>")
    schema = "{}" if tool.parameters is UNSET else bytes(tool.parameters).decode("utf-8", "replace")
    decoded = loads(schema)
    lines.append(f"<parameters>{schema.strip() if decoded is FAIL else dumps(decoded)}</parameters>")
    lines.append("</tool>")
    return "\n".join(lines)


def tool_instructions(
    tools: Sequence[FunctionTool],
    choice: ToolChoice | None,
    trigger: str,
    *,
    one_call_per_turn: bool = False,
    require_call: bool = False,
) -> str:
    """The block that teaches the model the tools and the call format; empty when no tool is offered.

    ``one_call_per_turn`` and ``require_call`` are for clients that take one tool per message and expect
    one in every message (see :class:`~worker.toolbridge.clients.ClientProfile`)."""
    offered = _offered(tools, choice)
    if not offered:
        return ""
    many = (
        "- Call exactly one tool per reply: put a single <invoke> in the block."
        if one_call_per_turn
        else "- To call several tools at once, put several <invoke> elements in the same block."
    )
    example = (
        f'{trigger}\n<function_calls>\n<invoke name="TOOL_NAME">\n'
        '<parameter name="PARAMETER_NAME">VALUE</parameter>\n</invoke>\n</function_calls>'
    )
    rules = [
        "- Use only the tools listed below, with their names and parameter names spelled exactly.",
        "- Give every required parameter.",
        "- Write a text value exactly as it should arrive: no quotes around it, no XML escaping, no CDATA.",
        '- Write numbers, booleans, arrays and objects as JSON, e.g. <parameter name="count">3</parameter> or '
        '<parameter name="items">["a","b"]</parameter>.',
        many,
        _choice_rule(choice, require_call),
        "- Do not put the block in a code fence. Stop right after </function_calls>: the results arrive in the "
        "next message, inside <function_results>.",
    ]
    return "\n".join(
        [
            "<tool_calling>",
            "You can use tools. An external system runs them and sends you their results.",
            f"To call tools, write the marker {trigger} on a line of its own, then a <function_calls> block, "
            "exactly in this format:",
            "",
            example,
            "",
            "Rules:",
            *rules,
            "",
            "<tools>",
            *(_describe(tool) for tool in offered),
            "</tools>",
            "</tool_calling>",
        ]
    )


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else dumps(value)
    # On lines of its own, the line breaks around the value are layout, and the parser drops exactly one.
    return f"\n{text}\n" if "\n" in text else text


def _reads_back(key: str, value: Any, schema: JsonObject | None) -> bool:
    if not key or key != key.strip() or len(key) > 200:
        return False
    text = _value_text(value)
    if _PARAMETER_CLOSE.search(text) or text.lstrip().startswith(CDATA):
        return False
    return dumps(decode_parameter(text, property_types(schema, key))) == dumps(value)


def _encode_invoke(name: str, arguments: str, schema: JsonObject | None) -> str:
    args = loads(arguments) if arguments.strip() else {}
    head = f'<invoke name="{_attr(name)}">'
    if args is FAIL or not isinstance(args, dict):
        return f"{head}{arguments}</invoke>"
    if not all(_reads_back(key, value, schema) for key, value in args.items()):
        # Escaped, a "<" inside a JSON string can never look like the closing tag.
        return head + dumps(args).replace("<", "\\u003c") + "</invoke>"
    params = [f'<parameter name="{_attr(key)}">{_value_text(value)}</parameter>' for key, value in args.items()]
    return "\n".join([head, *params, "</invoke>"])


def encode_calls(calls: Sequence[ToolCall], trigger: str, tools: Sequence[FunctionTool] = ()) -> str:
    """Calls in the canonical text form, trigger first."""
    schemas = tool_schemas(tools)
    invokes = [_encode_invoke(call.name, call.arguments, schemas.get(call.name)) for call in calls]
    return "\n".join([trigger, "<function_calls>", *invokes, "</function_calls>"])


def _result(message: Message, names: dict[str, str]) -> str:
    call_id = message.tool_call_id or ""
    name = message.name or names.get(call_id, "")
    attrs = f' call_id="{_attr(call_id)}"' if call_id else ""
    attrs += f' name="{_attr(name)}"' if name else ""
    return f"<result{attrs}>\n{message.text()}\n</result>"


def _results_message(results: list[Message], names: dict[str, str]) -> Message:
    body = "\n".join(["<function_results>", *(_result(m, names) for m in results), "</function_results>"])
    images = [part for m in results for part in m.content if isinstance(part, ImagePart)]
    return Message("user", [TextPart(body), *images])


def _assistant_message(message: Message, trigger: str, tools: Sequence[FunctionTool]) -> Message:
    text = message.text()
    calls = encode_calls(message.tool_calls, trigger, tools)
    images = [part for part in message.content if isinstance(part, ImagePart)]
    return Message("assistant", [TextPart(f"{text}\n\n{calls}" if text.strip() else calls), *images])


def encode_history(messages: Sequence[Message], trigger: str, tools: Sequence[FunctionTool] = ()) -> list[Message]:
    """The conversation with its tool traffic as text: assistant calls in the canonical form (after any text
    they came with), and each run of tool results as one user message."""
    names: dict[str, str] = {}
    out: list[Message] = []
    pending: list[Message] = []
    for message in messages:
        if message.role == "tool":
            pending.append(message)
            continue
        if pending:
            out.append(_results_message(pending, names))
            pending = []
        if message.role == "assistant" and message.tool_calls:
            names.update((call.id, call.name) for call in message.tool_calls)
            out.append(_assistant_message(message, trigger, tools))
        else:
            out.append(msgspec.structs.replace(message, tool_calls=[], tool_call_id=None))
    if pending:
        out.append(_results_message(pending, names))
    return out


def apply_bridge(
    messages: Sequence[Message],
    tools: Sequence[FunctionTool],
    choice: ToolChoice | None,
    trigger: str,
    *,
    one_call_per_turn: bool = False,
    require_call: bool = False,
) -> list[Message]:
    """The messages to send a model without native tool calling: history encoded, and the tool
    instructions appended to the first system message (or to a new one at the start)."""
    out = encode_history(messages, trigger, tools)
    block = tool_instructions(tools, choice, trigger, one_call_per_turn=one_call_per_turn, require_call=require_call)
    if not block:
        return out
    for index, message in enumerate(out):
        if message.role == "system":
            text = message.text().rstrip()
            images = [part for part in message.content if isinstance(part, ImagePart)]
            content = [TextPart(f"{text}\n\n{block}" if text else block), *images]
            out[index] = msgspec.structs.replace(message, content=content)
            return out
    return [Message("system", [TextPart(block)]), *out]
