"""What ships beside the services: the demo seeds and calendar, the devstack, docker-compose, the Prometheus
rules and their integration run, the Grafana dashboards. Services start through the root's fixtures; PromQL
and dashboard helpers are in tests.support.promql."""
