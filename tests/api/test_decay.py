"""Time decay of the refit's data (PRICING_DEMAND_HALF_LIFE_DAYS): old outcomes count less."""

from datetime import timedelta

import numpy as np
import pytest

from api.orm import utcnow
from api.services.demand_models import load_cells
from api.settings import Settings
from tests.factories import log_counts


def test_the_documented_default_half_life_is_90_days():
    assert Settings().demand_half_life_days == 90.0


def test_old_outcomes_count_half_after_one_half_life(catalog, sessions):
    now = utcnow()
    # The same cell (TEA-1 at list price): 10 trials today, 20 trials 90 days ago.
    log_counts(sessions, [("loyalty", "TEA-1", 1000, 1000, 10, 4)], recorded_at=now)
    log_counts(sessions, [("loyalty", "TEA-1", 1000, 1000, 20, 2)], recorded_at=now - timedelta(days=90))
    until = now + timedelta(seconds=1)
    with sessions() as session:
        plain = load_cells(session, until=until)
        decayed = load_cells(session, until=until, half_life_days=90.0)
        off = load_cells(session, until=until, half_life_days=0.0)
    assert len(plain) == len(decayed) == 1
    assert plain.weighted_trials is None and off.weighted_trials is None
    # Raw counts are kept; the likelihood counts the decayed ones.
    assert decayed.trials.tolist() == [30] and decayed.conversions.tolist() == [6]
    assert decayed.weighted_trials is not None and decayed.weighted_conversions is not None
    assert decayed.weighted_trials[0] == pytest.approx(10 + 20 * 0.5)
    assert decayed.weighted_conversions[0] == pytest.approx(4 + 2 * 0.5)


def test_data_of_today_only_is_not_reweighted(catalog, sessions):
    log_counts(sessions, [("loyalty", "TEA-1", 1000, 1000, 10, 4)])
    with sessions() as session:
        cells = load_cells(session, until=utcnow() + timedelta(seconds=1), half_life_days=30.0)
    # Age 0 counts fully: the fit is the undecayed one (plain binomial likelihood).
    assert cells.weighted_trials is None
    assert np.array_equal(cells.trials, [10])
