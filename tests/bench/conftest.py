"""Smoke runs of the benchmarks in bench/ with tiny sizes into a temporary directory; the goals-api one uses
the root's goals_api."""
