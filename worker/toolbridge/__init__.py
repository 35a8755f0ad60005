"""The tool-call text bridge, for models that cannot call tools natively.

Request side (:mod:`~worker.toolbridge.prompt`): :func:`new_trigger` per request, then
:func:`apply_bridge` puts the tool instructions in the system message and re-encodes the conversation's
tool calls and results as text. Response side: :class:`ToolCallParser` turns the streamed text back into
text and calls, :class:`ToolCallValidator` checks those calls for the client (:func:`detect_client`,
:func:`profile_for`, :func:`validator_for`), and :class:`OutputSanitizer` cleans the text it is sent.
"""

from worker.toolbridge.clients import ClientKind, ClientProfile, detect_client, profile_for, validator_for
from worker.toolbridge.parser import BridgeOutput, ParsedCall, TextOut, ToolCallParser, parse_output
from worker.toolbridge.prompt import apply_bridge, encode_calls, encode_history, new_trigger, tool_instructions
from worker.toolbridge.sanitizer import OutputSanitizer, strip_illegal_characters
from worker.toolbridge.validator import (
    DroppedCall,
    Fallback,
    ToolCallValidator,
    ValidationMode,
    ValidationResult,
    extract_paths,
    normalize_arguments,
)

__all__ = (
    "BridgeOutput",
    "ClientKind",
    "ClientProfile",
    "DroppedCall",
    "Fallback",
    "OutputSanitizer",
    "ParsedCall",
    "TextOut",
    "ToolCallParser",
    "ToolCallValidator",
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
    "strip_illegal_characters",
    "tool_instructions",
    "validator_for",
)
