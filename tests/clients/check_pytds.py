"""The Mamut stand-in checked with python-tds (pure-Python TDS, PyPI `python-tds`).

python-tds sends parameters as typed RPC parameters through sp_executesql and, with
`autocommit=False`, begins, commits and rolls back with TDS transaction-manager requests.
Cancel: a statement waiting on a lock runs into the socket timeout; python-tds then sends an
attention and, before the next request, reads until the server acknowledges it.

Usage: check_pytds.py [--host H] [--port P] [--user U] [--password PW] [--database DB]
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import time

from common import CheckFailed, expect

try:
    import pytds
except ImportError as e:
    print("python-tds is not installed (%s): run scripts/test-deps.sh" % e, file=sys.stderr)
    sys.exit(2)

import dbapi_checks


class Driver:
    name = "python-tds"
    short = "pytds"
    transactions = "transaction-manager"
    errors = (pytds.Error,)

    @staticmethod
    def connect(args, autocommit, password=None, timeout=10):
        return pytds.connect(
            server=args.host,
            port=args.port,
            database=args.database,
            user=args.user,
            password=args.password if password is None else password,
            autocommit=autocommit,
            login_timeout=5,
            timeout=timeout,
        )

    binary = staticmethod(pytds.Binary)  # plain bytes are sent as NVARCHAR(MAX), UTF-8 decoded

    @staticmethod
    def decimal_scale(value, column):
        return column[5]  # python-tds divides by 10**scale, which drops trailing zeros

    @staticmethod
    def beyond_int(value):
        return value  # a typed bigint parameter

    @staticmethod
    def error_number(e):
        return getattr(e, "msg_no", None)

    @staticmethod
    def error_text(e):
        return str(getattr(e, "text", "") or e)

    @staticmethod
    def int_width(column):
        """The byte width python-tds read from the column's TYPE_INFO, for integer types."""
        name, type_id, _, size = column[:4]
        if type_id in (38, 56, 127):  # INTN, INT4, INT8
            return {56: 4, 127: 8}.get(type_id, size)
        return None

    @staticmethod
    def wait_is_cancelled(args, sql):
        conn = Driver.connect(args, autocommit=True, timeout=1)
        try:
            cur = conn.cursor()
            started = time.monotonic()
            try:
                cur.execute(sql)
            except pytds.tds_base.TimeoutError:
                pass
            else:
                raise CheckFailed("the statement did not wait on the lock (it should block)")
            expect(time.monotonic() - started < 5, "the client timeout did not fire")
            # The next request first drains the cancelled one up to the server's DONE_ATTN.
            try:
                cur.execute("SELECT 1")
                rows = cur.fetchall()
            except pytds.tds_base.TimeoutError:
                raise CheckFailed("no acknowledgement of the attention within 1 s (attention ignored?)")
            expect(rows == [(1,)], "SELECT 1 after the cancel answered %r" % (rows,))
        finally:
            conn.close()


if __name__ == "__main__":
    dbapi_checks.main(Driver)
