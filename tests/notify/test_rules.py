"""rules.py and the pure half of schedules.py: who gets what, derived ids, due times."""

from datetime import UTC, datetime

from services.notify import kinds, rules, schedules
from services.notify.rules import Person

CONTENT = {
    "title": "Olive FY27",
    "values": [{"id": "v1"}, {"id": "v2"}],
    "methods": [{"id": "m1", "title": "Ship", "accountableId": "acc", "ownerId": "olive"},
                {"id": "m2", "title": "Hire", "ownerId": "olive"}],
    "measures": [{"id": "x1", "title": "NPS", "methodIds": ["m2", "m1"], "ownerId": "rob", "dueDate": {"year": 2026, "month": 12, "day": 31}},
                 {"id": "x2", "title": "Churn", "methodIds": [], "ownerId": "rob"}],
    "obstacles": [],
}
V2MOM = {"v2mom_id": "v2m_1", "owner_id": "olive", "org_unit_id": "platform", "content": CONTENT}
PORTAL = "https://portal.test/v2moms/{v2mom_id}?item={item_id}"


def test_ids_are_derived_from_the_cause_and_differ_by_recipient_kind_and_channel():
    a = rules.notification_id("evt_1", "lee", kinds.APPROVAL_REQUESTED)
    assert a == rules.notification_id("evt_1", "lee", kinds.APPROVAL_REQUESTED)
    assert len({a, rules.notification_id("evt_1", "dana", kinds.APPROVAL_REQUESTED),
                rules.notification_id("evt_2", "lee", kinds.APPROVAL_REQUESTED),
                rules.notification_id("evt_1", "lee", kinds.APPROVAL_OVERDUE)}) == 4
    assert rules.delivery_id(a, kinds.EMAIL, "lee@x") != rules.delivery_id(a, kinds.INBOX, "lee")
    assert a.startswith("ntf_") and rules.delivery_id(a, kinds.EMAIL, "x").startswith("dlv_")


def test_approval_request_goes_to_the_approver_with_a_link_and_the_lint_summary():
    plan = rules.approval_requested("evt_1", V2MOM, Person("lee", "Lee"), Person("olive", "Olive"), PORTAL)
    assert (plan.recipient_id, plan.kind, plan.v2mom_id) == ("lee", kinds.APPROVAL_REQUESTED, "v2m_1")
    assert plan.link == "https://portal.test/v2moms/v2m_1?item="
    assert "Olive" in plan.title and "Olive FY27" in plan.title
    assert plan.facts["lint"] == {"values": 2, "methods": 2, "measures": 2, "obstacles": 0,
                                  "methods_without_accountable": 1, "measures_without_due_date": 1}
    assert "1 methods without an Accountable" in plan.body
    assert plan.id == rules.notification_id("evt_1", "lee", kinds.APPROVAL_REQUESTED)


def test_decisions_carry_the_approvers_comment():
    approved = rules.approval_decided("evt_2", V2MOM, Person("olive"), Person("lee", "Lee"), True, "", PORTAL)
    changes = rules.approval_decided("evt_3", V2MOM, Person("olive"), Person("lee", "Lee"), False, "Add a measure", PORTAL)
    assert approved.recipient_id == changes.recipient_id == "olive"
    assert "approved" in approved.title and "Comment" not in approved.body
    assert "asked for changes" in changes.title and "Comment: Add a measure" in changes.body
    assert changes.facts["comment"] == "Add a measure" and changes.facts["decision"] == "changes_requested"


def test_titles_and_bodies_are_clipped_to_the_contract():
    long = {**V2MOM, "content": {**CONTENT, "title": "t" * 500}}
    plan = rules.approval_requested("evt_1", long, Person("lee"), Person("olive"), PORTAL)
    assert len(plan.title) == rules.TITLE_MAX


def test_accountable_of_a_method_and_of_a_measure():
    assert rules.accountable_for(CONTENT, "ITEM_KIND_METHOD", "m1") == "acc"
    assert rules.accountable_for(CONTENT, "ITEM_KIND_METHOD", "m2") == "olive"  # no Accountable: its owner
    assert rules.accountable_for(CONTENT, "ITEM_KIND_MEASURE", "x1") == "acc"  # first linked method with one
    assert rules.accountable_for(CONTENT, "ITEM_KIND_MEASURE", "x2") == "rob"  # no methods: the measure's owner
    assert rules.accountable_for(CONTENT, "ITEM_KIND_MEASURE", "nope") == ""
    assert rules.accountable_for(None, "ITEM_KIND_METHOD", "m1") == ""


def test_attention_counts_what_went_off_track():
    plan = rules.attention("evt_9", {"v2mom_id": "v2m_1", "item_id": "x1", "off_track_measures": 2, "measures": 3},
                           Person("olive"), "Olive FY27", 1, PORTAL)
    assert plan.kind == kinds.ATTENTION and "2 of 3" in plan.title and "1 more measure " in plan.body
    assert rules.attention_recipients("olive", "olive") == ["olive"]
    assert rules.attention_recipients("olive", "") == ["olive"]


def test_webhook_subscriptions_match_their_unit_or_the_whole_org_and_their_kinds():
    assert rules.subscription_wants({"org_unit_id": ""}, kinds.APPROVAL_REQUESTED, "platform")
    assert rules.subscription_wants({"org_unit_id": "platform"}, kinds.APPROVAL_REQUESTED, "platform")
    assert not rules.subscription_wants({"org_unit_id": "eng"}, kinds.APPROVAL_REQUESTED, "platform")
    assert not rules.subscription_wants({}, kinds.DIGEST, "platform")  # no kinds: all but the digest
    assert not rules.subscription_wants({"kinds": [kinds.ATTENTION]}, kinds.APPROVAL_REQUESTED, "")
    assert not rules.subscription_wants({"disabled_at": datetime.now(UTC)}, kinds.ATTENTION, "")


def test_links_fill_the_template_and_survive_a_bad_one():
    assert rules.link("https://p/{v2mom_id}", "v2m_1") == "https://p/v2m_1"
    assert rules.link("https://p/{v2mom_id}/{nope}", "v2m_1") == "https://p/{v2mom_id}/{nope}"
    assert rules.link("https://p/{v2mom_id}", "") == ""


def test_approval_reminders_count_working_days_in_the_approvers_time_zone():
    friday_evening_utc = datetime(2026, 6, 12, 20, 0, tzinfo=UTC)  # already Saturday in Tokyo
    reminder, escalation = schedules.approval_due(friday_evening_utc, "UTC", 5)
    assert reminder == datetime(2026, 6, 19, 20, 0, tzinfo=UTC)  # five working days: next Friday
    assert escalation == datetime(2026, 6, 26, 20, 0, tzinfo=UTC)
    tokyo, _ = schedules.approval_due(friday_evening_utc, "Asia/Tokyo", 1)
    assert tokyo == datetime(2026, 6, 14, 20, 0, tzinfo=UTC)  # Saturday local + 1 working day = Monday local
    assert schedules.approval_due(friday_evening_utc, "Not/AZone", 5)[0] == reminder  # unknown zone: UTC


def test_escalation_tiers_follow_each_other_by_the_email_wait():
    start = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
    assert [schedules.escalation_due(start, tier, 24).day for tier in (1, 2, 3)] == [11, 12, 13]
    assert schedules.schedule_id("a", "evt_1") == schedules.schedule_id("a", "evt_1") != schedules.schedule_id("a", "evt_2")
