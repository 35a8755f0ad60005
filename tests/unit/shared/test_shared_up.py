"""``aiapi up``'s layout: how many API and worker processes, what each is given, and the shared port."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from shared.cli import main
from shared.config import Settings, load_settings
from shared.up import port_socket, process_counts, roles, usable_cores


def _settings(tmp_path: Path, text: str = "") -> Settings:
    path = tmp_path / "aiapi.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ={})


def test_one_api_and_one_worker_process_per_core_by_default(tmp_path: Path) -> None:
    assert process_counts(_settings(tmp_path), api=None, workers=None, cores=6) == (6, 6)


def test_the_config_overrides_the_core_count_and_the_flags_override_the_config(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "[server]\nprocesses = 3\n[worker]\nprocesses = 5\n")
    assert process_counts(settings, api=None, workers=None, cores=8) == (3, 5)
    assert process_counts(settings, api=1, workers=None, cores=8) == (1, 5)
    assert process_counts(settings, api=None, workers=2, cores=8) == (3, 2)
    only_workers = _settings(tmp_path, "[worker]\nprocesses = 4\n")
    assert process_counts(only_workers, api=None, workers=None, cores=2) == (2, 4)


def test_usable_cores_follow_the_affinity_mask() -> None:
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert usable_cores() == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert usable_cores() == len(mask)


@pytest.mark.parametrize("flag", ["--api-processes", "--workers"])
def test_a_process_count_below_one_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", flag, "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_api_processes_share_the_port_and_others_cannot_take_it() -> None:
    first = port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = port_socket("127.0.0.1", port)
    plain = socket.socket()
    try:
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    finally:
        for sock in (first, second, plain):
            sock.close()


def test_roles_of_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/somewhere/else")
    text = "[server]\nport = 8100\n[worker]\nmetrics_port = 9100\n[ledger]\nenabled = true\n"
    layout = roles(_settings(tmp_path, text), "c.toml", "redis://r:1/0", str(tmp_path), 2, 3)
    assert [role.name for role in layout] == ["api 1", "api 2", "worker 1", "worker 2", "worker 3", "recorder"]
    assert [role.stage for role in layout] == [0, 0, 1, 1, 1, 2]
    apis, workers, recorder = layout[:2], layout[2:5], layout[5]
    for api in apis:
        assert list(api.argv[-4:]) == ["--config", "c.toml", "api", "--reuse-port"]
        assert api.env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
        assert (api.env["AIAPI_PORT"], api.env["REDIS_URL"]) == ("8100", "redis://r:1/0")
        assert api.on_exit is not None
    assert [worker.env["AIAPI_WORKER_METRICS_PORT"] for worker in workers] == ["9100", "9101", "9102"]
    assert all("PROMETHEUS_MULTIPROC_DIR" not in role.env for role in [*workers, recorder])
    assert recorder.argv[-1] == "recorder"


def test_a_single_api_process_keeps_its_metrics_in_memory(tmp_path: Path) -> None:
    layout = roles(_settings(tmp_path, "[ledger]\nenabled = false\n"), None, None, None, 1, 1)
    assert [role.name for role in layout] == ["api 1", "worker 1"]
    assert "PROMETHEUS_MULTIPROC_DIR" not in layout[0].env and layout[0].on_exit is None


def test_up_stops_at_once_when_another_program_holds_the_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("AIAPI_CONFIG", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "aiapi.toml"
        config.write_text(f'[redis]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
        assert main(["--config", str(config), "up", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # before Redis was started
