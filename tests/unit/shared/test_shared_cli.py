"""The command line: where ``--config`` may stand."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli import main


@pytest.mark.parametrize("position", ["before", "after"])
def test_config_is_read_before_or_after_the_subcommand(
    position: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIAPI_CONFIG", raising=False)
    monkeypatch.delenv("AIAPI_PORT", raising=False)
    config = tmp_path / "aiapi.toml"
    config.write_text('[server]\nport = 8123\n[[channels]]\nname = "m"\ntype = "mock"\nmodels = ["m-1"]\n')
    argv = ["--config", str(config), "check"] if position == "before" else ["check", "--config", str(config)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert ":8123/v1" in out
    assert "models served: m-1" in out
