"""metrics-api's kept copy of the engagement text (services/metrics/rendered.py) against a fresh read.

The reference is what a scrape rendered before the copy existed: every unit
and aggregate read and rendered anew (exposition.engagement_chunks of
engagement.snapshot). After every event of the aggregation tests' organisation,
after reshaping the tree, a new cycle, a new day and a rebuild, the kept text
must be the reference's byte for byte, while reading only what changed.
"""

import gzip
import subprocess
import threading
import zlib
from datetime import timedelta

import pymongo
import pytest

from services.metrics import control, engagement, model, store
from services.metrics.exposition import engagement_chunks, gzip_member
from services.metrics.rendered import AGE_FAMILIES, RenderedEngagement
from tests.support.metrics import ago, apply_all, bench_shaped_org, Journey, NOW, org_unit, person, SmallOrg
from tests.support.mongo import Commands
from tests.support.processes import wait_for


def fresh(db, now=NOW) -> str:
    return "".join(engagement_chunks(engagement.snapshot(now, store.org_tree(db), store.aggregates(db))))


def kept(rendered: RenderedEngagement, now=NOW) -> str:
    return b"".join(rendered.chunks(now)).decode()


def assert_same(rendered, db, now=NOW) -> None:
    expected = fresh(db, now)
    assert kept(rendered, now) == expected


@pytest.fixture
def db(metrics_db):
    return metrics_db


def test_after_every_event_of_a_small_org_the_kept_text_is_a_fresh_reads(db):
    rendered = RenderedEngagement(db)
    assert_same(rendered, db)  # empty
    for event in SmallOrg().events():
        apply_all(db, [event])
        assert_same(rendered, db)
    assert kept(rendered).count("v2mom_headcount{") == 8  # four units, two scopes, one cycle


def reshaped_org() -> list[dict]:
    """Moves, renames, a new unit under a moved one, a person moving, a unit heard of only through a member,
    and a second cycle."""
    return [
        org_unit("sales", "Sales & Success", "team", parent="eng", revision=2),      # moved and renamed
        org_unit("eng", "Engineering", "company", parent="acme", revision=2),        # level changed
        org_unit("field", "Field", "team", parent="sales", revision=1),              # new, under the moved unit
        person("dan", "field", revision=2),                                          # moves, V2MOM follows
        person("newbie", "nowhere-yet"),                                             # unit not heard of yet
        org_unit("nowhere-yet", "Later", "team", parent="acme"),                     # and here it comes
        *(Journey("v-eve-28", "eve", "sales", "individual", cycle="FY2028")
          .step("draft", ago(days=3)).step("submitted", ago(days=2)).step("published", ago(days=1))).events,
        org_unit("platform", "Platform", "team", parent="acme", revision=2),         # moved up, a subtree along
    ]


def test_reshaping_the_tree_and_a_new_cycle_keep_it_equal(db):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db)
    assert_same(rendered, db)
    for event in reshaped_org():
        apply_all(db, [event])
        assert_same(rendered, db)
    text = kept(rendered)
    assert 'org_unit_name="Sales & Success"' in text and 'cycle="FY2028"' in text and 'org_unit="field"' in text


@pytest.mark.parametrize("later", [timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=40)],
                         ids=["same-day", "next-day", "next-week", "weeks-on"])
def test_windows_and_ages_move_with_the_clock(db, later):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db)
    assert_same(rendered, db)
    assert_same(rendered, db, NOW + later)
    assert kept(rendered, NOW + later) != fresh(db, NOW)  # pending ages at least moved


def test_each_scrape_reads_only_what_changed(db, mongo_uri):
    commands = Commands()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[commands])
    watched = client[db.name]
    bench_shaped_org(db, n_units=300)
    rendered = RenderedEngagement(watched)
    first = commands.during(lambda: rendered.chunks(NOW))
    assert ("find", store.AGGREGATES, {}) in first  # the first read takes everything
    store.bump(db, store.AGGREGATES, "u7|FY2027", "applied-1", {"published": 1}, {"unit": "u7", "cycle": "FY2027"})
    later = commands.during(lambda: rendered.chunks(NOW))
    assert {(name, collection) for name, collection, _ in later} == {
        ("find", store.CONTROL), ("find", store.UNITS), ("find", store.AGGREGATES), ("find", store.CYCLES)}
    for _, collection, query in later:
        if collection != store.CONTROL:
            assert list(query) == [store.CHANGED], f"{collection} read by {query}, not by what changed"
            assert db[collection].count_documents(query) <= 1
    assert kept(rendered) == fresh(db)
    client.close()


def commit_late(db, rendered) -> None:
    """A write whose store time falls before what a catch-up already saw, as when it commits late: another
    write, stamped a minute on, is seen first; then Sales gains three published V2MOMs stamped just after what
    was kept of it."""
    newest = max(row[store.CHANGED] for row in db[store.AGGREGATES].find())
    db[store.AGGREGATES].update_one({"_id": "acme|FY2027"}, {"$set": {store.CHANGED: newest + timedelta(minutes=1)}})
    rendered.chunks(NOW)
    db[store.AGGREGATES].update_one({"_id": "sales|FY2027"}, {"$inc": {"published": 3},
                                                              "$set": {store.CHANGED: newest + timedelta(seconds=1)}})


