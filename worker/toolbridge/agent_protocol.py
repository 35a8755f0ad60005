"""Coding agents that bring their own XML tool protocol: no ``tools`` in the request, the tools described in
the system prompt instead, and the model's reply read by the client itself.

Cline, and Roo Code and Kilo Code before their native tool calling, teach the model tags such as::

    <read_file>
    <path>src/main.py</path>
    </read_file>

under a ``## read_file`` heading each, and run one such tool per reply. The reply is theirs to parse, so
it reaches them as text, unchanged but for the sanitizer (illegal characters, misspelt tool tags) and
their own rules: everything after the first complete tool element is dropped, and a reply without any
tool element is closed with an ``<attempt_completion>`` holding its text, because these clients answer
a reply without a tool with an error and a retry. The text streams at once; only what may still become
a tool tag is held back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.events import Finished, TextDelta

if TYPE_CHECKING:
    from shared.events import ToolCallDelta, ToolCallStarted
    from shared.generation import Message
    from worker.providers import ProviderOutput
    from worker.toolbridge.sanitizer import OutputSanitizer
    from worker.toolbridge.validator import Outcome

__all__ = ("AgentXmlTurn", "protocol_tools")

# The tools these agents define; a prompt's headings add any other (MCP tools, newer versions' tools).
_AGENT_TOOLS = frozenset(
    {
        "access_mcp_resource",
        "apply_diff",
        "ask_followup_question",
        "attempt_completion",
        "browser_action",
        "codebase_search",
        "execute_command",
        "fetch_instructions",
        "insert_content",
        "list_code_definition_names",
        "list_files",
        "new_task",
        "plan_mode_respond",
        "read_file",
        "replace_in_file",
        "search_and_replace",
        "search_files",
        "switch_mode",
        "update_todo_list",
        "use_mcp_tool",
        "write_to_file",
    }
)
_HEADING = re.compile(r"^#{2,3}[ \t]+([a-z][a-z0-9_]{1,63})[ \t]*$", re.M)
_THINKING = re.compile(r"<thinking>.*?(?:</thinking>|$)", re.S)


def protocol_tools(messages: Sequence[Message]) -> frozenset[str]:
    """The tool tags the system prompt teaches: a known agent tool or a ``## name`` heading, either of
    which the prompt also shows as ``<name>``. Empty when the prompt teaches none."""
    prompt = "\n".join(message.text() for message in messages if message.role == "system")
    names = _AGENT_TOOLS | set(_HEADING.findall(prompt))
    return frozenset(name for name in names if f"<{name}>" in prompt)


def _partial(text: str, tags: Sequence[str]) -> int:
    """Where a suffix of ``text`` that may still become one of ``tags`` starts; ``len(text)`` if none."""
    start = text.rfind("<", max(0, len(text) - max(map(len, tags))))
    if start >= 0 and any(tag.startswith(text[start:]) for tag in tags):
        return start
    return len(text)


class AgentXmlTurn:
    """One reply to such a client; ``wrap``: close a reply without a tool element with
    ``attempt_completion`` (when the prompt teaches it)."""

    def __init__(self, tools: frozenset[str], sanitizer: OutputSanitizer, *, wrap: bool) -> None:
        names = sorted(tools, key=len, reverse=True)
        self._opening = re.compile("|".join(f"<{re.escape(name)}>" for name in names))
        self._tags = [f"<{name}>" for name in names]
        self._wrap = wrap and "attempt_completion" in tools
        self._sanitizer = sanitizer
        self._buf = ""
        self._inside: str | None = None
        """The closing tag of the tool element the text is in."""
        self._used = 0
        self._done = False
        self._dropped_tail = ""
        self._dropped_call = False
        self._text: list[str] = []
        """The text outside tool elements."""
        self.outcomes: list[Outcome] = []

    @property
    def complete(self) -> bool:
        """The reply has its tool element: the client's one-tool rule leaves nothing more to send."""
        return self._done

    def feed(self, chunk: str) -> list[ProviderOutput]:
        return self._scan(self._sanitizer.feed(chunk), eof=False)

    def finish(self, finish_reason: str) -> list[ProviderOutput]:
        out = self._scan(self._sanitizer.flush(), eof=True)
        if self._dropped_call:
            self.outcomes.append("strict_client_rule_applied")
        if not self._used and self._inside is None:
            self.outcomes.append("xml_not_found")
            text = "".join(self._text)
            result = _THINKING.sub("", text).strip()
            if self._wrap and result:
                self.outcomes.append("strict_client_rule_applied")
                gap = "\n" if text.endswith("\n") else "\n\n"
                out.append(
                    TextDelta(f"{gap}<attempt_completion>\n<result>\n{result}\n</result>\n</attempt_completion>")
                )
        out.append(Finished(finish_reason))
        return out

    def native(self, output: ToolCallStarted | ToolCallDelta) -> ToolCallStarted | ToolCallDelta:
        """A call the upstream made natively; this turn makes none of its own, so it passes unchanged."""
        return output

    def _scan(self, text: str, *, eof: bool) -> list[ProviderOutput]:
        buf = self._buf + text
        sent: list[str] = []
        while buf:
            if self._done:
                # Only looked at to tell whether the rule dropped another tool, for the metrics.
                seen = self._dropped_tail + buf
                self._dropped_call = self._dropped_call or bool(self._opening.search(seen))
                self._dropped_tail = seen[-len(self._tags[0]) :]
                buf = ""
            elif self._inside is None:
                match = self._opening.search(buf)
                cut = match.end() if match else (len(buf) if eof else _partial(buf, self._tags))
                self._text.append(buf[: match.start() if match else cut])
                sent.append(buf[:cut])
                buf = buf[cut:]
                if match is None:
                    break
                self._inside = f"</{match.group()[1:]}"
            else:
                end = buf.find(self._inside)
                cut = end + len(self._inside) if end >= 0 else (len(buf) if eof else _partial(buf, [self._inside]))
                sent.append(buf[:cut])
                buf = buf[cut:]
                if end < 0:
                    break
                self._inside = None
                self._used += 1
                self._done = True
        self._buf = buf
        joined = "".join(sent)
        return [TextDelta(joined)] if joined else []
