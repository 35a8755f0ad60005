"""The bridge around a provider: what goes upstream, what streams back and when, the channel's settings,
and the outcomes counted in the metrics."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator

import msgspec

from shared.config import Account, MockChannel, OpenAIChannel
from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import ClientInfo, FunctionTool, GenerationRequest, Message, TextPart, ToolChoice
from worker.metrics import REGISTRY
from worker.providers import ProviderOutput, UpstreamCall
from worker.registry import default_registry
from worker.toolbridge import BridgedProvider, BridgeOptions

TRIGGER = re.compile(r"<<CALL_\w+>>")

ROO = ClientInfo("RooCode/3.25.1", {"x-title": "Roo Code"})
SDK = ClientInfo("OpenAI/Python 1.109.1")


def _tool(name: str, **props: object) -> FunctionTool:
    schema = {"type": "object", "properties": props, "required": list(props)}
    return FunctionTool(name, parameters=msgspec.Raw(json.dumps(schema).encode()))


WEATHER = _tool("get_weather", city={"type": "string"})
COUNT = _tool("count", n={"type": "integer"})
DONE = _tool("attempt_completion", result={"type": "string"})
READ = _tool("read_file", path={"type": "string"})


class ScriptedProvider:
    """Yields text chunks (``{trigger}`` replaced by the request's), then usage and ``stop``; notes in
    ``log`` each time it is asked for more."""

    def __init__(self, chunks: list[str], log: list[str]) -> None:
        self.chunks = chunks
        self.log = log
        self.requests: list[GenerationRequest] = []

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        self.requests.append(call.request)
        found = TRIGGER.search(" ".join(m.text() for m in call.request.messages))
        for number, chunk in enumerate(self.chunks):
            self.log.append(f"upstream {number}")
            yield TextDelta(chunk.replace("{trigger}", found.group() if found else ""))
        yield Usage(3, 4)
        yield Finished("stop")

    async def aclose(self) -> None:
        return None


def _request(
    tools: list[FunctionTool], client: ClientInfo = SDK, choice: ToolChoice | None = None, system: str = ""
) -> GenerationRequest:
    messages = [Message("system", [TextPart(system)])] if system else []
    messages.append(Message("user", [TextPart("weather in Paris?")]))
    return GenerationRequest("g", "r", "m", messages, "c", 1, tools=tools, tool_choice=choice, client=client)


def _invoke(name: str, **params: object) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>' for k, v in params.items())
    return f'<invoke name="{name}">{body}</invoke>'


async def _run(
    chunks: list[str], request: GenerationRequest, options: BridgeOptions | None = None
) -> tuple[list[str], list[ProviderOutput], ScriptedProvider]:
    log: list[str] = []
    inner = ScriptedProvider(chunks, log)
    outputs: list[ProviderOutput] = []
    async for output in BridgedProvider(inner, options).stream(UpstreamCall(request, "m", Account("a"))):
        log.append(type(output).__name__)
        outputs.append(output)
    return log, outputs, inner


def _calls(outputs: list[ProviderOutput]) -> list[tuple[str, object]]:
    names = {o.index: o.name for o in outputs if isinstance(o, ToolCallStarted)}
    return [(names[o.index], json.loads(o.arguments)) for o in outputs if isinstance(o, ToolCallDelta)]


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("aiapi_toolbridge_events_total", {"outcome": outcome}) or 0.0


async def test_each_call_streams_out_before_the_upstream_goes_on() -> None:
    chunks = ["Checking.\n", "{trigger}\n<function_calls>\n", _invoke("get_weather", city="Paris"), "\n"]
    chunks += [_invoke("get_weather", city="Rome"), "\n</function_calls>"]
    log, outputs, inner = await _run(chunks, _request([WEATHER]))
    assert inner.requests[0].tools == [] and inner.requests[0].tool_choice is None
    assert log == [
        "upstream 0",
        "TextDelta",
        "upstream 1",
        "upstream 2",
        "ToolCallStarted",
        "ToolCallDelta",
        "upstream 3",
        "upstream 4",
        "ToolCallStarted",
        "ToolCallDelta",
        "upstream 5",
        "Usage",
        "Finished",
    ]
    assert _calls(outputs) == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    assert outputs[-1] == Finished("tool_calls")


async def test_outcomes_are_counted() -> None:
    before = {o: _count(o) for o in ("xml_not_found", "forced_toolcall_generated", "strict_client_rule_applied")}
    _, outputs, _ = await _run(["No idea."], _request([WEATHER], choice=ToolChoice("required")))
    assert _calls(outputs) == [("get_weather", {"city": "weather in Paris?"})]
    assert _count("xml_not_found") == before["xml_not_found"] + 1
    assert _count("forced_toolcall_generated") == before["forced_toolcall_generated"] + 1
    _, outputs, _ = await _run(["Done."], _request([READ, DONE], client=ROO))
    assert _calls(outputs) == [("attempt_completion", {"result": "Done."})]
    assert _count("strict_client_rule_applied") == before["strict_client_rule_applied"] + 1


async def test_filtered_calls_and_fallbacks_are_counted() -> None:
    before = {o: _count(o) for o in ("validation_filtered", "fallback_applied")}
    chunks = ["{trigger}\n" + _invoke("count", n="many")]
    _, outputs, _ = await _run(chunks, _request([COUNT]), BridgeOptions(validation="strict"))
    assert _calls(outputs) == []
    assert _count("validation_filtered") == before["validation_filtered"] + 1
    assert _count("fallback_applied") == before["fallback_applied"] + 1


async def test_channel_settings_override_the_detected_client() -> None:
    chunks = [_invoke("read_file", path="a.py"), _invoke("read_file", path="b.py")]
    _, outputs, _ = await _run(chunks, _request([READ]))
    assert len(_calls(outputs)) == 2
    _, outputs, inner = await _run(chunks, _request([READ]), BridgeOptions(client="roo"))
    assert _calls(outputs) == [("read_file", {"path": "a.py"})]
    assert "exactly one tool" in inner.requests[0].messages[0].text()
    _, outputs, _ = await _run(["See src/app.py."], _request([READ], client=ROO), BridgeOptions(fallback="read_file"))
    assert _calls(outputs) == [("read_file", {"path": "src/app.py"})]


async def test_a_one_call_client_has_its_reply_end_with_the_call() -> None:
    chunks = [
        "{trigger}\n" + _invoke("read_file", path="a.py"),
        "\nThe file says hello.",
        _invoke("read_file", path="b"),
    ]
    log, outputs, _ = await _run(chunks, _request([READ], client=ROO))
    assert _calls(outputs) == [("read_file", {"path": "a.py"})]
    assert outputs[-1] == Finished("tool_calls")
    assert "upstream 1" not in log, "the upstream is not read past the call"
    system = "## read_file\nUsage:\n<read_file>\n<path>path</path>\n</read_file>\n"
    log, outputs, _ = await _run(["<read_file><path>a</path></read_file>", "more"], _request([], ROO, system=system))
    assert outputs[-1] == Finished("stop") and "upstream 1" not in log


async def test_an_agent_without_tools_gets_its_own_protocol_handled() -> None:
    system = "## read_file\nUsage:\n<read_file>\n<path>path</path>\n</read_file>\n"
    chunks = ["<read_file><path>a</path></read_file>", "<read_file><path>b</path></read_file>"]
    _, outputs, inner = await _run(chunks, _request([], client=ROO, system=system))
    assert inner.requests[0].messages[0].text() == system  # nothing added to the prompt
    assert "".join(o.text for o in outputs if isinstance(o, TextDelta)) == chunks[0]
    _, outputs, _ = await _run(chunks, _request([], client=SDK, system=system))
    assert "".join(o.text for o in outputs if isinstance(o, TextDelta)) == "".join(chunks)


def test_registry_wraps_bridge_channels_with_their_settings() -> None:
    registry = default_registry()
    native = registry.create(OpenAIChannel(name="o", base_url="http://x", models=["m"]))
    assert not isinstance(native, BridgedProvider)
    bridged = registry.create(MockChannel(name="b", models=["m"], tool_mode="bridge", tool_client="kilo"))
    assert isinstance(bridged, BridgedProvider)
    assert BridgeOptions.of(MockChannel(name="b", models=["m"], tool_validation="none")) == BridgeOptions(
        validation="none"
    )
