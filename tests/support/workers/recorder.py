"""A tiny nameko service for testing the platform's event consumption.

It stores every event it handles in Mongo, fails on purpose for events whose
data says so (once, always, losing races for longer than one delivery's
retries, or finding a service it calls unavailable every time), refuses events
marked poison, and for slow ones records when it ran (tests/platform/test_platform_consumer.py).
"""

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import time  # noqa: E402

from services.platform.core.errors import Aborted, Unavailable  # noqa: E402
from services.platform.worker.consumer import PermanentError, ProcessedEvents, cloud_event_handler, with_retries  # noqa: E402
from services.platform.worker.deps import MongoDatabase  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402


class Recorder:
    name = "recorder"
    db = MongoDatabase("recorder")

    @cloud_event_handler("testsource", "thing_happened")
    def on_thing(self, envelope):
        with_retries(self._apply, envelope)

    def _apply(self, envelope):
        processed = ProcessedEvents(self.db)
        if processed.seen(envelope["id"]):
            return
        behaviour = envelope["data"].get("behaviour")
        if behaviour == "poison":
            raise PermanentError("this event can never be applied")
        if behaviour == "flaky" and self._attempt(envelope) < 2:
            raise RuntimeError("transient failure")
        if behaviour == "contended" and self._attempt(envelope) <= 4:  # more tries than one delivery's retries
            raise Aborted("other writers kept winning")
        if behaviour == "broken":
            raise RuntimeError("always fails")
        if behaviour == "unavailable":
            self._attempt(envelope)
            raise Unavailable("the service this handler calls is down")  # requeued, every time
        if behaviour == "slow":
            started = time.time()
            time.sleep(envelope["data"].get("seconds", 0.5))
            self.db.runs.insert_one({"_id": envelope["id"], "start": started, "end": time.time()})
        self.db.applied.insert_one({"_id": envelope["id"], "n": envelope["data"].get("n")})
        processed.mark(envelope["id"], envelope["type"])

    def _attempt(self, envelope) -> int:
        """Counts this try of the event, and says which one it is (1 for the first)."""
        attempts = self.db.attempts.find_one_and_update(
            {"_id": envelope["id"]}, {"$inc": {"n": 1}}, upsert=True, return_document=True
        )
        return attempts["n"]


if __name__ == "__main__":
    run_services("recorder", Recorder)
