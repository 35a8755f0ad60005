"""The ledger's settings: database URL, prices and budgets, each refused with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, load_settings
from shared.ledger.database import database_url
from shared.ledger_config import DatabaseConfig, Price


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> object:
    path = tmp_path / "aiapi.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ=environ or {})


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ('[prices."gpt-9"]\ninput = 1\n', {}, "prices for models no channel serves: gpt-9"),
        ('[prices."mock-1"]\ninput = -1\n', {}, "Expected `float` >= 0.0 - at `prices[...].input`"),
        ("", {"DATABASE_URL": "not a url"}, "database url 'not a url' is not a database URL"),
        ("", {"DATABASE_URL": "mysql://db/x"}, "unsupported database 'mysql'"),
        ("", {"DATABASE_URL": "postgresql:///x"}, "a postgresql URL needs a host"),
        ('[[access.keys]]\nname = "a"\nkey_env = "A"\nbudget_usd = -5\n', {}, "budget_usd"),
    ],
)
def test_bad_ledger_settings_stop_the_start(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        _load(tmp_path, text, environ)


def test_urls_get_their_async_driver_and_the_default_lives_in_the_data_folder() -> None:
    assert str(database_url(DatabaseConfig(), "/data")) == "sqlite+aiosqlite:////data/ledger.db"
    url = database_url(DatabaseConfig(url="postgresql://u:secret@db:5432/aiapi"), "/data")
    assert url.drivername == "postgresql+asyncpg" and url.host == "db" and url.password == "secret"


def test_a_password_is_not_shown_in_messages() -> None:
    with pytest.raises(ValueError, match=r"'postgresql://u:\*\*\*@db:port/x' is not a database URL") as caught:
        database_url(DatabaseConfig(url="postgresql://u:secret@db:port/x"), "/d")
    assert "secret" not in str(caught.value)


def test_cost_counts_cached_input_at_its_own_price() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    assert price.cost(1_000_000, 500_000, 400_000) == pytest.approx(1.2 + 0.2 + 4.0)
    assert Price(input=2.0).cost(1_000_000, 0, 400_000) == pytest.approx(2.0)
