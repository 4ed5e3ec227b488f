"""Plain helpers of the tests (no fixtures: those live in conftest.py files).

processes      the one process wrapper: spawn, start_module, log_tail, stop, wait_for, free_port
leak_guard     the pytest plugin that ends what tests leave running and fails the run for it
fuzz           requests for any RPC from the protobuf descriptors (the fuzz test's strategies)
services       the one way to serve an API in process: served, served_in_process, Caller, token
grpc_errors    expect, rpc_error, field_violations, precondition_violations, assert_clean
broker, mongo  queue_exists; Commands (what a pymongo client sends)
goals, checkins, checkins_requests, checkin_events, metrics, metrics_service, cli, promql, catalogue,
events_probe   builders and probes of one service or tool
workers/       scripts the platform tests run as processes
"""
