"""Fixtures of the goals API tests: a goals-api (tests.support.goals.GoalsEnv) over the org drawn there."""

import pytest

from tests.support.goals import start_env, stop_env


@pytest.fixture(scope="module")
def goals(mongo_uri):
    """One goals-api per test module, on its own database with the org of tests.support.goals."""
    env = start_env(mongo_uri)
    yield env
    stop_env(env)


@pytest.fixture
def isolated_goals(mongo_uri):
    """A goals-api on a database of the test's own, for tests that look at whole collections."""
    env = start_env(mongo_uri)
    yield env
    stop_env(env)


@pytest.fixture
def cycle(goals) -> str:
    """A fresh cycle for this test: every V2MOM slot in it is free."""
    return goals.new_cycle()
