import pytest

from api.settings import SettingsError, load_settings


def test_defaults_use_a_sqlite_file_in_the_working_directory(monkeypatch):
    monkeypatch.delenv("PRICING_DATABASE_URL", raising=False)
    assert load_settings().database_url == "sqlite:///./pricing.db"


def test_environment_variables_have_one_prefix(monkeypatch):
    monkeypatch.setenv("PRICING_QUOTE_TTL_SECONDS", "60")
    monkeypatch.setenv("PRICING_DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings()
    assert settings.quote_ttl_seconds == 60
    assert settings.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PRICING_QUOTE_TTL_SECONDS", "soon"), ("PRICING_QUOTE_TTL_SECONDS", "0"),
     ("PRICING_DATABASE_URL", "mysql://x"), ("PRICING_PORT", "99999"), ("PRICING_LOG_LEVEL", "loud"),
     ("PRICING_SQLITE_PAGE_SIZE", "1000"), ("PRICING_SQLITE_PAGE_SIZE", "256")],
)  # fmt: skip
def test_invalid_settings_name_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()
