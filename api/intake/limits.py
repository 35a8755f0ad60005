"""Size limits on what one request may carry, checked before anything is queued.

Body size is capped by the server itself (``server.max_body_bytes``, 413); these limits bound the parts
that cost a worker or Redis in proportion to their count: messages, tools and their schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import InvalidRequest

if TYPE_CHECKING:
    from shared.config import LimitsConfig
    from shared.generation import GenerationRequest

__all__ = ("check_limits",)


def check_limits(generation: GenerationRequest, limits: LimitsConfig, *, messages_param: str = "messages") -> None:
    """Raise a 400 naming the first limit ``generation`` exceeds."""
    if len(generation.messages) > limits.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(generation.messages)} (at most {limits.max_messages}).",
            param=messages_param,
            code="too_many_messages",
        )
    if len(generation.tools) > limits.max_tools:
        raise InvalidRequest(
            f"Too many tools: {len(generation.tools)} (at most {limits.max_tools}).",
            param="tools",
            code="too_many_tools",
        )
    for index, tool in enumerate(generation.tools):
        size = len(tool.parameters) if tool.parameters else 0
        if size > limits.max_tool_schema_bytes:
            raise InvalidRequest(
                f"The parameter schema of tool '{tool.name}' is {size} bytes (at most {limits.max_tool_schema_bytes}).",
                param=f"tools[{index}]",
                code="tool_schema_too_large",
            )
    if len(generation.sampling.stop) > limits.max_stop_sequences:
        raise InvalidRequest(
            f"Too many stop sequences (at most {limits.max_stop_sequences}).", param="stop", code="too_many_stop"
        )
