"""Change detection in the service's refits (PRICING_CHANGE_*): test, carry, down-weight."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import select

from api.orm import Decision, ModelSnapshot, utcnow
from api.security import Role
from api.services.demand_models import (
    DATA_LAG,
    _detect_change,
    change_points,
    change_points_to_dict,
    load_cells,
    refit,
)
from api.settings import Settings
from pricing.changes import ChangeDetection, ChangePoints, Cusum
from pricing.context import WEEKDAYS, ContextSchema
from tests.factories import log_counts, publish, synthetic_posterior, two_category_posterior

TRIALS = 400


def _expected_conversions(posterior, segment, sku):
    """Conversions at list price that the posterior predicts on average (no surprise)."""
    p = posterior.conversion_probability(segment, sku, 1.0)[:, 0]
    return round(TRIALS * float(posterior.weights @ p))


def _published_an_hour_ago(sessions):
    posterior = synthetic_posterior(spread=0.1)
    watermark = utcnow() - timedelta(hours=1)
    return posterior, watermark, publish(sessions, posterior, watermark=watermark)


def _detect(sessions, detection=None):
    """(change point for every category, test) of :func:`_detect_change`; with
    ``detection``, (that point, test, charts, found by)."""
    with sessions() as session:
        points, *rest = _detect_change(session, detection or ChangeDetection(),
                                       utcnow() + timedelta(seconds=1), "non_conversion",
                                       ContextSchema())  # fmt: skip
    found = (points.since, *rest[:3])
    return found if detection is not None else found[:2]


def test_the_documented_defaults():
    settings = Settings()
    assert settings.change_detection and settings.change_alpha == 1e-3
    assert settings.change_weight_before == 0.25
    assert settings.change_config() == ChangeDetection(1e-3, 0.25, cusum=True, cusum_k=1.0, by_category=True)
    assert Settings(change_cusum_k=0.5).change_config() == ChangeDetection(1e-3, 0.25, cusum=True, cusum_k=0.5)
    assert Settings(change_cusum=False).change_config() == ChangeDetection(1e-3, 0.25)
    assert Settings(change_detection=False).change_config() is None


def test_outcomes_as_predicted_raise_no_alarm(catalog, sessions):
    posterior, _watermark, _id = _published_an_hour_ago(sessions)
    log_counts(sessions, [(seg, sku, price, price, TRIALS, _expected_conversions(posterior, seg, sku))
                          for seg in ("default", "loyalty")
                          for sku, price in (("TEA-1", 1000), ("TEA-2", 499))])  # fmt: skip
    change_since, test = _detect(sessions)
    assert test is not None and not test.detected and change_since is None
    assert len(test.blocks) == 2 and abs(test.z).max() < 1.0


def test_a_collapse_in_conversions_moves_the_change_point_to_the_snapshot_s_day(catalog, sessions):
    _posterior, watermark, _id = _published_an_hour_ago(sessions)
    log_counts(sessions, [(seg, "TEA-1", 1000, 1000, TRIALS, 5) for seg in ("default", "loyalty")])
    change_since, test = _detect(sessions)
    assert test is not None and test.detected and test.p_value < 1e-3
    assert change_since == watermark.date()
    # Outcomes from before the snapshot's watermark are not tested (they were in its fit).
    assert test.observed.sum() == 10


def test_a_change_point_is_carried_until_a_newer_one_is_found(catalog, sessions):
    _posterior, _watermark, snapshot_id = _published_an_hour_ago(sessions)
    earlier = (utcnow() - timedelta(days=5)).date()
    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, snapshot_id)
        row.diagnostics = {**row.diagnostics, "change_since": earlier.isoformat()}
    change_since, test = _detect(sessions)
    assert test is None and change_since == earlier  # nothing new to test: the old point holds


def test_a_cusum_carried_between_refits_finds_a_moderate_shift_at_the_start_of_its_excursion(
        catalog, sessions):  # fmt: skip
    posterior, _watermark, snapshot_id = _published_an_hour_ago(sessions)
    detection = ChangeDetection(cusum=True)
    # The serving snapshot's lower level chart stands just below the threshold for a window
    # of an hour (the snapshot's age); its excursion began on 2026-11-28.
    hour = 1 / 24
    charts = Cusum(lower=(detection.window(hour)[1] - 0.05, 0.0),
                   starts=(None, None, "2026-11-28", None))  # fmt: skip
    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, snapshot_id)
        row.diagnostics = {**row.diagnostics, "change_cusum": charts.to_dict()}
    # A little fewer buyers than predicted: no single test would call it a change.
    log_counts(sessions, [(seg, "TEA-1", 1000, 1000, TRIALS,
                           round(0.85 * _expected_conversions(posterior, seg, "TEA-1")))
                          for seg in ("default", "loyalty")])  # fmt: skip
    change_since, test, after, found_by = _detect(sessions, detection)
    assert test is not None and not test.detected and test.pooled_z[0] < -0.6
    # An hour's window spends an hour's share of the day's false-alarm budget (and a little
    # more: the seconds this test took since the snapshot's watermark).
    assert detection.window(hour)[0] <= test.alpha < detection.window(hour + 5 / 1440)[0]
    assert test.to_dict()["alpha"] == test.alpha
    assert found_by == "cusum" and change_since == date(2026, 11, 28)
    assert after == Cusum()  # the charts start again after a detection
    # Without the CUSUM the same outcomes change nothing.
    change_since, test, after, found_by = _detect(sessions, ChangeDetection())
    assert change_since is None and found_by is None and after is None
    # As predicted: the chart falls back and nothing is found.
    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, snapshot_id)
        row.diagnostics = {**row.diagnostics, "change_cusum": Cusum(lower=(1.0, 0.0), starts=(None, None, "2026-11-28", None)).to_dict()}
    change_since, test, after, found_by = _detect(sessions, detection)
    assert found_by is None and change_since is None and after is not None
    # Still the same fewer buyers: the chart keeps climbing, by an hour's share of them.
    assert 1.0 < after.lower[0] < 1.0 + np.sqrt(hour) * -test.pooled_z[0]
    assert after.starts[2] == "2026-11-28"


def test_a_collapse_the_cusum_had_begun_to_see_is_dated_to_the_start_of_its_excursion(
        catalog, sessions):  # fmt: skip
    _posterior, watermark, snapshot_id = _published_an_hour_ago(sessions)
    # The day before, the lower level chart began an excursion (the shift's first day, just
    # short of the single test); today's window is a collapse the test finds.
    began = watermark.date() - timedelta(days=1)
    charts = Cusum(lower=(2.5, 0.0), starts=(None, None, began.isoformat(), None))
    with sessions() as session, session.begin():
        row = session.get(ModelSnapshot, snapshot_id)
        row.diagnostics = {**row.diagnostics, "change_cusum": charts.to_dict()}
    log_counts(sessions, [(seg, "TEA-1", 1000, 1000, TRIALS, 5) for seg in ("default", "loyalty")])
    dating = ChangeDetection(cusum=True, cusum_dating=True)  # PRICING_CHANGE_CUSUM_DATING=true
    change_since, test, after, found_by = _detect(sessions, dating)
    assert test is not None and test.detected and found_by == "test" and test.pooled_z[0] < -2
    assert change_since == began and after == Cusum()
    assert Settings(change_cusum_dating=True).change_config() == dating
    # Dating off (the default): the window's own day.
    change_since, *_rest = _detect(sessions, ChangeDetection(cusum=True))
    assert change_since == watermark.date()


def test_a_collapse_in_one_category_starts_a_new_regime_there_only(catalog, sessions):
    catalog.product("COF-1", category="coffee")
    posterior = two_category_posterior(spread=0.1)
    watermark = utcnow() - timedelta(hours=1)
    publish(sessions, posterior, watermark=watermark)
    # Before the snapshot: a day as predicted in both categories.
    log_counts(sessions, [(seg, sku, 1000, 1000, TRIALS, _expected_conversions(posterior, seg, sku))
                          for seg in ("default", "loyalty") for sku in ("TEA-1", "COF-1")],
               recorded_at=watermark - timedelta(days=2))  # fmt: skip
    # Since: tea's buyers are gone, coffee's are as predicted.
    log_counts(sessions, [(seg, "TEA-1", 1000, 1000, TRIALS, 5) for seg in ("default", "loyalty")]
               + [(seg, "COF-1", 1000, 1000, TRIALS, _expected_conversions(posterior, seg, "COF-1"))
                  for seg in ("default", "loyalty")])  # fmt: skip
    with sessions() as session:
        points, test, _charts, found_by, moved = _detect_change(
            session, ChangeDetection(), utcnow() + timedelta(seconds=1), "non_conversion", ContextSchema())
    assert test is not None and test.detected and found_by == "test"
    assert moved == (watermark.date(), ("tea",))
    assert points.since is None and dict(points.by_category) == {"tea": watermark.date()}
    assert change_points(change_points_to_dict(points)) == points  # as carried in the diagnostics
    with sessions() as session:
        cells = load_cells(session, until=utcnow() + timedelta(seconds=1), changes=points, weight_before=0.25)
    assert cells.regime is not None and cells.weighted_trials is not None
    for category, regime, weight, trials in zip(cells.category, cells.regime, cells.weighted_trials,
                                                cells.trials, strict=True):  # fmt: skip
        if category == "coffee":  # did not move: one regime, every outcome at full weight
            assert not regime and weight == trials
        else:
            assert weight == (trials if regime else 0.25 * trials)
    assert int(cells.regime.sum()) == 2 and len(cells) == 6  # tea: two regimes per segment; coffee: one
    # With the screen off, every category starts again.
    with sessions() as session:
        points, *_rest = _detect_change(session, ChangeDetection(by_category=False),
                                        utcnow() + timedelta(seconds=1), "non_conversion", ContextSchema())
    assert points.since == watermark.date() and not points.by_category


def test_change_points_read_from_diagnostics_tolerate_old_and_malformed_entries():
    assert change_points({"change_since": "2026-11-30"}) == ChangePoints(date(2026, 11, 30))
    assert not change_points({}) and not change_points(None)
    assert not change_points({"change_since": "yesterday"})
    assert not change_points({"change_by_category": ["tea"]}) and not change_points(["tea"])  # type: ignore[arg-type]
    # one bad entry does not take the good ones with it
    assert change_points({"change_since": "2026-11-30", "change_by_category": {"tea": None, "coffee": "2026-12-01"}}) == \
        ChangePoints(date(2026, 11, 30), {"coffee": date(2026, 12, 1)})
    assert change_points_to_dict(ChangePoints()) == {}


def test_outcomes_from_before_the_change_count_the_chosen_weight(catalog, sessions):
    now = utcnow()
    log_counts(sessions, [("loyalty", "TEA-1", 1000, 1000, 10, 4)], recorded_at=now)
    log_counts(sessions, [("loyalty", "TEA-1", 1000, 1000, 20, 2)], recorded_at=now - timedelta(days=3))
    until = now + timedelta(seconds=1)
    with sessions() as session:
        cells = load_cells(session, until=until, changes=ChangePoints((now - timedelta(days=1)).date()),
                           weight_before=0.1)  # fmt: skip
        both = load_cells(session, until=until, half_life_days=3.0,
                          changes=ChangePoints((now - timedelta(days=1)).date()), weight_before=0.1)  # fmt: skip
    # Two cells now: the old regime's (weighted) and the new one's (marked for the shift).
    assert cells.regime is not None and cells.regime.tolist() == [False, True]
    assert cells.trials.tolist() == [20, 10] and cells.weighted_trials is not None
    assert cells.weighted_trials.tolist() == pytest.approx([20 * 0.1, 10])
    assert cells.weighted_conversions is not None
    assert cells.weighted_conversions.tolist() == pytest.approx([2 * 0.1, 4])
    assert both.weighted_trials is not None
    assert both.weighted_trials.tolist() == pytest.approx([20 * 0.1 * 0.5, 10])  # decay and change multiply
    with sessions() as session:
        plain = load_cells(session, until=until)
    assert plain.regime is None and plain.trials.tolist() == [30]


@pytest.mark.slow
def test_a_refit_after_a_shift_records_the_change_and_learns_from_the_new_regime(catalog, sessions,
                                                                                backend):  # fmt: skip
    if backend != "sqlite":
        pytest.skip("the maths is the same on both databases; the detection and load_cells tests "
                    "above cover PostgreSQL")  # fmt: skip
    posterior, watermark, _id = _published_an_hour_ago(sessions)
    # Yesterday: as the posterior predicted. Since the snapshot: hardly anyone buys.
    log_counts(sessions, [(seg, sku, price, price, TRIALS, _expected_conversions(posterior, seg, sku))
                          for seg in ("default", "loyalty") for sku, price in (("TEA-1", 1000), ("TEA-2", 499))],
               recorded_at=watermark - timedelta(days=1))  # fmt: skip
    log_counts(sessions, [(seg, sku, price, price, TRIALS, 8)
                          for seg in ("default", "loyalty") for sku, price in (("TEA-1", 1000), ("TEA-2", 499))])  # fmt: skip
    sampler = {"method": "nuts", "draws": 150, "tune": 150, "chains": 2, "random_seed": 1,
               "retry_target_accept": None, "max_draws": 0}  # no rescue: the gate is not under test
    result = refit(sessions, sampler_config=sampler, now=utcnow() + DATA_LAG + timedelta(seconds=1),
                   change_detection=ChangeDetection())  # fmt: skip
    assert "demand changed" in result.message
    with sessions() as session:
        row = session.scalars(select(ModelSnapshot).order_by(ModelSnapshot.id.desc())).first()
        assert row is not None
        assert row.diagnostics["change_since"] == watermark.date().isoformat()
        assert row.diagnostics["change_weight_before"] == 0.25
        assert row.diagnostics["change_test"]["detected"] is True
        shift = row.diagnostics["regime_shift"]  # what moved, for analysts (API and console)
        assert shift["intercept"] < 0 and set(shift["by_category"]) == {"tea"}
        assert shift["by_category"]["tea"]["intercept"] < 0
    # Yesterday's 1,600 trials count 160: the fit follows the new regime's 2 % conversion.
    if result.published:
        from api.services.demand_models import load_posterior

        with sessions() as session:
            fitted = load_posterior(session.get(ModelSnapshot, result.snapshot_id))
        p = fitted.conversion_probability("default", "TEA-1", 1.0)[:, 0]
        assert float(np.mean(p)) < 0.08


# ----------------------------------------------------------------- calendar: weekday
WEEKDAY = {"features": [{"name": "weekday", "kind": "categorical", "levels": list(WEEKDAYS)}]}


def test_a_declared_weekday_is_filled_from_the_quote_time_when_checkout_leaves_it_out():
    schema = ContextSchema.from_dict(WEEKDAY)
    assert schema.calendar
    monday = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    assert schema.with_calendar({"device": "mobile"}, monday) == {"device": "mobile", "weekday": "mon"}
    # Its UTC day: 01:30 on Tuesday at UTC+2 is still Monday in UTC.
    east = monday.astimezone(timezone(timedelta(hours=2)))
    assert schema.with_calendar({}, east) == {"weekday": "mon"}
    sent = {"weekday": "sat"}
    assert schema.with_calendar(sent, monday) is sent  # what checkout sends wins
    # Only a weekday feature with the seven days is a calendar feature.
    other = ContextSchema.from_dict({"features": [{"name": "weekday", "kind": "categorical",
                                                   "levels": ["weekday", "weekend"]}]})  # fmt: skip
    assert not other.calendar and other.with_calendar({}, monday) == {}
    assert ContextSchema().with_calendar({}, monday) == {}


def test_quotes_log_the_filled_in_weekday_so_the_model_learns_a_weekly_cycle(catalog, sessions):
    response = catalog.put("/v1/context-schema", Role.ANALYST, json=WEEKDAY)
    assert response.status_code in (200, 201), response.text
    before = utcnow()
    plain = catalog.quote("TEA-1", customer="c-1")["lines"][0]
    sent = catalog.quote("TEA-1", customer="c-2", context={"weekday": "sun"})["lines"][0]
    after = utcnow()
    with sessions() as session:
        rows = {str(d.id): d for d in session.scalars(select(Decision))}
    filled = rows[plain["decision_id"]]
    assert filled.context["weekday"] in {WEEKDAYS[before.weekday()], WEEKDAYS[after.weekday()]}
    assert json.loads(filled.context_key) == {"weekday": filled.context["weekday"]}
    assert rows[sent["decision_id"]].context == {"weekday": "sun"}
    # The merchant's days (PRICING_CALENDAR_TIMEZONE): the weekday is Kiritimati's (UTC+14).
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Pacific/Kiritimati")
    catalog.client.app.state.pricing.quotes.calendar_zone = zone
    before = utcnow()
    local = catalog.quote("TEA-1", customer="c-3")["lines"][0]
    after = utcnow()
    with sessions() as session:
        row = session.get(Decision, uuid.UUID(local["decision_id"]))
        assert row is not None
    days = {WEEKDAYS[before.astimezone(zone).weekday()], WEEKDAYS[after.astimezone(zone).weekday()]}
    assert row.context["weekday"] in days
    if before.hour >= 10:  # from 10:00 UTC on it is already the next day there
        assert row.context["weekday"] != WEEKDAYS[before.weekday()]


def test_the_calendar_time_zone_is_an_iana_name():
    from zoneinfo import ZoneInfo

    from api.settings import SettingsError, load_settings

    assert load_settings().calendar_zone() is UTC
    assert load_settings(calendar_timezone="Europe/Paris").calendar_zone() == ZoneInfo("Europe/Paris")
    with pytest.raises(SettingsError, match="PRICING_CALENDAR_TIMEZONE"):
        load_settings(calendar_timezone="Mars/Olympus")
    schema = ContextSchema.from_dict(WEEKDAY)
    saturday_night = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # Sunday 02:00 UTC
    assert schema.with_calendar({}, saturday_night) == {"weekday": "sun"}
    assert schema.with_calendar({}, saturday_night, ZoneInfo("America/New_York")) == {"weekday": "sat"}


def test_a_day_in_sql_is_the_utc_day(sessions, backend):
    """The refit's per-day reads take ``date()`` of a timestamp in SQL: on PostgreSQL that
    is the session's TimeZone, which the engine sets to UTC whatever the server's."""
    from sqlalchemy import text

    if backend != "postgresql":
        pytest.skip("SQLite stores and reads UTC text: no session time zone")
    with sessions() as session:
        assert session.execute(text("SHOW TimeZone")).scalar() == "UTC"
        late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
        assert str(session.execute(text("SELECT date(CAST(:t AS timestamptz))"), {"t": late}).scalar()) == "2026-11-30"
