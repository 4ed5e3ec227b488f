"""Shared by every process: config, errors, ids, clock, logs, validation shapes, page tokens, caches."""
