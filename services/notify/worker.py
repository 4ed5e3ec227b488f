"""notify-worker: the nameko side of the notify service (eventlet).

- consumes goals' ``v2mom_submitted``, ``v2mom_approved``,
  ``v2mom_changes_requested``, ``v2mom_withdrawn``, ``v2mom_archived``, ``obstacle_changed``,
  ``comment_added``, ``v2mom_parent_changed``, ``person_upserted``, ``cycle_changed`` and ``cycle_closed``, and
  check-ins' ``item_became_stale``, ``item_overdue``, ``checkin_recorded`` and
  ``progress_changed``: what each does lives in handlers.py;
- at start, fills the quarters of cycles no event named from goals-api's
  ``ListCycles`` (asking again on a timer while goals-api does not answer);
- fires due schedules (approval reminders and escalations, item
  escalations, check-in reminders, weekly digests) on a timer, each under
  a lease;
- sends due deliveries on a timer (dispatch.py), each under a lease, the
  emails of one batch over one SMTP connection;
- relays the outbox of ``deliveries`` (``notification_sent`` /
  ``notification_failed``) to ``notify.events``.

Run it with ``python -m services.notify.worker``.
"""

import warnings

# eventlet warns that it is in bugfix-only mode; docs/architecture.md records that choice.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

import logging  # noqa: E402

from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.timer import timer  # noqa: E402

from services.platform.core import config as config_module  # noqa: E402
from services.platform.core.errors import Unavailable  # noqa: E402
from services.platform.store.mongo import connect, ensure_indexes  # noqa: E402
from services.platform.worker.blocking import call_blocking  # noqa: E402
from services.platform.worker.consumer import cloud_event_handler, with_retries  # noqa: E402
from services.platform.worker.deps import OutboxRelayProvider  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402

from .channels.email import SmtpSession, SmtpSettings, send_email  # noqa: E402
from .channels.webhooks import send_webhook  # noqa: E402
from .deliveries import Stats  # noqa: E402
from .directory import GoalsPeople, People  # noqa: E402
from .dispatch import Dispatcher  # noqa: E402
from .handlers import Notifier, WorkerSettings  # noqa: E402
from .schedules import Schedules  # noqa: E402
from .store import DELIVERIES, INDEXES  # noqa: E402

log = logging.getLogger(__name__)

SERVICE = "notify"
RELAY_INTERVAL = config_module.load_or_exit(SERVICE).relay_interval_seconds
SETTINGS = config_module.or_exit(SERVICE, WorkerSettings.from_env)
SCHEDULE_BATCH = 50


class Notify:
    """The notify database, the people copy (goals-api behind it), the handlers and the dispatcher of one container."""

    def __init__(self, db, goals: GoalsPeople, settings: WorkerSettings, smtp: SmtpSettings):
        self.db = db
        self.goals = goals
        self.people = People(db, goals, call_goals=call_blocking)
        # One stats buffer: the handlers fold their counts into it, every dispatch pass writes it (deliveries.py).
        self.stats = Stats(db)
        self.notifier = Notifier(db, self.people, settings, stats=self.stats, fold_stats=True)
        self.schedules = Schedules(db)
        self.settings = settings
        self.cycles_filled = False
        self.dispatcher = Dispatcher(
            db, self.people, lambda message: send_email(message, smtp),
            lambda subscription, message: send_webhook(subscription, message, settings.send_timeout_seconds,
                                                       settings.allow_private_webhooks),
            settings, email_session=lambda: SmtpSession(smtp), stats=self.stats,
        )

    def fill_cycles(self) -> bool:
        """Once per process, as soon as goals-api answers: the quarters of cycles created before notify-worker
        consumed cycle events (handlers.Notifier.fill_cycles). goals-api down is no reason not to start: the
        timer asks again later. True once done."""
        if self.cycles_filled:
            return True
        try:
            listed = call_blocking(self.goals.list_cycles)
        except Unavailable as error:
            log.warning("cycles not filled from goals-api yet; will ask again", extra={"reason": str(error)})
            return False
        changed = self.notifier.fill_cycles(listed)
        log.info("cycles filled from goals-api", extra={"listed": len(listed), "changed": changed})
        self.cycles_filled = True
        return True

    def fire_due_schedules(self, limit: int) -> int:
        """The ids of the due schedules in one query, then each claimed by ``_id`` and fired; how many fired."""
        fired = 0
        while fired < limit:
            claimed_any = False
            for schedule_id in self.schedules.due(self.notifier.now(), limit - fired):
                schedule = self.schedules.claim(schedule_id, self.notifier.now(), self.settings.lease_seconds)
                if schedule is None:
                    continue  # another replica has it, or it was cancelled meanwhile
                claimed_any = True
                fired += 1
                try:
                    self.notifier.fire(schedule)
                except Exception:  # its lease expires and the next claim fires it again, writing nothing twice
                    log.exception("schedule failed", extra={"schedule_id": schedule["_id"], "kind": schedule["kind"]})
                    continue
                self.schedules.done(schedule, self.notifier.now())
            if not claimed_any:
                break
        return fired


