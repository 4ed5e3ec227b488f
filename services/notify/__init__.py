"""The notify service: approvals, reminders and escalations that reach people by inbox, email and webhooks."""
