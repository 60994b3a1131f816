"""Shared by the independent-client checks of the Mamut stand-in (`mamut-sim`).

Each check script talks to a running stand-in with a client we did not write (FreeTDS `tsql`,
python-tds, pymssql) and prints one line per check, `ok <name>` or `FAIL <name>: <why>`, then
a summary; it exits 1 when any check failed, 2 when it could not start (bad arguments, client
library missing).

Where to connect comes from the command line or the environment:
`--host`/`MAMUT_HOST` (127.0.0.1), `--port`/`MAMUT_PORT` (1433), `--user`/`MAMUT_USER` (mamut),
`--password`/`MAMUT_PASSWORD`, `--database`/`MAMUT_DATABASE` (mamut). `--only NAME` runs the
named checks alone (repeatable).

The stand-in must serve the reference schema `deploy/mamut/schema.sql` (MamutDb in the tests
crate does); each script also creates a table of its own, with a random suffix, for the error
checks, so scripts can run one after another or side by side on one stand-in.
"""

import argparse
import os
import random
import sys
import time
import traceback


class CheckFailed(Exception):
    """A check saw something other than what SQL Server answers."""


def options(description):
    parser = argparse.ArgumentParser(description=description)
    env = os.environ.get
    parser.add_argument("--host", default=env("MAMUT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("MAMUT_PORT", "1433")))
    parser.add_argument("--user", default=env("MAMUT_USER", "mamut"))
    parser.add_argument("--password", default=env("MAMUT_PASSWORD", ""))
    parser.add_argument("--database", default=env("MAMUT_DATABASE", "mamut"))
    parser.add_argument("--only", action="append", default=[], help="run this check alone")
    return parser.parse_args()


def table_name(client):
    """A table of this run's own: `chk_<client>_<random>`."""
    return "chk_%s_%06d" % (client, random.randrange(1_000_000))


def error_table_ddl(table):
    """The table the error checks write into: every constraint they need, one per column."""
    return (
        "CREATE TABLE %s ("
        "id INT NOT NULL PRIMARY KEY, "
        "name NVARCHAR(10) NOT NULL, "
        "note NVARCHAR(40) NULL, "
        "amount DECIMAL(9, 2) NULL, "
        "big BIGINT NULL, "
        "data VARBINARY(50) NULL)" % table
    )


def expect(condition, why):
    if not condition:
        raise CheckFailed(why)


def expect_equal(actual, expected, what):
    if actual != expected or type(actual) is not type(expected):
        raise CheckFailed(
            "%s: expected %r (%s), got %r (%s)"
            % (what, expected, type(expected).__name__, actual, type(actual).__name__)
        )


def wait_until(condition, what, seconds=5.0):
    """Polls `condition` until it is true; fails naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise CheckFailed("timed out after %.1f s waiting for %s" % (seconds, what))
        time.sleep(0.02)


def note(name, text):
    """A remark on a check that passed (what the client did), on a line of its own."""
    print("note %s: %s" % (name, text), flush=True)


class Runner:
    """Runs named checks in order; one line each, a summary, an exit code."""

    def __init__(self, client, only=()):
        self.client = client
        self.only = set(only)
        self.passed = 0
        self.failed = []

    def run(self, name, check, *args):
        """Runs one check; true when it passed or was not selected."""
        if self.only and name not in self.only:
            return True
        try:
            check(*args)
        except CheckFailed as e:
            self.fail(name, str(e))
            return False
        except Exception as e:  # a client error the check did not expect is a failure too
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            self.fail(name, "unexpected %s" % detail.replace("\n", " | "))
            return False
        self.passed += 1
        print("ok %s" % name, flush=True)
        return True

    def fail(self, name, why):
        self.failed.append(name)
        print("FAIL %s: %s" % (name, " | ".join(why.strip().splitlines())), flush=True)

    def finish(self):
        total = self.passed + len(self.failed)
        print(
            "%s: %d checks, %d ok, %d failed%s"
            % (
                self.client,
                total,
                self.passed,
                len(self.failed),
                (" (" + ", ".join(self.failed) + ")") if self.failed else "",
            ),
            flush=True,
        )
        if total == 0:
            print("%s: no check ran (check --only)" % self.client, file=sys.stderr)
            sys.exit(2)
        sys.exit(1 if self.failed else 0)
