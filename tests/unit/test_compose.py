"""compose.yaml must be accepted by docker-compose (checked where the tool is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_file_is_valid() -> None:
    command = ["docker-compose", "-f", str(REPO / "compose.yaml"), "config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_compose_sample_config_is_valid() -> None:
    from shared.config import load_settings

    settings = load_settings(REPO / "docs" / "aiapi.compose.toml", environ={})
    assert {channel.name for channel in settings.channels} == {"mock", "openai"}
