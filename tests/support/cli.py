"""Helpers of the CLI, seed and devstack tests.

`SeededGoals` is what the root conftest's fixture `seeded_goals` gives: a real
goals-api on a free port over a fresh database with the demo organisation
seeded through it, once per test module. `Cli` runs
the installed `v2mom` command as a subprocess, as a person at a terminal
would, with its own HOME and token file. `demo_name` turns a name from the
demo files into the one the seeded demo shows (the demo's dates move on week
by week, and its fiscal-year names with them once FY2027 ends in a later year).
"""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
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

    def on_terminal(self, *args: str, columns: int = 100, timeout: float = 60) -> Result:
        """Runs a command with its stderr on a terminal (a pty of 24 rows of ``columns``), as a person at a shell
        has it, so what it draws only for a person watching (a progress bar) is drawn; stderr is all it wrote
        there, read while it runs so a full terminal never blocks it."""
        terminal, screen = pty.openpty()
        fcntl.ioctl(screen, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        drawn = b""
        try:
            process = subprocess.Popen([str(V2MOM), *args], env=self.env, stdout=subprocess.PIPE, stderr=screen,
                                       stdin=subprocess.DEVNULL)
            os.close(screen)
            screen = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if select.select([terminal], [], [], 0.1)[0]:
                    try:
                        chunk = os.read(terminal, 4096)
                    except OSError:  # EIO: the command closed its side and all of it was read
                        chunk = b""
                    if not chunk:
                        break
                    drawn += chunk
            else:
                process.kill()
            stdout = process.communicate(timeout=10)[0]
        finally:
            os.close(terminal)
            if screen is not None:
                os.close(screen)
        return Result(process.returncode, stdout.decode("utf-8", "replace"), drawn.decode("utf-8", "replace"))
