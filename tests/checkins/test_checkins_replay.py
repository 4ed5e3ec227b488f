"""checkins-api serves ReplayEvents for check-ins' own events (services/platform/api/event_log.py; the replay
itself is tested in tests/platform/test_event_log.py and, end to end, in tests/goals/test_event_replay.py)."""

from tests.support.replay import check_replay_is_the_services_own


def test_checkins_api_replays_check_ins_events_and_only_those(checkins_api, checkins_settings, enroll):
    check_replay_is_the_services_own(checkins_api.port, checkins_settings, enroll, "checkins",
                                     ["checkin_recorded", "progress_changed"], foreign_type="v2mom_created")
