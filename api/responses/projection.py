"""Generation events → the Responses API view of them: stream events and the Response object.

The projection is a pure function of the response's shell and its generation's event log: the same
log always yields the same events with the same ``sequence_number``s and item ids. So a live stream,
a replay from the log (``GET …?stream=true&starting_after=N``) and a retrieved object all agree,
whichever API instance computes them.
"""

from __future__ import annotations

import time

import msgspec

from api.responses import custom_tools
from api.responses.objects import (
    ContentPartAdded,
    ContentPartDone,
    CustomToolCallInputDelta,
    CustomToolCallInputDone,
    CustomToolCallOutput,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    FunctionCallOutput,
    IncompleteDetails,
    InputTokensDetails,
    MessageOutput,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    OutputTokensDetails,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
    ResponseShell,
    ResponseStatus,
    ResponseUsage,
    StreamError,
    StreamEvent,
)
from shared.errors import ErrorInfo
from shared.events import (
    Failed,
    Finished,
    GenerationEvent,
    Started,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)

__all__ = ("ResponseProjector",)

_tools_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}

# Codes Codex and the SDKs act on; anything else is reported as a plain server error.
_FAILURE_CODES = {"rate_limit_exceeded", "context_length_exceeded", "insufficient_quota", "invalid_prompt"}


def _failure_code(info: ErrorInfo) -> str:
    if info.code in _FAILURE_CODES:
        return info.code
    return "rate_limit_exceeded" if info.status == 429 else "server_error"


