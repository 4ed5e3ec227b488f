"""nameko workers (eventlet only): the runner, dependency providers, the dead-lettering consumer, blocking calls."""
