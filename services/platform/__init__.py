"""The kernel every service builds on: infrastructure only, no domain rules.

Its rooms say which process may use them:

- ``core``: config, errors, ids, clock, logs, validation shapes, page tokens,
  caches. Used everywhere.
- ``store``: the MongoDB connection and indexes.
- ``bus``: CloudEvents envelopes and the outbox (write side and relay).
- ``api``: the grpcio server bootstrap, auth and the client for calling
  another service. Never imports eventlet.
- ``worker``: nameko runners, dependency providers, the dead-lettering
  consumer and blocking calls from green threads. eventlet only: an api
  process never imports it.

docs/architecture.md explains the process model and the outbox.
"""