class ResponseProjector:
    """Feed it a generation's events in order; it says what the client sees."""

    def __init__(self, shell: ResponseShell) -> None:
        self.shell = shell
        self.status: ResponseStatus = "queued"
        self.output: list[OutputItem] = []
        self.usage: ResponseUsage | None = None
        self.error: ResponseError | None = None
        self.incomplete: IncompleteDetails | None = None
        self.completed_at: int | None = None
        self.done = False
        self._seq = 0
        self._text: list[str] = []
        self._space = ""
        """Whitespace not yet in a message: it opens none alone (the bridge's text around a tool call)."""
        self._open: OutputItem | None = None
        self._calls: dict[int, FunctionCallOutput | CustomToolCallOutput] = {}
        self._custom_arguments: dict[str, str] = {}
        """A custom call's arguments as the backend streamed them; its input is read from them at its end."""
        self._custom_names = custom_tools.custom_names(_tools_decoder.decode(shell.tools))
        self._item_prefix = shell.id.removeprefix("resp_")

    def feed(self, event: GenerationEvent) -> list[StreamEvent]:
        """The stream events one generation event becomes (often none, sometimes several)."""
        out = self._begin()
        if isinstance(event, TextDelta):
            out += self._text_delta(event.text)
        elif isinstance(event, ToolCallStarted):
            self._space = ""
            out += self._close()
            out += self._open_call(event)
        elif isinstance(event, ToolCallDelta):
            out += self._call_delta(event)
        elif isinstance(event, Usage):
            self.usage = ResponseUsage(
                event.input_tokens,
                InputTokensDetails(cached_tokens=event.cached_tokens),
                event.output_tokens,
                OutputTokensDetails(reasoning_tokens=event.reasoning_tokens),
                event.input_tokens + event.output_tokens,
            )
        elif isinstance(event, Finished):
            out += self._finish(event)
        elif isinstance(event, Failed):
            out += self.fail(event.error)
        elif not isinstance(event, Started | ThinkingDelta):
            # Thinking is for a client that can send it back signed (Messages); a response leaves it out.
            raise TypeError(f"unexpected event {event!r}")
        return out

    def fail(self, info: ErrorInfo) -> list[StreamEvent]:
        """End the response as failed (or cancelled, when the client asked for that)."""
        out = self._begin() + self._close(status="incomplete")
        self.done = True
        if info.code == "cancelled":
            # There is no "response.cancelled" event: streams simply end, the object says cancelled.
            self.status = "cancelled"
            return out
        self.status = "failed"
        self.error = ResponseError(_failure_code(info), info.message)
        error = StreamError(info.type, info.code, info.message, info.param)
        out.append(
            ErrorEvent(
                sequence_number=self._next(), code=info.code, message=info.message, param=info.param, error=error
            )
        )
        out.append(ResponseFailed(sequence_number=self._next(), response=self.snapshot()))
        return out

    def snapshot(self) -> ResponseObject:
        shell = self.shell
        output: list[OutputItem] = [msgspec.structs.replace(item) for item in self.output]
        if isinstance(self._open, MessageOutput) and output:
            output[-1] = self._message_copy(self._open)
        return ResponseObject(
            id=shell.id,
            created_at=shell.created_at,
            status=self.status,
            completed_at=self.completed_at,
            background=shell.background,
            error=self.error,
            incomplete_details=self.incomplete,
            instructions=shell.instructions,
            max_output_tokens=shell.max_output_tokens,
            model=shell.model,
            output=output,
            parallel_tool_calls=shell.parallel_tool_calls,
            previous_response_id=shell.previous_response_id,
            reasoning=shell.reasoning,
            service_tier=shell.service_tier,
            store=shell.store,
            temperature=shell.temperature,
            text=shell.text,
            tool_choice=shell.tool_choice,
            tools=shell.tools,
            top_p=shell.top_p,
            truncation=shell.truncation,
            usage=self.usage if self.done else None,
            user=shell.user,
            metadata=shell.metadata,
        )

    def _begin(self) -> list[StreamEvent]:
        if self.status != "queued":
            return []
        self.status = "in_progress"
        return [
            ResponseCreated(sequence_number=self._next(), response=self.snapshot()),
            ResponseInProgress(sequence_number=self._next(), response=self.snapshot()),
        ]

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self._item_prefix}{len(self.output):03d}"

    def _message_copy(self, item: MessageOutput) -> MessageOutput:
        return MessageOutput(id=item.id, status=item.status, content=[OutputText("".join(self._text))])

    def _text_delta(self, text: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        item = self._open
        if not isinstance(item, MessageOutput):
            # A message that would hold only whitespace is no output item (Codex CLI shows it as an empty
            # assistant message); the whitespace leads the message's text if any text follows.
            text, self._space = self._space + text, ""
            if not text.strip():
                self._space = text
                return out
            out += self._close()
            item = MessageOutput(id=self._item_id("msg"), status="in_progress")
            self.output.append(item)
            self._open = item
            self._text = []
            index = len(self.output) - 1
            added = MessageOutput(id=item.id, status="in_progress")
            out.append(OutputItemAdded(sequence_number=self._next(), output_index=index, item=added))
            out.append(
                ContentPartAdded(
                    sequence_number=self._next(),
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    part=OutputText(""),
                )
            )
        self._text.append(text)
        out.append(
            OutputTextDelta(
                sequence_number=self._next(),
                item_id=item.id,
                output_index=len(self.output) - 1,
                content_index=0,
                delta=text,
            )
        )
        return out

    def _open_call(self, event: ToolCallStarted) -> list[StreamEvent]:
        item: FunctionCallOutput | CustomToolCallOutput
        if event.name in self._custom_names:
            item = CustomToolCallOutput(
                id=self._item_id("ctc"), call_id=event.call_id, name=event.name, input="", status="in_progress"
            )
            self._custom_arguments[item.id] = ""
        else:
            item = FunctionCallOutput(
                id=self._item_id("fc"), call_id=event.call_id, name=event.name, arguments="", status="in_progress"
            )
        self.output.append(item)
        self._open = item
        self._calls[event.index] = item
        added = msgspec.structs.replace(item)
        return [OutputItemAdded(sequence_number=self._next(), output_index=len(self.output) - 1, item=added)]

    def _call_delta(self, event: ToolCallDelta) -> list[StreamEvent]:
        item = self._calls.get(event.index)
        if item is None:
            return []
        if isinstance(item, CustomToolCallOutput):
            # The input is known only once the arguments are whole: it is sent with the call's end.
            self._custom_arguments[item.id] += event.arguments
            if item is not self._open:
                item.input = custom_tools.input_from(self._custom_arguments[item.id])
            return []
        item.arguments += event.arguments
        if item is not self._open:
            # A delta for a call already closed (an upstream interleaving calls) still counts in the result.
            return []
        index = self.output.index(item)
        return [
            FunctionCallArgumentsDelta(
                sequence_number=self._next(), item_id=item.id, output_index=index, delta=event.arguments
            )
        ]

    def _close(self, status: str = "completed") -> list[StreamEvent]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = self.output.index(item)
        item.status = "incomplete" if status == "incomplete" else "completed"
        if isinstance(item, MessageOutput):
            text = "".join(self._text)
            item.content = [OutputText(text)]
            return [
                OutputTextDone(
                    sequence_number=self._next(), item_id=item.id, output_index=index, content_index=0, text=text
                ),
                ContentPartDone(
                    sequence_number=self._next(),
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    part=OutputText(text),
                ),
                OutputItemDone(sequence_number=self._next(), output_index=index, item=self._message_copy(item)),
            ]
        if isinstance(item, CustomToolCallOutput):
            return self._close_custom(item, index)
        return [
            FunctionCallArgumentsDone(
                sequence_number=self._next(),
                item_id=item.id,
                output_index=index,
                name=item.name,
                arguments=item.arguments,
            ),
            OutputItemDone(sequence_number=self._next(), output_index=index, item=msgspec.structs.replace(item)),
        ]

    def _close_custom(self, item: CustomToolCallOutput, index: int) -> list[StreamEvent]:
        item.input = custom_tools.input_from(self._custom_arguments[item.id])
        out: list[StreamEvent] = []
        if item.input:
            delta = CustomToolCallInputDelta(
                sequence_number=self._next(), item_id=item.id, output_index=index, delta=item.input
            )
            out.append(delta)
        out.append(
            CustomToolCallInputDone(sequence_number=self._next(), item_id=item.id, output_index=index, input=item.input)
        )
        out.append(OutputItemDone(sequence_number=self._next(), output_index=index, item=msgspec.structs.replace(item)))
        return out

    def _finish(self, event: Finished) -> list[StreamEvent]:
        reason = _INCOMPLETE_REASONS.get(event.finish_reason)
        out = self._close(status="incomplete" if reason else "completed")
        self.done = True
        self.completed_at = event.finished_at or int(time.time())
        if reason:
            self.status = "incomplete"
            self.incomplete = IncompleteDetails(reason)
            out.append(ResponseIncomplete(sequence_number=self._next(), response=self.snapshot()))
        else:
            self.status = "completed"
            out.append(ResponseCompleted(sequence_number=self._next(), response=self.snapshot()))
        return out
