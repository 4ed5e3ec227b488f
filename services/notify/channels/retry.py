"""When to try a failed delivery again: a schedule that spans about sixteen hours, with jitter.

A receiver that is down for a deploy is back in minutes; one that is down for
a night is back by morning. The schedule covers both before giving up. Each
delay moves by up to 20% either way, so the deliveries that failed together
during an outage do not all come back in the same second.
"""

import random

# The delay after the 1st, 2nd, ... failed try, in seconds: 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h.
SCHEDULE = (30, 120, 600, 1800, 3600, 7200, 14400, 28800)
MAX_TRIES = len(SCHEDULE) + 1  # the first try and one per delay
JITTER = 0.2
# A receiver's Retry-After is honoured up to a day; a longer one is treated as a day.
MAX_RETRY_AFTER = 24 * 3600.0


def next_try_delay(tries: int, retry_after: float | None = None, rng=random) -> float | None:
    """Seconds until the next try after ``tries`` tries have failed; None when there is no next try.

    A Retry-After (429, 503) is never undercut: the delay is the later of it and the schedule's, so a
    receiver cannot make us burn every try in a minute by asking for one second each time.
    """
    if tries < 1:
        return 0.0
    if tries >= MAX_TRIES:
        return None
    scheduled = SCHEDULE[tries - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is None:
        return scheduled
    return max(min(max(retry_after, 0.0), MAX_RETRY_AFTER), scheduled)
