from __future__ import annotations

from pathlib import Path

import pytest

from shared.catalog import Catalog
from shared.config import ConfigError, MockChannel, ModelAlias, OpenAIChannel, load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aiapi.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_serve_the_mock_model() -> None:
    settings = load_settings(environ={})
    assert settings.redis.url is None
    assert [c.name for c in settings.channels] == ["mock"]
    assert Catalog(settings.channels).models() == [("mock-1", "mock")]


def test_file_and_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, '[server]\nport = 9000\n[redis]\nurl = "redis://file"\n')
    settings = load_settings(path, environ={"REDIS_URL": "redis://env/1", "AIAPI_HOST": "0.0.0.0"})
    assert settings.server.port == 9000
    assert settings.server.host == "0.0.0.0"
    assert settings.redis.url == "redis://env/1"
    assert load_settings(environ={"AIAPI_CONFIG": str(path), "AIAPI_PORT": "9100"}).server.port == 9100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'x'\n", "Expected `int`, got `str` - at `server.port`"),
        ("[server]\nprot = 1\n", "unknown field `prot` - at `server`"),
        ("[[channels]]\nname='a'\ntype='nope'\nmodels=['m']\n", "Invalid value 'nope' - at `channels[0].type`"),
        (
            "[[channels]]\nname='a'\ntype='mock'\nmodels=['m']\n[[channels]]\nname='a'\ntype='mock'\nmodels=['n']\n",
            "duplicate channel names: a",
        ),
        ("[[channels]]\nname='a'\ntype='openai'\nbase_url='ftp://x'\nmodels=['m']\n", "base_url must start with http"),
        ("[[channels]]\nname='a'\ntype='mock'\nmodels=[]\n", "lists no models"),
        (
            "[[channels]]\nname='a'\ntype='mock'\nmodels=['m']\ntool_validation='strict'\n",
            'tool_client, tool_validation and tool_fallback need tool_mode = "bridge"',
        ),
        (
            "[[channels]]\nname='a'\ntype='mock'\nmodels=['m']\ntool_mode='bridge'\ntool_client='claude'\n",
            "Invalid enum value 'claude' - at `channels[0].tool_client`",
        ),
        ("[server\n", "invalid TOML"),
        ("[server]\nheader_timeout_s = 0\n", "server timeouts must be positive"),
        ("[server]\nmax_connections = 0\n", "server.max_connections must be at least 1"),
        ("[server]\nprocesses = -1\n", "server.processes must be 0 (one per core) or more"),
        ("[worker]\nprocesses = -2\n", "worker.processes must be 0 (one per core) or more"),
        (
            "[server]\nmax_body_bytes = 10\nmax_body_bytes_in_flight = 9\n",
            "server.max_body_bytes_in_flight must be at least server.max_body_bytes",
        ),
    ],
)
def test_invalid_configuration_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"aiapi\.toml") as caught:
        load_settings(_write(tmp_path, text), environ={})
    assert message in str(caught.value)


def test_bridge_settings(tmp_path: Path) -> None:
    text = """
[[channels]]
name = "local"
type = "openai"
base_url = "http://127.0.0.1:8080/v1"
models = ["llama"]
tool_mode = "bridge"
tool_client = "roo"
tool_validation = "strict"
tool_fallback = "read_file"
"""
    channel = load_settings(_write(tmp_path, text), environ={}).channels[0]
    assert (channel.tool_client, channel.tool_validation, channel.tool_fallback) == ("roo", "strict", "read_file")
    chayns = load_settings(_write(tmp_path, "[[channels]]\nname='c'\ntype='chayns'\nmodels=['m']\n"), environ={})
    assert chayns.channels[0].tool_mode == "bridge" and chayns.channels[0].tool_validation == "auto"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_aliases_map_to_upstream_names() -> None:
    channel = OpenAIChannel(name="o", base_url="http://x", models=["a", ModelAlias(name="b", upstream="real-b")])
    assert channel.model_map() == {"a": "a", "b": "real-b"}


def test_empty_key_variable_disables_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAPI_TEST_EMPTY_KEY", "")
    channel = OpenAIChannel(name="o", base_url="http://x", models=["m"], api_key_env="AIAPI_TEST_EMPTY_KEY")
    assert channel.resolved_api_key() is None
    assert "m" not in Catalog([channel])


def test_catalog_orders_routes_by_priority_and_skips_keyless_channels(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ={})
    settings = type(settings)(
        channels=[
            MockChannel(name="second", models=["m"], priority=5),
            MockChannel(name="first", models=["m"], priority=1),
            OpenAIChannel(name="keyless", base_url="http://x", models=["k"], api_key_env="AIAPI_TEST_UNSET_KEY"),
        ]
    )
    catalog = Catalog(settings.channels)
    assert [route.channel.name for route in catalog.routes("m")] == ["first", "second"]
    assert "k" not in catalog
    assert "AIAPI_TEST_UNSET_KEY" in caplog.text
    assert [c.name for c in catalog.channels()] == ["first", "second"]
