"""Responses requests → GenerationRequest parts, and stored output → history."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.intake.limits import check_limits
from api.responses import request as adapter
from api.responses.objects import (
    CustomToolCallOutput,
    FunctionCallOutput,
    MessageOutput,
    OutputText,
    ResponseObject,
)
from api.responses.projection import ResponseProjector
from api.responses.store import StoredResponse
from shared.config import LimitsConfig
from shared.errors import GatewayError, InvalidRequest
from shared.generation import (
    GenerationRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolChoice,
    decode_request,
    encode_request,
)
from tests.request_strategies import any_body, response_bodies


def _request(**fields: object) -> adapter.wire.CreateResponse:
    return adapter.decode_create_response(json.dumps({"model": "m", "input": "hi", **fields}).encode())


def _input(items: list[dict[str, object]]) -> adapter.ParsedInput:
    return adapter.parse_input([msgspec.Raw(json.dumps(item).encode()) for item in items], id_prefix="in_")


def test_a_string_input_is_one_user_message() -> None:
    parsed = adapter.parse_input("hello", id_prefix="msg_x")
    assert parsed.messages == [Message("user", [TextPart("hello")])]
    assert [item.id for item in parsed.items] == ["msg_x000"]


def test_function_calls_join_the_assistant_message_and_outputs_become_tool_messages() -> None:
    parsed = _input(
        [
            {"role": "user", "content": "weather?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
        ]
    )
    assert parsed.messages == [
        Message("user", [TextPart("weather?")]),
        Message(
            "assistant", [TextPart("checking")], tool_calls=[ToolCall("c1", "w", "{}"), ToolCall("c2", "w", '{"a":1}')]
        ),
        Message("tool", [TextPart("sunny")], tool_call_id="c1"),
        Message("tool", [TextPart("rain")], tool_call_id="c2"),
    ]
    assert [item.id for item in parsed.items] == [f"in_{i:03d}" for i in range(6)]


def test_codex_items_are_tolerated() -> None:
    parsed = _input(
        [
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"},
            {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": "data:x", "detail": "low"}],
            },
            {"type": "local_shell_call", "call_id": "d", "status": "completed", "action": {}},
        ]
    )
    assert parsed.messages == [
        Message("system", [TextPart("rules")]),
        Message("user", [ImagePart("data:x", "low")]),
    ]
    assert [item.id for item in parsed.items] == ["in_001", "in_002"]


def test_custom_tool_calls_travel_as_function_calls_with_their_input_wrapped() -> None:
    patch = '*** Begin Patch\n*** Add File: a.txt\n+"hi"\n*** End Patch'
    parsed = _input(
        [
            {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": patch},
            {"type": "custom_tool_call_output", "call_id": "c", "output": "Done!"},
        ]
    )
    assert parsed.messages == [
        Message(
            "assistant", tool_calls=[ToolCall("c", "apply_patch", json.dumps({"input": patch}, separators=(",", ":")))]
        ),
        Message("tool", [TextPart("Done!")], tool_call_id="c"),
    ]
    listed = [json.loads(msgspec.json.encode(item)) for item in parsed.items]
    assert [(item["type"], item.get("input"), item.get("output")) for item in listed] == [
        ("custom_tool_call", patch, None),
        ("custom_tool_call_output", None, "Done!"),
    ]


def test_item_ids_sent_by_the_client_are_kept() -> None:
    parsed = _input([{"type": "message", "id": "msg_mine", "role": "user", "content": "x"}])
    assert parsed.items[0].id == "msg_mine"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "message", "role": "robot", "content": "x"}, "input[0]"),
        ({"type": "function_call", "name": "x"}, "input[0]"),
        ({"type": "item_reference", "id": "msg_1"}, "input[0]"),
        ({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}, "input[0]"),
    ],
)
def test_unusable_items_are_400s_naming_the_item(item: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _input([item])
    assert caught.value.param == param


def test_function_and_custom_tools_reach_the_generation_and_hosted_tools_do_not() -> None:
    request = _request(
        tools=[
            {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
            {"type": "web_search"},
            {"type": "custom", "name": "apply_patch"},
        ]
    )
    tools = adapter.tools(request)
    assert [(tool.name, tool.strict) for tool in tools] == [("f", True), ("apply_patch", None)]
    assert adapter.tool_choice(_request(tool_choice={"type": "custom", "name": "apply_patch"}), tools) == ToolChoice(
        "function", "apply_patch"
    )
    assert adapter.tool_choice(_request(tool_choice={"type": "function", "name": "f"}), tools) == ToolChoice(
        "function", "f"
    )
    assert adapter.tool_choice(_request(tool_choice="required"), tools) == ToolChoice("required")
    assert adapter.tool_choice(
        _request(tool_choice={"type": "allowed_tools", "mode": "required"}), tools
    ) == ToolChoice("required")
    with pytest.raises(InvalidRequest):
        adapter.tool_choice(_request(tool_choice={"type": "function", "name": "g"}), tools)


def test_text_format_becomes_chat_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = _request(text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}})
    sampling = adapter.sampling(request)
    assert isinstance(sampling.response_format, msgspec.Raw)
    assert json.loads(bytes(sampling.response_format)) == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert adapter.sampling(_request(text={"format": {"type": "text"}})).response_format is msgspec.UNSET


def test_sampling_options_carry_over() -> None:
    sampling = adapter.sampling(
        _request(
            max_output_tokens=50, temperature=0.2, top_p=0.9, reasoning={"effort": "low"}, parallel_tool_calls=False
        )
    )
    assert (sampling.max_output_tokens, sampling.temperature, sampling.top_p) == (50, 0.2, 0.9)
    assert (sampling.reasoning_effort, sampling.parallel_tool_calls) == ("low", False)


def test_shell_echoes_what_the_client_sent() -> None:
    request = _request(
        instructions="be brief", metadata={"a": "b"}, store=False, tools=[{"type": "function", "name": "f"}]
    )
    shell = adapter.shell(request, response_id="resp_1", created_at=5, choice=None)
    assert (shell.instructions, shell.metadata, shell.store, shell.background) == ("be brief", {"a": "b"}, False, False)
    assert json.loads(bytes(shell.tools)) == [{"type": "function", "name": "f"}]
    assert json.loads(bytes(shell.tool_choice)) == "auto"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ""}, "model"),
        ({"input": ""}, "input"),
        ({"background": True, "store": False}, "store"),
        ({"conversation": "conv_1"}, "conversation"),
    ],
)
def test_request_level_errors(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _request(**fields)
    assert caught.value.param == param


def test_previous_output_becomes_history() -> None:
    output: list[MessageOutput | FunctionCallOutput | CustomToolCallOutput] = [
        MessageOutput(id="m", status="completed", content=[OutputText("thinking")]),
        FunctionCallOutput(id="f", call_id="c", name="w", arguments="{}", status="completed"),
    ]
    assert adapter.history_from_output(output) == [
        Message("assistant", [TextPart("thinking")], tool_calls=[ToolCall("c", "w", "{}")])
    ]
    only_call = adapter.history_from_output(output[1:])
    assert only_call == [Message("assistant", tool_calls=[ToolCall("c", "w", "{}")])]
    custom = CustomToolCallOutput(id="t", call_id="p", name="apply_patch", input="*** Begin Patch", status="completed")
    assert adapter.history_from_output([custom]) == [
        Message("assistant", tool_calls=[ToolCall("p", "apply_patch", '{"input":"*** Begin Patch"}')])
    ]


def _generation(body: bytes) -> tuple[GenerationRequest, ResponseObject]:
    """What the route does with a body before queueing it, and the response object it answers with."""
    request = adapter.decode_create_response(body)
    parsed = adapter.parse_input(request.input, id_prefix="msg_xi")
    tools = adapter.tools(request)
    choice = adapter.tool_choice(request, tools)
    shell = adapter.shell(request, response_id="resp_x", created_at=1, choice=choice)
    instructions = [Message("system", [TextPart(request.instructions)])] if request.instructions else []
    generation = GenerationRequest(
        id="resp_x",
        request_id="r",
        model=request.model,
        messages=instructions + parsed.messages,
        reply_to="c",
        created=1,
        tools=tools,
        tool_choice=choice,
        sampling=adapter.sampling(request),
    )
    check_limits(generation, LimitsConfig(), messages_param="input")
    record = StoredResponse(shell=shell, owner="o", conversation=parsed.messages, input_items=parsed.items)
    assert msgspec.json.decode(msgspec.json.encode(record), type=StoredResponse) == record
    return generation, ResponseProjector(shell).snapshot()


@given(body=st.one_of(response_bodies, any_body))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_body_becomes_a_queueable_generation_or_a_4xx(body: bytes) -> None:
    try:
        generation, response = _generation(body)
    except GatewayError as error:
        assert 400 <= error.status < 500, error
        return
    assert decode_request(encode_request(generation)) == generation
    assert msgspec.json.decode(msgspec.json.encode(response))["id"] == "resp_x"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_output_tokens": -5}, "max_output_tokens"),
        ({"max_output_tokens": 2**64}, "max_output_tokens"),
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {"type": 7}}]}, "tools[0].parameters"),
        ({"text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": 7}}}}, "text.format.schema"),
    ],
)
def test_out_of_range_limits_unknown_n_and_junk_schemas_are_400(fields: dict[str, object], param: str) -> None:
    body = json.dumps({"model": "m", "input": "hi", **fields}).encode()
    with pytest.raises(InvalidRequest) as caught:
        _generation(body)
    assert caught.value.param == param
