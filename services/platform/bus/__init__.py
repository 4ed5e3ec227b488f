"""The event bus: CloudEvents envelopes, and the outbox that stores events with state and relays them with confirms."""
