"""goals' Prometheus collector, served by goals-api at ``/metrics`` (http.py): it reads the store on every scrape.

Nothing is counted in the exporting process, so every goals-api replica exports the same numbers and a restart
loses nothing: goals-worker keeps each HRIS event it dead-letters in ``hris_rejected`` (hris_rejected.py, one document
per event id, so a redelivery or a replay of the same event counts once), and the collector counts them by type.
Every figure is one count on an index (on MongoDB the rejections are a count of index keys alone), so a scrape
never reads the directory:

- ``v2mom_goals_hris_events_rejected_total{type}``: HRIS events dead-lettered, by CloudEvents type. All five
  types are always there (0 until one is rejected), so ``increase()`` sees the first rejection too. The reason
  is free text, so it is no label: HR reads it in ``hris_rejected`` (or in the DLQ).
- ``v2mom_goals_directory_changes_scheduled{kind}``: directory changes kept for later in
  ``directory_scheduled``: ``dated`` (dated in the future; goals-worker applies them on their date) or
  ``waiting_for_person`` (a termination that overtook the hire).
- ``v2mom_goals_people_pending_manager``, ``v2mom_goals_org_units_pending_parent``,
  ``v2mom_goals_org_units_pending_leader``: people whose manager, units whose parent or leader, the HRIS named
  before it arrived.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from pymongo.database import Database

from . import hris_rejected
from .directory import ORG_UNITS, PEOPLE, SCHEDULED

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # before any due_at: a range the scheduled_by_due index answers alone


class GoalsCollector(Collector):
    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator[Metric]:
        rejected = CounterMetricFamily("v2mom_goals_hris_events_rejected",
                                       "HRIS events goals-worker dead-lettered because they can never apply (bad "
                                       "data, an unknown unit, a manager cycle), by CloudEvents type; each event "
                                       "id counts once.", labels=["type"])
        for kind, count in hris_rejected.rejected_counts(self.db).items():
            rejected.add_metric([kind], count)
        yield rejected
        yield self._scheduled()
        # Each through its partial index; a resolved reference is kept as null, which the index holds too
        # ($exists matches null) and ``$gt: ""`` leaves out.
        yield self._pending("v2mom_goals_people_pending_manager",
                            "People whose manager the HRIS named but the directory does not know yet.",
                            PEOPLE, "pending_manager", "people_pending_manager")
        yield self._pending("v2mom_goals_org_units_pending_parent",
                            "Org units whose parent the HRIS named but the directory does not know yet.",
                            ORG_UNITS, "pending_parent", "units_pending_parent")
        yield self._pending("v2mom_goals_org_units_pending_leader",
                            "Org units whose leader the HRIS named but the directory does not know yet.",
                            ORG_UNITS, "pending_leader", "units_pending_leader")

    def _scheduled(self) -> Metric:
        family = GaugeMetricFamily("v2mom_goals_directory_changes_scheduled",
                                   "Directory changes kept for later: dated in the future, or a termination "
                                   "waiting for the person's hire.", labels=["kind"])
        everything = self.db[SCHEDULED].count_documents({"due_at": {"$gte": EPOCH}})  # scheduled_by_due
        waiting = self.db[SCHEDULED].count_documents({"waits_for": {"$exists": True}})  # scheduled_by_person
        family.add_metric(["dated"], max(everything - waiting, 0))
        family.add_metric(["waiting_for_person"], waiting)
        return family

    def _pending(self, name: str, text: str, collection: str, field: str, index: str) -> Metric:
        return self._gauge(name, text, self.db[collection].count_documents({field: {"$gt": ""}}, hint=index))

    @staticmethod
    def _gauge(name: str, text: str, value: int) -> Metric:
        family = GaugeMetricFamily(name, text)
        family.add_metric([], value)
        return family


def registry_for(db: Database) -> CollectorRegistry:
    """What goals-api's /metrics serves, in a registry of its own."""
    registry = CollectorRegistry()
    registry.register(GoalsCollector(db))
    return registry