def test_a_write_that_escaped_the_overlap_is_taken_at_the_next_reconcile(db):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db, overlap=timedelta(seconds=5))
    assert_same(rendered, db)
    commit_late(db, rendered)
    assert kept(rendered) != fresh(db)  # a catch-up cannot see it: it is older than what was seen, less the overlap
    rendered.reconcile(NOW)
    assert_same(rendered, db)


def test_the_follower_thread_catches_up_and_reconciles_on_its_own(db):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db, overlap=timedelta(seconds=5))
    assert_same(rendered, db)
    commit_late(db, rendered)
    stop = threading.Event()
    rendered.follow(lambda: NOW, every=0.05, reconcile_every=0.2, stop=stop)
    try:
        wait_for(lambda: kept(rendered) == fresh(db), timeout=15, message="the follower never reconciled")
    finally:
        stop.set()


def test_a_rebuild_starts_the_copy_afresh(db):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db)
    assert_same(rendered, db)
    assert control.take_rebuild_lease(db, "test")
    db[store.AGGREGATES].delete_one({"_id": "sales|FY2027"})  # a rebuild replaces and deletes without `changed`
    db[store.AGGREGATES].replace_one({"_id": "platform|FY2027"},
                                     {"unit": "platform", "cycle": "FY2027", "with_v2mom": 9, "recent": []})
    assert_same(rendered, db)
    control.release_rebuild_lease(db, "test")
    assert_same(rendered, db)
    assert 'v2mom_people_with_v2mom{cycle="FY2027",level="team",org_unit="platform",org_unit_name="Platform",' \
           'scope="direct"} 9.0' in kept(rendered)


def test_both_formats_share_the_kept_lines(db):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db)
    snapshot = engagement.snapshot(NOW, store.org_tree(db), store.aggregates(db))
    assert b"".join(rendered.chunks(NOW, openmetrics_format=True)).decode() == "".join(engagement_chunks(snapshot, True))
    assert kept(rendered) == "".join(engagement_chunks(snapshot))


def test_what_the_copy_reads_is_counted_and_exported(db):
    from prometheus_client import CollectorRegistry, generate_latest

    from services.metrics.collector import EngagementCopyCollector

    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db, overlap=timedelta(0))  # else everything written in the last 5 s is read again
    rendered.chunks(NOW)
    store.bump(db, store.AGGREGATES, "sales|FY2027", "applied-x", {"published": 1}, {"unit": "sales", "cycle": "FY2027"})
    rendered.chunks(NOW)
    rendered.reconcile(NOW)
    everything, changes, reconcile = (rendered.reads[kind] for kind in ("everything", "changes", "reconcile"))
    n_docs = db[store.UNITS].count_documents({}) + db[store.AGGREGATES].count_documents({})
    assert (everything.reads, everything.documents) == (1, n_docs)
    assert changes.reads == 1 and 1 <= changes.documents < n_docs
    assert (reconcile.reads, reconcile.documents) == (1, n_docs)
    assert all(stats.cpu_seconds > 0 for stats in (everything, changes, reconcile))
    registry = CollectorRegistry()
    registry.register(EngagementCopyCollector(rendered))
    text = generate_latest(registry).decode()
    assert 'v2mom_metrics_engagement_copy_reads_total{kind="changes"} 1.0' in text
    assert f'v2mom_metrics_engagement_copy_documents_read_total{{kind="everything"}} {float(n_docs)}' in text
    assert 'v2mom_metrics_engagement_copy_cpu_seconds_total{kind="reconcile"}' in text


def test_a_family_is_served_from_what_was_kept_until_one_of_its_units_changes(db):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db)
    before = rendered.pieces(NOW)
    week = model.week_key(NOW)
    store.bump(db, store.AGGREGATES, "sales|FY2027", "applied-y", {f"checkins.{week}": 1},
               {"unit": "sales", "cycle": "FY2027"})
    after = rendered.pieces(NOW)
    assert kept(rendered) == fresh(db)
    names = [piece.raw.split(b" ", 3)[2].decode() for piece in after]  # "# HELP <name> ..."
    rebuilt = {name for name, old, new in zip(names, before, after) if old is not new}
    assert rebuilt == {"v2mom_checkins_week_to_date", "v2mom_oldest_pending_approval_age_seconds",
                       "v2mom_oldest_open_obstacle_age_seconds"}  # the ages: always


def test_gzip_compresses_only_what_changed_and_any_reader_reads_it(db, tmp_path):
    apply_all(db, SmallOrg().events())
    rendered = RenderedEngagement(db)
    pieces = rendered.pieces(NOW)
    kept_segments = [piece.deflated() for piece in pieces]
    body = b"".join(gzip_member(pieces))
    assert gzip.decompress(body) == b"".join(piece.raw for piece in pieces)
    assert zlib.decompressobj(wbits=31).decompress(body) == b"".join(piece.raw for piece in pieces)
    (tmp_path / "scrape.gz").write_bytes(body)
    assert subprocess.run(["gzip", "-t", str(tmp_path / "scrape.gz")]).returncode == 0
    again = rendered.pieces(NOW)  # nothing changed: only the pending ages are compressed again
    recompressed = {index for index, (piece, segment) in enumerate(zip(again, kept_segments))
                    if piece.deflated() is not segment}
    assert recompressed == set(AGE_FAMILIES)
