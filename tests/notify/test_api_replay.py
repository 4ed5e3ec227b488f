"""notify-api serves ReplayEvents for notify's own events, notification_sent and notification_failed
(services/platform/api/event_log.py; the replay itself is tested in tests/platform/test_event_log.py)."""

from tests.support.replay import check_replay_is_the_services_own


def test_notify_api_replays_notify_events_and_only_those(notify_api, notify_settings, enroll):
    check_replay_is_the_services_own(notify_api.port, notify_settings, enroll, "notify",
                                     ["notification_sent", "notification_failed"], foreign_type="checkin_recorded")
