"""goals-worker: the nameko side of the goals service (eventlet).

It relays the outboxes (V2MOMs, the directory, cycles, comments) to the ``goals.events`` exchange. HRIS directory sync
(a later issue) adds its event handlers here.
Run it with ``python -m services.goals.worker``.
"""

import warnings

# eventlet warns that it is in bugfix-only mode; docs/architecture.md records that choice.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

from nameko.timer import timer  # noqa: E402

from services.platform.core.config import load_or_exit as load_settings  # noqa: E402
from services.platform.worker.deps import OutboxRelayProvider  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402

from .comments import COMMENTS  # noqa: E402
from .directory import CYCLES, ORG_UNITS, PEOPLE  # noqa: E402
from .repository import V2MOMS  # noqa: E402

RELAY_INTERVAL = load_settings("goals").relay_interval_seconds


class GoalsWorker:
    name = "goals_worker"

    relay = OutboxRelayProvider("goals", [V2MOMS, PEOPLE, ORG_UNITS, CYCLES, COMMENTS])

    @timer(interval=RELAY_INTERVAL)
    def relay_outbox(self):
        # Drain fully each tick so a backlog after an outage clears quickly.
        self.relay.drain()


def main() -> None:
    run_services("goals", GoalsWorker)


if __name__ == "__main__":
    main()
