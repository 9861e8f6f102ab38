"""benchmarks.drift: the refit schedule, the trailing share and the recovery measure."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.drift import WINDOW, Settings, recovery, summarize_run, trailing_share


def test_refits_double_then_come_daily():
    points = Settings(visitors=6000, first_refit=500, visitors_per_day=1000).refit_points()
    assert points == [500, 1000, 2000, 3000, 4000, 5000]


def test_recovery_counts_visitors_until_the_trailing_share_is_back():
    n, shift = 6000, 3000
    oracle = np.ones(n)
    expected = np.full(n, 0.95)
    expected[shift:shift + 1500] = 0.5  # the shift costs 1,500 visitors at half the oracle
    share = trailing_share(expected, oracle)
    assert share[shift - 1] == pytest.approx(0.95)
    # Back within 2 points once the window holds at most 30 of the bad visitors' loss.
    back = recovery(share, shift, 0.93)
    assert back is not None and 1500 < back <= 1500 + WINDOW
    assert recovery(share, shift, 0.99) is None
    summary = summarize_run(expected, oracle, shift)
    assert summary["recovery_own"] == back and summary["recovery_oracle"] is None
    assert summary["share_before"] == pytest.approx(0.95) and summary["share_after"] < 0.95


def test_engine_variants_parse_and_name_themselves():
    from benchmarks.drift import Variant, parse_variant

    assert parse_variant("plain") == Variant()
    assert parse_variant("half-life=3") == Variant(half_life=3.0)
    assert parse_variant("detect+weekday") == Variant(detect=True, weekday=True)
    assert Variant().name == "engine, no decay"
    assert Variant(detect=True, weekday=True).name == "engine, change detection, weekday declared"
    with pytest.raises(Exception, match="unknown part"):
        parse_variant("sometimes")
    assert Variant(weekday=True) in Settings().engine_variants()
    online = parse_variant("detect+weekday+cusum+reweight")
    assert online == Variant(detect=True, weekday=True, cusum=True, reweight=True)
    assert online.name == "engine, change detection, CUSUM, weekday declared, online updates"
