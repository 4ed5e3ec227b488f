"""The retry schedule of failed deliveries: it spans hours, its jitter stays within bounds, it honours Retry-After,
and it ends."""

import random

import pytest

from services.notify.channels.retry import JITTER, MAX_RETRY_AFTER, MAX_TRIES, SCHEDULE, next_try_delay


class Fixed:
    """A random source that always draws the same point of the range: the schedule's own delays, or its edges."""

    def __init__(self, point: float):
        self.point = point

    def uniform(self, low, high):
        return low + (high - low) * self.point


def test_the_schedule_spans_hours_and_grows():
    delays = [next_try_delay(tries, rng=Fixed(0.5)) for tries in range(1, MAX_TRIES)]
    assert delays == pytest.approx(list(SCHEDULE))
    assert delays == sorted(delays)
    assert delays[0] <= 60, "the first retry comes within a minute: most failures are a blip"
    assert sum(delays) >= 12 * 3600, "a receiver down for a night still gets its deliveries by morning"
    assert 8 <= MAX_TRIES <= 10


def test_there_is_no_try_after_the_last_one():
    assert next_try_delay(MAX_TRIES) is None
    assert next_try_delay(MAX_TRIES + 3) is None
    assert next_try_delay(MAX_TRIES, retry_after=5) is None
    assert next_try_delay(MAX_TRIES - 1) is not None


def test_jitter_stays_within_twenty_percent_and_really_varies():
    rng = random.Random(7)
    for tries, base in enumerate(SCHEDULE, start=1):
        delays = [next_try_delay(tries, rng=rng) for _ in range(200)]
        assert all(base * (1 - JITTER) <= delay <= base * (1 + JITTER) for delay in delays)
        assert len({round(delay, 3) for delay in delays}) > 100, "the delays are spread, not one value"
    assert next_try_delay(1, rng=Fixed(0.0)) == pytest.approx(SCHEDULE[0] * 0.8)
    assert next_try_delay(1, rng=Fixed(1.0)) == pytest.approx(SCHEDULE[0] * 1.2)


def test_retry_after_is_honoured_and_never_undercut():
    assert next_try_delay(1, retry_after=900, rng=Fixed(0.5)) == 900
    # Asking for a second does not make us burn a try per second: the schedule's delay still holds.
    assert next_try_delay(4, retry_after=1, rng=Fixed(0.5)) == pytest.approx(SCHEDULE[3])
    assert next_try_delay(1, retry_after=10 * 24 * 3600) == MAX_RETRY_AFTER
    assert next_try_delay(1, retry_after=-5, rng=Fixed(0.5)) == pytest.approx(SCHEDULE[0])
