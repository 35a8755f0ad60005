"""Checks the calls parsed out of a model's text before a client sees them, and repairs what it safely can.

Modes: ``none`` passes every named call through untouched; ``relaxed`` requires a known tool, an object of
arguments and every required parameter, after fixing the obvious (:mod:`~worker.toolbridge.normalize`:
aliases coding agents' tools are often called with, numbers written as strings, one value where the
schema wants a list); ``strict`` also runs the full JSON Schema, and refuses any other tool than the one
``tool_choice`` names. A call cut off by the end of the output is refused by both, except, in
``relaxed``, one whose partial text is still worth having (``attempt_completion``,
``ask_followup_question``). Independently of the mode, a client that handles one call per turn (Cline,
Roo Code, Kilo Code) gets only the first valid call.

Calls are checked one at a time as the parser finds them (:meth:`ToolCallValidator.turn`), so a streamed
call goes out the moment it is complete. When the turn ends with no call sent although the model tried
to call a tool, or the client or the request demanded a call, the fallback decides
(:mod:`~worker.toolbridge.fallbacks`): ``discard`` keeps only the text; ``attempt_completion`` turns the
text into that tool's ``result``; ``read_file`` reads the file the model was after. A fallback whose
tool the client did not offer behaves as ``discard``. A ``tool_choice`` of ``required`` or a named
function that is still unmet then gets a forced call of that tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from jsonschema import exceptions as jsonschema_exceptions  # type: ignore[import-untyped]
from jsonschema import validators as jsonschema_validators

from shared.generation import FunctionTool, ToolChoice
from worker.toolbridge._codec import JsonObject, dumps, loads, tool_schemas
from worker.toolbridge.fallbacks import completion_call, forced_call, forced_tool, read_file_call
from worker.toolbridge.normalize import coerce_to_schema, normalize_arguments
from worker.toolbridge.parsed import ParsedCall

__all__ = (
    "DroppedCall",
    "Fallback",
    "Outcome",
    "ToolCallValidator",
    "TurnCheck",
    "ValidationMode",
    "ValidationResult",
)

ValidationMode = Literal["none", "relaxed", "strict"]
Fallback = Literal["discard", "attempt_completion", "read_file"]
Outcome = Literal[
    "xml_not_found",
    "validation_filtered",
    "fallback_applied",
    "strict_client_rule_applied",
    "forced_toolcall_generated",
]
"""What the bridge had to do about a turn, for the metrics: a call was wanted and none was written; a call
was dropped as invalid; no call survived and a fallback ran; a client rule (one call per turn, a call in
every turn) changed the turn; a call was made up to meet ``tool_choice``."""

_ONE_CALL = "only one tool call is allowed per turn"


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


# Required parameters whose empty value makes the call pointless.
_NOT_BLANK = frozenset({"path", "command", "question", "regex", "diff", "result"})
_PARTIAL_OK = frozenset({"attempt_completion", "ask_followup_question"})


class TurnCheck:
    """One turn: :meth:`offer` each call as the parser finds it, :meth:`close` when the output ended.

    ``outcomes`` collects what had to be done, for the metrics."""

    def __init__(self, validator: ToolCallValidator) -> None:
        self._validator = validator
        self.sent: list[ParsedCall] = []
        self.dropped: list[DroppedCall] = []
        self.outcomes: list[Outcome] = []
        self._parsed = 0

    def offer(self, call: ParsedCall) -> ParsedCall | None:
        """The call to send on now (arguments normalized), or ``None`` when it is dropped."""
        self._parsed += 1
        if self._validator.one_call_per_turn and self.sent:
            self._drop(call, _ONE_CALL, "strict_client_rule_applied")
            return None
        checked = self._validator.check_call(call)
        if isinstance(checked, str):
            self._drop(call, checked, "validation_filtered")
            return None
        self.sent.append(checked)
        return checked

    def _drop(self, call: ParsedCall, reason: str, outcome: Outcome) -> None:
        self.dropped.append(DroppedCall(call, reason))
        # One extra call or many, the client rule changed the turn once.
        if outcome != "strict_client_rule_applied" or outcome not in self.outcomes:
            self.outcomes.append(outcome)

    def close(self, text: str, user_text: str = "") -> ValidationResult:
        """The end of the turn, given all its text: ``calls`` holds what the end adds (a fallback's or a
        forced call), ``text`` the text as the turn should have it."""
        validator = self._validator
        if self.sent or not (self.dropped or validator.require_call):
            return ValidationResult([], text, self.dropped)
        if not self._parsed:
            self.outcomes.append("xml_not_found")
        result = validator.fall_back(text, self.dropped)
        if self.dropped:
            self.outcomes.append("fallback_applied")
        elif result.calls:
            # No call at all: a client that wants one every turn gets its text as a call (its own rule).
            rule = validator.client_requires_call
            self.outcomes.append("strict_client_rule_applied" if rule else "fallback_applied")
        if validator.choice_requires_call and not validator.meets_choice(result.calls):
            forced = validator.forced_call(text, user_text)
            if forced is not None:
                self.outcomes.append("forced_toolcall_generated")
                return ValidationResult([forced], text, self.dropped, result.fallback)
        return result


class ToolCallValidator:
    """Validates calls against the tools the client offered, with the client's and the request's rules."""

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
        self.client_requires_call = require_call
        """The client wants a call in every turn (a coding agent)."""
        self.choice_requires_call = choice is not None and choice.mode in ("required", "function")
        self.require_call = require_call or self.choice_requires_call
        self._validators: dict[str, Any] = {}

    def turn(self) -> TurnCheck:
        return TurnCheck(self)

    def check(self, calls: Sequence[ParsedCall], text: str, user_text: str = "") -> ValidationResult:
        """A whole turn at once."""
        turn = self.turn()
        for call in calls:
            turn.offer(call)
        end = turn.close(text, user_text)
        return ValidationResult([*turn.sent, *end.calls], end.text, end.dropped, end.fallback)

    def meets_choice(self, calls: Sequence[ParsedCall]) -> bool:
        return bool(calls) and (self._forced is None or calls[0].name == self._forced)

    def check_call(self, call: ParsedCall) -> ParsedCall | str:
        """The call with its arguments repaired, or why it is refused."""
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
        args = coerce_to_schema(normalize_arguments(call.name, args, schema), schema)
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

    def fall_back(self, text: str, dropped: Sequence[DroppedCall]) -> ValidationResult:
        """The turn's result when no call survived: the fallback's call, if it could make one."""
        if self.fallback == "attempt_completion" and "attempt_completion" in self._schemas:
            explanation = "; ".join(f"{d.call.name or 'tool call'}: {d.reason}" for d in dropped)
            call = completion_call(text, explanation, self._schemas["attempt_completion"])
            return ValidationResult([call], "", list(dropped), "attempt_completion")
        if self.fallback == "read_file" and "read_file" in self._schemas:
            read = read_file_call(text, [d.call for d in dropped], self._schemas["read_file"])
            checked = self.check_call(read) if read is not None else None
            if isinstance(checked, ParsedCall):
                return ValidationResult([checked], text, list(dropped), "read_file")
        return ValidationResult([], text, list(dropped), "discard")

    def forced_call(self, text: str, user_text: str) -> ParsedCall | None:
        """A valid call of the tool ``tool_choice`` demands, made up from the text, or ``None``."""
        name = forced_tool(self._schemas, self._forced, text)
        call = forced_call(name, self._schemas[name], text, user_text) if name is not None else None
        checked = self.check_call(call) if call is not None else None
        return checked if isinstance(checked, ParsedCall) else None
