"""Use case: a method check-in's completed milestones become done in the V2MOM (goals-worker, from checkins'
``checkin_recorded`` and ``checkin_corrected``).

A system revision, not an edit: the published version and the working copy's same milestones change in one
conditional write (repository.apply) with a history entry ``COMPLETE_MILESTONES`` (actor ``system``, as every
system revision; the check-in and its author named in the reason) and a ``milestones_completed`` event in the
outbox. The state and the
published revision stay: nothing needs approving again, and a draft under way is not disturbed beyond its
revision moving on (its next save reads it again, as after any other writer).

Only not-done to done (milestones.py): a replay or a late event finds nothing left to do and writes nothing.
"""

import logging

from services.platform.core.clock import utc_now
from services.platform.core.errors import Aborted

from . import commits, convert, events, milestones
from .lifecycle import ARCHIVED
from .repository import V2MOMRepository
from v2mom.v1 import checkins_pb2

log = logging.getLogger(__name__)

ACTION = "COMPLETE_MILESTONES"


class MilestoneCompletions:
    def __init__(self, repository: V2MOMRepository):
        self.repository = repository

    def take(self, checkin: checkins_pb2.Checkin) -> bool:
        """Marks the check-in's milestones done; False when there was nothing to do. ABORTED on a lost race."""
        if checkin.item_kind != checkins_pb2.ITEM_KIND_METHOD or not checkin.completed_milestone_ids:
            return False
        doc = self.repository.get(checkin.v2mom_id)
        if doc is None or doc["state"] == ARCHIVED or not doc.get("published"):
            # Check-ins are only taken on published V2MOMs; an archived one does not change any more.
            log.info("milestones not marked: v2mom not published or archived", extra={"v2mom_id": checkin.v2mom_id})
            return False
        done = milestones.newly_done(doc["published"]["content"], checkin.item_id, list(checkin.completed_milestone_ids))
        if not done:
            return False  # a replay, a late event, or milestones a later approval removed
        self._commit(doc, checkin, done)
        return True

    def _commit(self, doc: dict, checkin: checkins_pb2.Checkin, done: list[str]) -> None:
        stamp = utc_now()
        method_id = checkin.item_id
        published = {**doc["published"],
                     "content": milestones.marked_done(doc["published"]["content"], method_id, done)}
        working = milestones.marked_done(doc["content"], method_id, done)
        after = {**doc, "content": working, "published": published, "revision": doc["revision"] + 1}
        reason = f"completed by check-in {checkin.id} of {checkin.author_id}"
        paths = milestones.changed_paths(method_id, done)
        entry = commits.history_entry(after, ACTION, commits.SYSTEM, stamp, reason, paths)
        data = convert.event_data(after, commits.SYSTEM.person_id, doc["state"], reason=reason, changed_paths=paths,
                                  content_message=convert.content_from_doc(published["content"]))
        saved = self.repository.apply(doc["_id"], doc["revision"],
                                      {"content": working, "published": published, "updated_at": stamp},
                                      entry, [events.v2mom_event(events.MILESTONES_COMPLETED, data)])
        if saved is None:
            raise Aborted(f"v2mom {doc['_id']!r} changed meanwhile")  # the consumer reads it again
