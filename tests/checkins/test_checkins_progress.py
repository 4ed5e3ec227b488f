"""The progress arithmetic: measures, own progress, tree progress and snapshot weeks (pure, no I/O)."""

from datetime import UTC, date, datetime

import pytest

from services.checkins.progress import (
    DECREASE,
    INCREASE,
    MEASURE,
    METHOD,
    ItemProgress,
    clamp_percent,
    measure_progress,
    own_progress,
    tree_progress,
    weighted_average,
    week_start,
)


def measure(progress, weight=0.0):
    return ItemProgress(MEASURE, weight, progress)


def method(progress, weight=0.0):
    return ItemProgress(METHOD, weight, progress)


# --- one measure -----------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(20, 0.0), (40, 50.0), (60, 100.0), (30, 25.0)])
def test_increasing_measure_is_the_share_of_the_way_from_baseline_to_target(value, expected):
    assert measure_progress(value, baseline=20, target=60, direction=INCREASE) == pytest.approx(expected)


@pytest.mark.parametrize("value, expected", [(30, 0.0), (20, 50.0), (10, 100.0), (25, 25.0)])
def test_decreasing_measure_counts_down_from_baseline_to_target(value, expected):
    assert measure_progress(value, baseline=30, target=10, direction=DECREASE) == pytest.approx(expected)


@pytest.mark.parametrize("value, expected", [(80, 100.0), (-5, 0.0), (1000, 100.0)])
def test_progress_is_clamped_to_0_100(value, expected):
    assert measure_progress(value, baseline=20, target=60) == expected


def test_a_decreasing_measure_that_got_worse_is_at_zero_not_negative():
    assert measure_progress(45, baseline=30, target=10, direction=DECREASE) == 0.0


def test_a_decreasing_measure_that_overshot_is_at_100():
    assert measure_progress(2, baseline=30, target=10, direction=DECREASE) == 100.0


def test_an_unspecified_direction_reads_the_numbers():
    assert measure_progress(20, baseline=30, target=10, direction="DIRECTION_UNSPECIFIED") == pytest.approx(50.0)


@pytest.mark.parametrize("direction, value, expected", [
    (INCREASE, 5, 100.0), (INCREASE, 6, 100.0), (INCREASE, 4, 0.0),
    (DECREASE, 5, 100.0), (DECREASE, 4, 100.0), (DECREASE, 6, 0.0),
])
def test_target_equal_to_baseline_is_met_or_not(direction, value, expected):
    assert measure_progress(value, baseline=5, target=5, direction=direction) == expected


def test_clamp_percent():
    assert (clamp_percent(-1), clamp_percent(42.5), clamp_percent(101)) == (0.0, 42.5, 100.0)


# --- weights --------------------------------------------------------------------------


def test_weighted_average_uses_the_weights():
    assert weighted_average([(75, 50.0), (25, 100.0)]) == pytest.approx(62.5)


def test_weighted_average_is_plain_when_no_weight_is_set():
    assert weighted_average([(0, 50.0), (0, 100.0)]) == pytest.approx(75.0)


def test_weighted_average_of_nothing_is_zero():
    assert weighted_average([]) == 0.0


def test_weights_that_no_longer_total_100_are_normalised():
    # An approval removed a measure: the weights left are 60 and 20.
    assert weighted_average([(60, 100.0), (20, 0.0)]) == pytest.approx(75.0)


# --- own progress ----------------------------------------------------------------------------


def test_own_progress_is_the_weighted_average_of_the_measures():
    assert own_progress([measure(50.0, 75), measure(100.0, 25)]) == pytest.approx(62.5)


def test_own_progress_uses_equal_weights_when_none_are_set():
    assert own_progress([measure(20.0), measure(40.0), measure(90.0)]) == pytest.approx(50.0)


def test_a_measure_without_a_check_in_counts_as_zero():
    assert own_progress([measure(80.0, 50), measure(None, 50)]) == pytest.approx(40.0)


def test_methods_do_not_count_when_there_are_measures():
    assert own_progress([measure(10.0), method(100.0), method(100.0)]) == pytest.approx(10.0)


def test_methods_count_when_there_are_no_measures():
    assert own_progress([method(100.0, 40), method(50.0, 60)]) == pytest.approx(70.0)


def test_methods_without_check_ins_count_as_zero():
    assert own_progress([method(None), method(60.0)]) == pytest.approx(30.0)


def test_no_items_means_no_progress():
    assert own_progress([]) == 0.0


# --- tree progress ------------------------------------------------------------------------


def test_tree_progress_averages_own_and_each_child_equally():
    assert tree_progress(75.0, has_items=True, children=[37.5]) == pytest.approx(56.25)
    assert tree_progress(30.0, has_items=True, children=[60.0, 90.0]) == pytest.approx(60.0)


def test_tree_progress_without_children_is_own_progress():
    assert tree_progress(42.0, has_items=True, children=[]) == 42.0


def test_a_v2mom_without_items_does_not_pull_its_tree_down():
    assert tree_progress(0.0, has_items=False, children=[40.0, 80.0]) == pytest.approx(60.0)


def test_a_v2mom_with_items_but_no_check_ins_counts_as_zero_in_its_tree():
    assert tree_progress(0.0, has_items=True, children=[40.0, 80.0]) == pytest.approx(40.0)


def test_nothing_at_all_is_zero():
    assert tree_progress(0.0, has_items=False, children=[]) == 0.0


# --- weeks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("moment, monday", [
    (datetime(2026, 3, 2, 0, 0, tzinfo=UTC), date(2026, 3, 2)),      # a Monday
    (datetime(2026, 3, 8, 23, 59, tzinfo=UTC), date(2026, 3, 2)),    # the Sunday after
    (datetime(2026, 3, 9, 0, 0, tzinfo=UTC), date(2026, 3, 9)),      # the next Monday
    (datetime(2027, 1, 1, 12, 0, tzinfo=UTC), date(2026, 12, 28)),   # across a year end
    (date(2026, 11, 26), date(2026, 11, 23)),
])
def test_week_start_is_the_monday_of_the_iso_week(moment, monday):
    assert week_start(moment) == monday
