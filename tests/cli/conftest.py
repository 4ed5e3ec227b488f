"""The `v2mom` command's tests: the root's seeded_goals serves the demo organisation; tests.support.cli runs the
command as a person at a terminal would. Each module's ``cli`` fixture points it at the APIs that module runs."""
