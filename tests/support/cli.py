"""Helpers of the CLI, seed and devstack tests.

`SeededGoals` is what the root conftest's fixture `seeded_goals` gives: a real
goals-api on a free port over a fresh database with the demo organisation
seeded through it, once per test module. `Cli` runs
the installed `v2mom` command as a subprocess, as a person at a terminal
would, with its own HOME and token file. `demo_name` turns a name from the
demo files into the one the seeded demo shows (the demo's dates move on week
by week, and its fiscal-year names with them once FY2027 ends in a later year).
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pymongo

from deploy.demo.goals_seed import SeedReport
from deploy.demo import calendar as demo_calendar
from services.platform.core.config import Settings

V2MOM = Path(sys.executable).with_name("v2mom")  # the console script of this venv


@dataclass(frozen=True)
class SeededGoals:
    address: str
    settings: Settings
    db: pymongo.database.Database
    report: SeedReport


def demo_name(text: str) -> str:
    """"Engineering FY2027", "fy27-li.wei" as the demo files write them, as the demo seeded today names them."""
    return demo_calendar.rename_labels(text, demo_calendar.label_years(demo_calendar.days_ahead()))


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Cli:
    """`v2mom ...` as a subprocess, against one API, with a private token file."""

    def __init__(self, address: str, home: Path):
        self.home = home
        self.token_file = home / "token"
        self.env = {
            **os.environ,
            "HOME": str(home),
            "V2MOM_GOALS_ADDR": address,
            "V2MOM_TOKEN_FILE": str(self.token_file),
            "COLUMNS": "100",
        }
        self.env.pop("V2MOM_DEBUG", None)

    def __call__(self, *args: str, env: dict | None = None, stdin: str | None = None) -> Result:
        done = subprocess.run(
            [str(V2MOM), *args], env={**self.env, **(env or {})}, input=stdin,
            capture_output=True, text=True, timeout=60,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kw) -> str:
        """Runs a command that must succeed; returns its output."""
        result = self(*args, **kw)
        assert result.returncode == 0, f"v2mom {' '.join(args)} failed:\n{result.stderr}{result.stdout}"
        assert "Traceback" not in result.stderr
        return result.stdout
