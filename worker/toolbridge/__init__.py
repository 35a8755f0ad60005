"""The tool-call text bridge, for models that cannot call tools natively.

:class:`BridgedProvider` wraps a channel's provider when the channel has ``tool_mode = "bridge"``.
Request side (:mod:`~worker.toolbridge.prompt`): :func:`new_trigger` per request, then
:func:`apply_bridge` puts the tool instructions in the system message and re-encodes the conversation's
tool calls and results as text. Response side, per turn (:class:`BridgeTurn`): :class:`ToolCallParser`
turns the streamed text back into text and calls, a :class:`ToolCallValidator` turn checks each call as
it completes, with the client's rules and fallbacks (:func:`detect_client`, :func:`profile_for`,
:func:`validator_for`), and :class:`OutputSanitizer` cleans the text it is sent. A coding agent that
teaches its own XML tool tags instead of sending tools gets an :class:`AgentXmlTurn`.
"""

from worker.toolbridge.agent_protocol import AgentXmlTurn, protocol_tools
from worker.toolbridge.clients import ClientKind, ClientProfile, detect_client, profile_for, validator_for
from worker.toolbridge.normalize import extract_paths, normalize_arguments
from worker.toolbridge.parsed import BridgeOutput, ParsedCall, TextOut
from worker.toolbridge.parser import ToolCallParser, parse_output
from worker.toolbridge.prompt import apply_bridge, encode_calls, encode_history, new_trigger, tool_instructions
from worker.toolbridge.provider import BridgedProvider, BridgeOptions
from worker.toolbridge.sanitizer import OutputSanitizer, strip_illegal_characters
from worker.toolbridge.turn import BridgeTurn
from worker.toolbridge.validator import (
    DroppedCall,
    Fallback,
    Outcome,
    ToolCallValidator,
    TurnCheck,
    ValidationMode,
    ValidationResult,
)

__all__ = (
    "AgentXmlTurn",
    "BridgeOptions",
    "BridgeOutput",
    "BridgeTurn",
    "BridgedProvider",
    "ClientKind",
    "ClientProfile",
    "DroppedCall",
    "Fallback",
    "Outcome",
    "OutputSanitizer",
    "ParsedCall",
    "TextOut",
    "ToolCallParser",
    "ToolCallValidator",
    "TurnCheck",
    "ValidationMode",
    "ValidationResult",
    "apply_bridge",
    "detect_client",
    "encode_calls",
    "encode_history",
    "extract_paths",
    "new_trigger",
    "normalize_arguments",
    "parse_output",
    "profile_for",
    "protocol_tools",
    "strip_illegal_characters",
    "tool_instructions",
    "validator_for",
)
