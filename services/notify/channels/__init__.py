"""Sending one delivery over one channel: email over SMTP, or a webhook. What a sender raises tells the dispatcher what to do next.

- returns normally: sent (the receiver accepted it);
- ``TemporaryFailure``: try again later, after ``retry_after`` seconds if the
  receiver said so (Retry-After on 429/503), else on the retry schedule;
- ``PermanentFailure``: never again (a 4xx other than 408/429, a refused
  address, an unsafe target); ``gone`` when the receiver answered 410 Gone, which
  disables the subscription.

Every send has a timeout, so a receiver that accepts the connection and never
answers costs one delivery its timeout, not the others their turn.
"""

from dataclasses import dataclass, field


class TemporaryFailure(Exception):
    def __init__(self, error: str, retry_after: float | None = None):
        super().__init__(error)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    def __init__(self, error: str, gone: bool = False):
        super().__init__(error)
        self.gone = gone


@dataclass(frozen=True)
class Message:
    """What one delivery says, before a channel shapes it (email parts, Slack blocks, an Adaptive Card, JSON)."""

    delivery_id: str  # stable across retries: Message-ID and webhook-id come from it
    notification_id: str
    kind: str  # a kinds.py kind name
    recipient_id: str
    recipient_name: str
    recipient_email: str
    title: str
    body: str  # plain text; channels escape it for HTML
    link: str = ""
    unsubscribe_url: str = ""  # set for kinds.UNSUBSCRIBABLE sent by email
    facts: dict = field(default_factory=dict)  # v2mom_id, item_id, comment, lint summary... for templates and JSON
    created_at: str = ""  # RFC 3339
