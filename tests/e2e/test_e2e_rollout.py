"""Rolling restarts through real processes: an API drains on SIGTERM, and a drill restarts every
process in turn under steady load without failing a request.

The drill's client spreads requests over two APIs as a load balancer does: a request that could not be
delivered (connection refused, or closed before any response byte, as a listener closing with
connections in its backlog does) goes to the other API; a request that got a response is never retried.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis

from tests.harness import GatewayProcesses, free_port

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "go"}]
WORDS = [f"w{i}" for i in range(40)]
CONFIG = f"""
[server]
drain_s = {{drain_s}}
[relay]
idle_check_s = 0.3
[worker]
drain_s = 10
[[channels]]
name = "slow"
type = "mock"
models = ["slow-mock"]
tokens_per_second = {{rate}}
reply = "{" ".join(WORDS)}"
"""


def _stream_text(stream: Iterator[object]) -> str:
    return "".join(
        chunk.choices[0].delta.content or ""  # type: ignore[attr-defined]
        for chunk in stream
        if chunk.choices  # type: ignore[attr-defined]
    )


def test_sigterm_drains_the_api_then_ends_what_is_left_with_an_error(redis_url: str) -> None:
    config = CONFIG.format(drain_s=1.5, rate=20)  # a reply takes 2 s
    with (
        GatewayProcesses(redis_url=redis_url, config_toml=config, workers=1) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=30) as sdk,
    ):
        assert gateway.api is not None
        finishing = sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True)
        next(iter(finishing))
        time.sleep(1.0)  # this one has 1 s left: it finishes within the drain period
        too_long = sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True)
        with httpx.stream(
            "POST",
            f"{gateway.base_url}/responses",
            json={"model": "slow-mock", "input": "go", "stream": True},
            timeout=30,
        ) as responses:
            lines = responses.iter_lines()
            next(lines)
            signalled = time.monotonic()
            gateway.api.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{gateway.base_url}/models", timeout=2)
            assert _stream_text(finishing) == " ".join(WORDS)
            # The Responses stream ends with response.failed; both were 2 s long, the drain only 1.5 s.
            events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        assert events[-2:] == ["error", "response.failed"]
        with pytest.raises(openai.APIError) as caught:
            _stream_text(too_long)
        assert caught.value.code == "server_shutting_down"
        assert gateway.api.wait(timeout=10) == 0
        assert 1.5 <= time.monotonic() - signalled < 5
        # What the API ended, it cancelled: the worker stops generating for nobody.
        with redis.Redis.from_url(gateway.redis_url) as client:
            assert len(client.keys("aiapi:{*}:cancel")) == 2


class _Spreading(httpx.HTTPTransport):
    """Round-robin over API ports; a request not delivered to one goes to the next."""

    def __init__(self, ports: list[int]) -> None:
        # A fresh connection per request: what a connection pool would add is the SDK's business.
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0))
        self._ports = ports
        self._turn = itertools.count()
        self.redelivered: Counter[str] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        first = next(self._turn)
        for attempt in range(len(self._ports) * 3):
            request.url = request.url.copy_with(port=self._ports[(first + attempt) % len(self._ports)])
            try:
                return super().handle_request(request)
            except httpx.ConnectError:
                self.redelivered["refused"] += 1
            except httpx.RemoteProtocolError as exc:
                if "without sending a response" not in str(exc):
                    raise
                self.redelivered["closed before a response"] += 1
            time.sleep(0.05)
        raise httpx.ConnectError("no API accepted the request")


def _load(sdk: openai.OpenAI, stream: bool, stop: threading.Event, results: Counter[str], failures: list[str]) -> None:
    expected = " ".join(WORDS)
    while not stop.is_set():
        try:
            if stream:
                text = _stream_text(sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True))
            else:
                reply = sdk.chat.completions.create(model="slow-mock", messages=MESSAGES)
                text = reply.choices[0].message.content or ""
        except (openai.APIError, httpx.HTTPError) as exc:
            failures.append(f"{'stream' if stream else 'request'}: {exc!r}")
            continue
        if text == expected:
            results["stream" if stream else "request"] += 1
        else:
            failures.append(f"{'stream' if stream else 'request'}: wrong text {text[:60]!r}")


def _restart(process: subprocess.Popen[bytes], start: object) -> float:
    """SIGTERM ``process``, wait for its clean exit, start its replacement; how long the exit took."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 0
    stopped = time.monotonic() - began
    start()  # type: ignore[operator]
    return stopped


def test_rolling_restart_of_every_process_fails_no_request(redis_url: str) -> None:
    config = CONFIG.format(drain_s=10, rate=40)  # a reply takes 1 s
    with GatewayProcesses(redis_url=redis_url, config_toml=config, workers=2) as gateway:
        assert gateway.api is not None
        ports = [gateway.port, free_port()]
        apis = [gateway.api, gateway.spawn_api(ports[1])]
        transport = _Spreading(ports)
        results: Counter[str] = Counter()
        failures: list[str] = []
        stop = threading.Event()
        with openai.OpenAI(
            base_url=gateway.base_url,
            api_key="t",
            max_retries=0,
            timeout=30,
            http_client=httpx.Client(transport=transport),
        ) as sdk:
            threads = [
                threading.Thread(target=_load, args=(sdk, stream, stop, results, failures))
                for stream in (True, True, True, False, False)
            ]
            for thread in threads:
                thread.start()
            time.sleep(2)
            exits = []
            for api, port in zip(apis, ports, strict=True):
                exits.append(_restart(api, lambda port=port: gateway.spawn_api(port)))
                time.sleep(1)
            for worker in list(gateway.workers):
                exits.append(_restart(worker, gateway.start_worker))
                time.sleep(1)
            time.sleep(1)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        print(f"drill: {dict(results)} completed, redelivered {dict(transport.redelivered)}, exits {exits}")
        assert failures == [], f"{failures[:5]}\n{gateway.logs()}"
        assert results["stream"] > 10 and results["request"] > 5
