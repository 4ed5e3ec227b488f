"""notify's Prometheus collectors, reading the stored counters on every scrape (store.py, ``stats``).

Nothing is counted in the exporting process, so every notify-api replica
exports the same numbers and a restart loses nothing; notify-worker ``$inc``s
the ``stats`` documents as it sends (deliveries.py). Label values are the
enum names without their prefixes, lower case: ``kind="checkin_reminder"``,
``channel="email"``.
"""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pymongo.database import Database

from services.platform.core.clock import utc_now

from . import kinds, store

# Reminders count once their 48 hours have passed: the 28 whole UTC days ending three days before today
# (a reminder sent at 23:59 three days ago had its 48 hours by 23:59 yesterday).
CONVERSION_DAYS = 28
CONVERSION_SETTLE_DAYS = 3
PENDING_CHANNELS = (kinds.EMAIL, kinds.WEBHOOK)


def kind_label(kind: str) -> str:
    return kind.removeprefix("NOTIFICATION_KIND_").lower()


def channel_label(channel: str) -> str:
    return channel.removeprefix("CHANNEL_").lower()


class DeliveryCollector(Collector):
    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now):
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield self._latency()
        yield self._pending()
        ratio = self._conversion()
        if ratio is not None:
            yield ratio

    def _counters(self) -> Iterator[Metric]:
        for prefix, name, text in (
            ("sent", "v2mom_notify_deliveries_sent", "Deliveries sent, by kind and channel."),
            ("failed", "v2mom_notify_deliveries_failed", "Deliveries that failed for good, by kind and channel."),
        ):
            family = CounterMetricFamily(name, text, labels=["kind", "channel"])
            for doc in self._with_prefix(prefix):
                _, kind, channel = doc["_id"].split("|")
                family.add_metric([kind_label(kind), channel_label(channel)], doc.get("n", 0))
            yield family

    def _latency(self) -> Metric:
        family = HistogramMetricFamily("v2mom_notify_delivery_latency_seconds",
                                       "Seconds from a delivery's creation to its sending, by channel.",
                                       labels=["channel"])
        for doc in self._with_prefix("latency"):
            stored, running, buckets = doc.get("buckets") or {}, 0, []
            for bound, key in zip([*store.LATENCY_BUCKETS, "+Inf"], store.LATENCY_KEYS):
                running += stored.get(key, 0)
                buckets.append((str(bound) if bound == "+Inf" else str(float(bound)), running))
            family.add_metric([channel_label(doc["_id"].split("|")[1])], buckets, doc.get("sum", 0.0))
        return family

    def _pending(self) -> Metric:
        family = GaugeMetricFamily("v2mom_notify_deliveries_pending",
                                   "Deliveries waiting for their first try or a retry, by channel.", labels=["channel"])
        for channel in PENDING_CHANNELS:
            # status leads the deliveries_due index; channel narrows what it finds.
            count = self.db[store.DELIVERIES].count_documents({"status": store.PENDING, "channel": channel})
            family.add_metric([channel_label(channel)], count)
        return family

    def _conversion(self) -> Metric | None:
        today = self.clock().date()
        last = today - timedelta(days=CONVERSION_SETTLE_DAYS)
        first = last - timedelta(days=CONVERSION_DAYS - 1)
        reminded = converted = 0
        query = {"_id": {"$gte": store.reminders_id(first), "$lte": store.reminders_id(last)}}
        for doc in self.db[store.STATS].find(query):
            reminded += doc.get("reminded", 0)
            converted += doc.get("converted", 0)
        if not reminded:
            return None  # undefined, never reported as 0
        family = GaugeMetricFamily("v2mom_notify_reminder_checkin_conversion_ratio",
                                   "Share of items reminded to check in that got a check-in within 48 hours, over the "
                                   f"{CONVERSION_DAYS} UTC days whose 48 hours have passed.")
        family.add_metric([], min(converted / reminded, 1.0))
        return family

    def _with_prefix(self, prefix: str) -> list[dict]:
        # "|" + 1 is "}": every id "<prefix>|..." sorts between the two; a range on _id is a point-read index scan.
        query = {"_id": {"$gte": f"{prefix}|", "$lt": f"{prefix}}}"}}
        return sorted(self.db[store.STATS].find(query), key=lambda doc: doc["_id"])
