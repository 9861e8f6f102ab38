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


def test_fastapi_opentelemetry_is_off_unless_asked_for(monkeypatch, tmp_path):
    """Off, FastAPI does not look for OpenTelemetry providers on every request."""
    import os

    from api.app import create_app

    url = f"sqlite:///{tmp_path / 'o.db'}"
    off = create_app(load_settings(database_url=url))
    reads: list[str] = []
    original = os.environ.__class__.__getitem__

    def counting(self, key):
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(os.environ.__class__, "__getitem__", counting)
    assert not off._native_telemetry.enabled() and reads == []
    monkeypatch.undo()
    monkeypatch.setenv("PRICING_OPENTELEMETRY", "true")
    on = create_app(load_settings(database_url=url))
    assert on._telemetry["tracing"] and on._telemetry["metrics"]


def test_safe_start_waits_for_more_outcomes_before_its_first_fit(monkeypatch, tmp_path):
    """The first fit comes at 200 outcomes, at 500 with safe start (measured: safe start
    earned more from a first fit on 500 in five markets of six, the same in the sixth), unless set; both the queue's
    jobs and ``pricing-engine update`` read it."""
    from sqlalchemy.orm import sessionmaker

    from api.jobs import JobRuntime

    for name in ("PRICING_MAX_LOSS_VS_LIST", "PRICING_FIRST_FIT_OUTCOMES"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().first_fit_min_outcomes() == 200
    assert load_settings(max_loss_vs_list=0.02).first_fit_min_outcomes() == 500
    monkeypatch.setenv("PRICING_FIRST_FIT_OUTCOMES", "300")
    assert load_settings(max_loss_vs_list=0.02).first_fit_min_outcomes() == 300
    assert load_settings().first_fit_min_outcomes() == 300
    runtime = JobRuntime.from_settings(load_settings(), sessionmaker())
    assert runtime.min_outcomes == 300
    monkeypatch.setenv("PRICING_FIRST_FIT_OUTCOMES", "0")
    with pytest.raises(SettingsError, match="PRICING_FIRST_FIT_OUTCOMES"):
        load_settings()