class NotifyProvider(DependencyProvider):
    def setup(self):
        settings = config_module.load(SERVICE)
        self.client = connect(settings.mongo_uri, f"{SERVICE}-worker")
        database = self.client[settings.database_name]
        ensure_indexes(database, INDEXES)
        self.goals = GoalsPeople(settings.goals_addr, settings.auth)
        self.notify = Notify(database, self.goals, SETTINGS, SmtpSettings.from_env())

    def stop(self):
        try:
            self.notify.stats.flush()  # counts folded since the last dispatch pass
        except Exception:
            log.exception("stats not written at stop")
        self.goals.close()
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.notify


class NotifyWorker:
    name = "notify_worker"

    notify = NotifyProvider()
    # A delivery carries one event in its life (deliveries.py): the relay empties its outbox in one write.
    relay = OutboxRelayProvider(SERVICE, [DELIVERIES], append_once=frozenset({DELIVERIES}))

    @timer(interval=RELAY_INTERVAL)
    def relay_outbox(self):
        self.relay.drain()

    @timer(interval=SETTINGS.dispatch_interval_seconds)
    def dispatch_deliveries(self):
        if self.notify.dispatcher.run_once(SETTINGS.dispatch_pass_max):
            self.relay.kick([DELIVERIES])

    @timer(interval=SETTINGS.cycle_fill_retry_seconds, eager=True)
    def fill_cycles(self):
        self.notify.fill_cycles()  # at start, then until goals-api has answered once

    @timer(interval=SETTINGS.schedule_interval_seconds)
    def fire_schedules(self):
        if self.notify.fire_due_schedules(SCHEDULE_BATCH):
            self.relay.kick([DELIVERIES])

    # --- goals -------------------------------------------------------------------------------------------

    @cloud_event_handler("goals", "person_upserted")
    def on_person_upserted(self, envelope):
        with_retries(self.notify.notifier.person_upserted, envelope)

    @cloud_event_handler("goals", "v2mom_submitted")
    def on_v2mom_submitted(self, envelope):
        with_retries(self.notify.notifier.v2mom_submitted, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("goals", "v2mom_approved")
    def on_v2mom_approved(self, envelope):
        with_retries(self.notify.notifier.v2mom_approved, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("goals", "v2mom_changes_requested")
    def on_v2mom_changes_requested(self, envelope):
        with_retries(self.notify.notifier.v2mom_changes_requested, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("goals", "v2mom_approver_changed")
    def on_v2mom_approver_changed(self, envelope):
        with_retries(self.notify.notifier.v2mom_approver_changed, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("goals", "v2mom_transferred")
    def on_v2mom_transferred(self, envelope):
        with_retries(self.notify.notifier.v2mom_transferred, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("goals", "v2mom_items_reassigned")
    def on_v2mom_items_reassigned(self, envelope):
        with_retries(self.notify.notifier.v2mom_items_reassigned, envelope)

    @cloud_event_handler("goals", "v2mom_withdrawn")
    def on_v2mom_withdrawn(self, envelope):
        with_retries(self.notify.notifier.v2mom_withdrawn, envelope)

    @cloud_event_handler("goals", "v2mom_archived")
    def on_v2mom_archived(self, envelope):
        with_retries(self.notify.notifier.v2mom_archived, envelope)

    @cloud_event_handler("goals", "cycle_changed")
    def on_cycle_changed(self, envelope):
        with_retries(self.notify.notifier.cycle_changed, envelope)

    @cloud_event_handler("goals", "cycle_closed")
    def on_cycle_closed(self, envelope):
        with_retries(self.notify.notifier.cycle_changed, envelope)  # the whole cycle, as cycle_changed carries it

    # --- checkins -------------------------------------------------------------------------------------------

    @cloud_event_handler("goals", "obstacle_changed")
    def on_obstacle_changed(self, envelope):
        with_retries(self.notify.notifier.obstacle_changed, envelope)

    @cloud_event_handler("goals", "comment_added")
    def on_comment_added(self, envelope):
        with_retries(self.notify.notifier.comment_added, envelope)

    @cloud_event_handler("goals", "v2mom_parent_changed")
    def on_v2mom_parent_changed(self, envelope):
        with_retries(self.notify.notifier.v2mom_parent_changed, envelope)

    @cloud_event_handler("checkins", "item_became_stale")
    def on_item_became_stale(self, envelope):
        with_retries(self.notify.notifier.item_stale, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("checkins", "item_overdue")
    def on_item_overdue(self, envelope):
        with_retries(self.notify.notifier.item_stale, envelope)
        self.relay.kick([DELIVERIES])

    @cloud_event_handler("checkins", "checkin_recorded")
    def on_checkin_recorded(self, envelope):
        with_retries(self.notify.notifier.checkin_recorded, envelope)

    @cloud_event_handler("checkins", "progress_changed")
    def on_progress_changed(self, envelope):
        with_retries(self.notify.notifier.progress_changed, envelope)
        self.relay.kick([DELIVERIES])


def main() -> None:
    run_services(SERVICE, NotifyWorker)


if __name__ == "__main__":
    main()
