"""The Mamut stand-in checked with pymssql (FreeTDS db-lib bundled in the PyPI wheel).

pymssql inlines parameters into the SQL text as literals (N'...' for text, 0x... for bytes)
and, with `autocommit=False`, sends `BEGIN TRAN`, `COMMIT TRAN` and `ROLLBACK TRAN` as SQL.
At login FreeTDS sends `SET` options and `USE [db]` batches. Cancel: a statement waiting on a
lock runs into pymssql's query timeout; db-lib then sends an attention, waits for the server's
acknowledgement and raises error 20003; the connection must answer the next statement.

Usage: check_pymssql.py [--host H] [--port P] [--user U] [--password PW] [--database DB]
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import time

from common import CheckFailed, expect, note

try:
    import pymssql
except ImportError as e:
    print("pymssql is not installed (%s): run scripts/test-deps.sh" % e, file=sys.stderr)
    sys.exit(2)

import dbapi_checks


class Driver:
    name = "pymssql"
    short = "pymssql"
    transactions = "BEGIN TRAN"
    errors = (pymssql.Error,)

    @staticmethod
    def connect(args, autocommit, password=None, timeout=10):
        return pymssql.connect(
            server=args.host,
            port=str(args.port),
            user=args.user,
            password=args.password if password is None else password,
            database=args.database,
            autocommit=autocommit,
            login_timeout=5,
            timeout=timeout,
            tds_version="7.4",
        )

    binary = staticmethod(bytes)

    @staticmethod
    def decimal_scale(value, column):
        return -value.as_tuple().exponent

    @staticmethod
    def beyond_int(value):
        # Inlined as a constant: beyond int's range SQL Server types it decimal, not bigint.
        from decimal import Decimal
        return value if -2**31 < value < 2**31 else Decimal(value)

    @staticmethod
    def _details(e):
        """(number, text) of a pymssql error; a failed login nests them one tuple deeper."""
        args = e.args
        if len(args) == 1 and isinstance(args[0], tuple):
            args = args[0]
        number = args[0] if args and isinstance(args[0], int) else getattr(e, "number", None)
        text = args[1] if len(args) > 1 else (args[0] if args else "")
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return number, str(text)

    @staticmethod
    def error_number(e):
        return Driver._details(e)[0]

    @staticmethod
    def error_text(e):
        return Driver._details(e)[1]

    @staticmethod
    def int_width(column):
        return None  # pymssql's description tells numbers apart from text, not int from bigint

    @staticmethod
    def wait_is_cancelled(args, sql):
        conn = Driver.connect(args, autocommit=True, timeout=1)
        try:
            cur = conn.cursor()
            started = time.monotonic()
            try:
                cur.execute(sql)
            except pymssql.OperationalError as e:
                text = Driver.error_text(e)
                expect("20003" in text, "expected the client's timeout 20003, got: %s" % text)
            else:
                raise CheckFailed("the statement did not wait on the lock (it should block)")
            expect(time.monotonic() - started < 5, "the client timeout did not fire")
            try:
                cur.execute("SELECT 1")
                rows = cur.fetchall()
                expect(rows == [(1,)], "SELECT 1 after the cancel answered %r" % (rows,))
            except (pymssql.OperationalError, pymssql.InterfaceError) as e:
                # pymssql gives up a connection whose query timed out (db-lib 20047 "DBPROCESS
                # is dead", then "Not connected"), whatever the server does; then the stand-in
                # must still serve a new connection.
                text = Driver.error_text(e)
                expect(
                    Driver.error_number(e) == 20047 or "Not connected" in text,
                    "after the timeout: %s" % text,
                )
                note("cancel", "pymssql dropped its connection after the timeout (%s); a new one is checked" % text.strip().splitlines()[0])
                fresh = Driver.connect(args, autocommit=True)
                try:
                    cur = fresh.cursor()
                    cur.execute("SELECT 1")
                    expect(cur.fetchall() == [(1,)], "a new connection after the timeout does not answer")
                finally:
                    fresh.close()
        finally:
            conn.close()

if __name__ == "__main__":
    dbapi_checks.main(Driver)
