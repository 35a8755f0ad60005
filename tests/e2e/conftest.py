"""Real processes for end-to-end tests: the fake upstream, an API process and a worker process."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

FAKE_MODELS = [
    "fake-model",
    "fake-echo",
    "fake-error-500",
    "fake-error-400",
    "fake-error-429",
    "fake-stall",
    "fake-tools",
    "fake-midstream-error",
    "fake-transcript",
]


def gateway_config(upstream_url: str, *, extra: str = "") -> str:
    models = ", ".join(f'"{m}"' for m in FAKE_MODELS)
    return f"""
{extra}
[[channels]]
name = "fake"
type = "openai"
base_url = "{upstream_url}"
models = [{models}, {{ name = "alias-model", upstream = "fake-model" }}]

[[channels]]
name = "mock"
type = "mock"
models = ["mock-1"]

[[channels]]
name = "mock-slow"
type = "mock"
models = ["mock-slow"]
tokens_per_second = 20
reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
"""


@pytest.fixture(scope="session")
def upstream() -> Iterator[RunningFakeUpstream]:
    with RunningFakeUpstream(chunks=20) as fake:
        yield fake


@pytest.fixture(scope="session")
def gateway(redis_url: str, upstream: RunningFakeUpstream) -> Iterator[GatewayProcesses]:
    config = gateway_config(upstream.base_url, extra="[relay]\nidle_check_s = 0.5\n")
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as processes:
        yield processes


@pytest.fixture
def client(gateway: GatewayProcesses) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key="test", max_retries=0, timeout=20) as sdk:
        yield sdk
