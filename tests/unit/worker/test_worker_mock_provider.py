from __future__ import annotations

from shared.config import Account, MockChannel
from shared.events import Finished, TextDelta, Usage
from shared.generation import GenerationRequest, Message, Sampling, TextPart
from worker.providers import UpstreamCall
from worker.providers.mock import MockProvider


def _request(max_tokens: int | None = None) -> GenerationRequest:
    return GenerationRequest(
        "g",
        "r",
        "m",
        [Message("user", [TextPart("ping pong")])],
        "c",
        1,
        sampling=Sampling(max_output_tokens=max_tokens),
    )


async def test_reply_is_deterministic_and_substitutes_the_prompt() -> None:
    provider = MockProvider(MockChannel(name="m", models=["m"], reply="you said {prompt}"))
    outputs = [o async for o in provider.stream(UpstreamCall(_request(), "m", Account("a")))]
    text = "".join(o.text for o in outputs if isinstance(o, TextDelta))
    assert text == "you said ping pong"
    assert outputs[-2:] == [Usage(input_tokens=2, output_tokens=4), Finished("stop")]


async def test_max_output_tokens_truncates_with_length() -> None:
    provider = MockProvider(MockChannel(name="m", models=["m"], reply="a b c d e"))
    outputs = [o async for o in provider.stream(UpstreamCall(_request(max_tokens=2), "m", Account("a")))]
    assert [o for o in outputs if isinstance(o, TextDelta)] == [TextDelta("a"), TextDelta(" b")]
    assert outputs[-1] == Finished("length")
