"""An upstream that echoes the gateway's key in its error text: neither the client's error body nor any
process's log may carry the key, and an authentication failure's text is not relayed at all."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

SK_KEY = "sk-proj-e2eLEAKcheck0123456789abcdef"
PLAIN_KEY = "plainChannelSecret4242"
CONFIG = """
[routing]
max_attempts = 2
backoff_s = 0.01

[[channels]]
name = "keyed"
type = "openai"
base_url = "{upstream}"
api_key = "{sk_key}"
models = ["fake-leak-401", "fake-leak-500"]

[[channels]]
name = "plain"
type = "openai"
base_url = "{upstream}"
api_key = "{plain_key}"
models = [{{ name = "plain-leak-502", upstream = "fake-leak-502" }}]
"""


@pytest.fixture(scope="module")
def gateway(redis_url: str, upstream: RunningFakeUpstream) -> Iterator[GatewayProcesses]:
    config = CONFIG.format(upstream=upstream.base_url, sk_key=SK_KEY, plain_key=PLAIN_KEY)
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as processes:
        yield processes


def _failure(gateway: GatewayProcesses, model: str, stream: bool) -> openai.APIStatusError:
    with openai.OpenAI(base_url=gateway.base_url, api_key="client", max_retries=0, timeout=20) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            reply = sdk.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=stream
            )
            if stream:
                list(reply)
        return caught.value


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_auth_failure_is_relayed_without_its_text(gateway: GatewayProcesses, stream: bool) -> None:
    error = _failure(gateway, "fake-leak-401", stream)
    assert error.status_code == 502
    body = error.response.text
    assert "upstream_401" in body and "HTTP 401" in body and "fake_401" in body
    assert "Incorrect API key" not in body and SK_KEY not in body
    assert SK_KEY not in gateway.logs(tail=10**7)


@pytest.mark.parametrize(("model", "key"), [("fake-leak-500", SK_KEY), ("plain-leak-502", PLAIN_KEY)])
def test_an_echoed_key_is_scrubbed_from_relayed_text_and_logs(gateway: GatewayProcesses, model: str, key: str) -> None:
    error = _failure(gateway, model, stream=False)
    assert error.status_code == 502
    body = error.response.text
    assert "Incorrect API key provided: [redacted]" in body and key not in body
    logs = gateway.logs(tail=10**7)
    assert "[redacted]" in logs and key not in logs
