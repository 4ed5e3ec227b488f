"""The kernel's tests (services.platform: api, bus, store, worker) and the tests' own layout.

They use the root's real parts only (mongo_uri, settings, db, broker_uri/isolated_broker_uri, connection);
the processes they run are in tests/support/workers."""
