"""The checks that python-tds and pymssql share: the same SQL and the same expectations of
SQL Server, sent through two DB-API drivers we did not write.

A driver module (`check_pytds.py`, `check_pymssql.py`) supplies a `Driver` with `connect`,
`error_number`, `error_text`, `int_width` and `wait_is_cancelled`; this module runs the checks.
python-tds sends parameters as typed RPC parameters (sp_executesql) and transactions as TDS
transaction-manager requests; pymssql (FreeTDS db-lib) inlines parameters as literals and sends
`BEGIN TRAN` / `COMMIT TRAN` / `ROLLBACK TRAN` as SQL. So each expectation is checked over both
paths into the stand-in.
"""

import random
import time
from decimal import Decimal

from common import (
    CheckFailed,
    Runner,
    error_table_ddl,
    expect,
    expect_equal,
    options,
    table_name,
)

NON_ASCII = "Smörgås"


class Checks:
    def __init__(self, driver, args):
        self.d = driver
        self.args = args
        self.table = table_name(driver.short)
        self.conn = None
        self.key = random.randrange(100_000, 900_000)

    # --- helpers -----------------------------------------------------------------------

    def one(self, sql, params=None, conn=None):
        """The single value of a one-row, one-column answer, and the cursor's description."""
        cur = (conn or self.conn).cursor()
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        rows = cur.fetchall()
        expect(len(rows) == 1 and len(rows[0]) == 1, "%s: expected one value, got %r" % (sql, rows))
        return rows[0][0], cur.description

    def run(self, sql, params=None, conn=None):
        cur = (conn or self.conn).cursor()
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return cur

    def next_id(self):
        self.key += 1
        return self.key

    def still_usable(self, conn, after):
        try:
            value, _ = self.one("SELECT 1", conn=conn)
        except Exception as e:
            raise CheckFailed("connection unusable after %s: SELECT 1 raised %r" % (after, e))
        expect_equal(value, 1, "SELECT 1 after %s" % after)

    def expect_error(self, number, sql, params=None, conn=None, mentions=()):
        """Runs `sql`, which must fail with SQL Server error `number` whose text names each of
        `mentions`; then the same connection must still answer."""
        conn = conn or self.conn
        try:
            cur = self.run(sql, params, conn=conn)
            while True:  # every statement of the batch, so an error in a later one surfaces
                if cur.description:
                    cur.fetchall()
                if not cur.nextset():
                    break
        except self.d.errors as e:
            got = self.d.error_number(e)
            text = self.d.error_text(e)
            if got != number:
                raise CheckFailed("expected error %d, got %r: %s" % (number, got, text))
            for word in mentions:
                if word not in text:
                    raise CheckFailed("error %d does not mention %s: %s" % (number, word, text))
        else:
            raise CheckFailed("expected error %d, the statement succeeded: %s" % (number, sql))
        self.still_usable(conn, "error %d" % number)

    def width(self, description, what, expected):
        width = self.d.int_width(description[0])
        if width is not None and width != expected:
            raise CheckFailed(
                "%s: sent as a %d-byte integer, SQL Server sends %d bytes (%s)"
                % (what, width, expected, {4: "int", 8: "bigint"}[expected])
            )

    def recover(self):
        """After a failed check: a fresh main connection, so one fault is reported once."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass  # the old connection may be broken; it is replaced either way
        self.conn = None
        try:
            self.conn = self.d.connect(self.args, autocommit=True)
        except Exception:
            self.conn = None

    # --- connection ---------------------------------------------------------------------

    def login(self):
        self.conn = self.d.connect(self.args, autocommit=True)
        self.still_usable(self.conn, "login")

    def login_wrong_password(self):
        try:
            conn = self.d.connect(self.args, autocommit=True, password=self.args.password + "x")
        except self.d.errors as e:
            got = self.d.error_number(e)
            expect(got == 18456, "expected error 18456, got %r: %s" % (got, self.d.error_text(e)))
        else:
            conn.close()
            raise CheckFailed("logged in with a wrong password")

    def select_1(self):
        value, description = self.one("SELECT 1")
        expect_equal(value, 1, "SELECT 1")
        self.width(description, "SELECT 1", 4)

    def version(self):
        value, _ = self.one("SELECT @@VERSION")
        expect(isinstance(value, str) and value.strip(), "@@VERSION: got %r" % (value,))

    def db_name(self):
        value, _ = self.one("SELECT DB_NAME()")
        expect_equal(value, self.args.database, "DB_NAME()")

    def reference_schema(self):
        for table in ("customers", "products", "stock", "orders", "order_lines"):
            value, description = self.one("SELECT COUNT(*) FROM %s" % table)
            expect(isinstance(value, int), "COUNT(*) FROM %s: got %r" % (table, value))
            self.width(description, "COUNT(*) FROM %s" % table, 4)

    # --- types and parameters -----------------------------------------------------------

    def result_types(self):
        value, description = self.one("SELECT COUNT_BIG(*) FROM products")
        expect(isinstance(value, int), "COUNT_BIG(*): got %r" % (value,))
        self.width(description, "COUNT_BIG(*)", 8)
        value, description = self.one("SELECT CAST(7 AS BIGINT)")
        expect_equal(value, 7, "CAST(7 AS BIGINT)")
        self.width(description, "CAST(7 AS BIGINT)", 8)
        value, description = self.one("SELECT CAST(2.5 AS DECIMAL(9, 3))")
        expect_equal(self.d.decimal_scale(value, description[0]), 3, "CAST(2.5 AS DECIMAL(9, 3)) scale")
        expect_equal(value, Decimal("2.500"), "CAST(2.5 AS DECIMAL(9, 3))")
        value, _ = self.one("SELECT 'a' + 'b'")
        expect_equal(value, "ab", "'a' + 'b'")

    def param(self, value, expected=None):
        got, _ = self.one("SELECT %s", (value,))
        expected = value if expected is None else expected
        expect_equal(got, expected, "SELECT %%s with %r" % (value,))
        if isinstance(expected, Decimal):
            expect_equal(str(got), str(expected), "SELECT %%s with %r as text" % (value,))

    def param_int(self):
        self.param(42)
        self.param(-2147483648, self.d.beyond_int(-2147483648))

    def param_bigint(self):
        self.param(2**40, self.d.beyond_int(2**40))
        self.param(-(2**62), self.d.beyond_int(-(2**62)))

    def param_decimal(self):
        self.param(Decimal("1234.56"))
        self.param(Decimal("-0.0001"))

    def param_nvarchar(self):
        self.param(NON_ASCII)
        self.param("it's")

    def param_null(self):
        got, _ = self.one("SELECT %s", (None,))
        expect_equal(got, None, "SELECT %s with None")

    def param_varbinary(self):
        got, _ = self.one("SELECT %s", (self.d.binary(b"\x00\x01\xfe\xff"),))
        expect_equal(got, b"\x00\x01\xfe\xff", "SELECT %s with bytes")

    def create_table(self):
        self.run(error_table_ddl(self.table))
        self.run(
            "INSERT INTO %s (id, name, note, amount, big, data) VALUES (1, N'first', NULL, 1, 1, NULL)"
            % self.table
        )

    def row_round_trip(self):
        row_id = self.next_id()
        self.run(
            "INSERT INTO %s (id, name, note, amount, big, data) VALUES (%%s, %%s, %%s, %%s, %%s, %%s)"
            % self.table,
            (row_id, NON_ASCII, None, Decimal("5"), 2**40, self.d.binary(b"\x00\xff")),
        )
        cur = self.run(
            "SELECT id, name, note, amount, big, data FROM %s WHERE id = %%s" % self.table,
            (row_id,),
        )
        rows = cur.fetchall()
        expect(len(rows) == 1, "row %d read back %d times" % (row_id, len(rows)))
        got = tuple(rows[0])
        expected = (row_id, NON_ASCII, None, Decimal("5.00"), 2**40, b"\x00\xff")
        for column, g, e in zip(("id", "name", "note", "amount", "big", "data"), got, expected):
            expect_equal(g, e, "column %s" % column)
        expect_equal(self.d.decimal_scale(got[3], cur.description[3]), 2, "decimal(9, 2) column scale")
        self.width(cur.description[0:1], "int column id", 4)
        self.width(cur.description[4:5], "bigint column big", 8)

    def reference_round_trip(self):
        customer = self.next_id()
        article = "CHK-%d" % customer
        self.run(
            "INSERT INTO customers (customer_no, name, email) VALUES (%s, %s, %s)",
            (customer, NON_ASCII + " AB", "kund@example.se"),
        )
        name, _ = self.one("SELECT name FROM customers WHERE customer_no = %s", (customer,))
        expect_equal(name, NON_ASCII + " AB", "customers.name")
        self.run(
            "INSERT INTO products (article_no, name, vat_rate, price, active) VALUES (%s, %s, %s, %s, 1)",
            (article, "Mugg", Decimal("25"), Decimal("63.2")),
        )
        price, description = self.one("SELECT price FROM products WHERE article_no = %s", (article,))
        expect_equal(price, Decimal("63.2000"), "products.price")
        expect_equal(self.d.decimal_scale(price, description[0]), 4, "products.price DECIMAL(19, 4) scale")
        count, description = self.one(
            "SELECT COUNT(*) FROM products WHERE article_no = %s", (article,)
        )
        expect_equal(count, 1, "COUNT(*) of the new product")
        self.width(description, "COUNT(*) with a parameter", 4)

    def collation(self):
        count, _ = self.one(
            "SELECT COUNT(*) FROM %s WHERE name = N'FIRST ' AND id = 1" % self.table
        )
        expect_equal(count, 1, "case- and trailing-space-insensitive = (default collation)")

    def rpc_then_batch(self):
        for n in range(3):
            got, _ = self.one("SELECT %s + 1", (n,))
            expect_equal(got, n + 1, "parameterised SELECT %d" % n)
        self.still_usable(self.conn, "three parameterised statements")

    # --- transactions -------------------------------------------------------------------

    def second(self):
        return self.d.connect(self.args, autocommit=True)

    def exists(self, conn, row_id):
        count, _ = self.one(
            "SELECT COUNT(*) FROM %s WHERE id = %d" % (self.table, row_id), conn=conn
        )
        return count == 1

    def transaction_commit(self):
        writer = self.d.connect(self.args, autocommit=False)
        reader = self.second()
        try:
            trancount, _ = self.one("SELECT @@TRANCOUNT", conn=writer)
            expect_equal(trancount, 1, "@@TRANCOUNT in a %s transaction" % self.d.transactions)
            row_id = self.next_id()
            self.run(
                "INSERT INTO %s (id, name) VALUES (%%s, %%s)" % self.table, (row_id, "commit"),
                conn=writer,
            )
            writer.commit()
            expect(self.exists(reader, row_id), "committed row %d not visible to a second connection" % row_id)
            expect(self.exists(writer, row_id), "committed row %d not visible to its writer" % row_id)
        finally:
            writer.close()
            reader.close()

    def transaction_rollback(self):
        writer = self.d.connect(self.args, autocommit=False)
        reader = self.second()
        try:
            row_id = self.next_id()
            self.run(
                "INSERT INTO %s (id, name) VALUES (%%s, %%s)" % self.table, (row_id, "rollback"),
                conn=writer,
            )
            expect(self.exists(writer, row_id), "row %d not visible inside its own transaction" % row_id)
            writer.rollback()
            expect(not self.exists(writer, row_id), "rolled-back row %d still visible to its writer" % row_id)
            expect(not self.exists(reader, row_id), "rolled-back row %d visible to a second connection" % row_id)
            trancount, _ = self.one("SELECT @@TRANCOUNT", conn=reader)
            expect_equal(trancount, 0, "@@TRANCOUNT on an autocommit connection")
        finally:
            writer.close()
            reader.close()

    # --- errors -------------------------------------------------------------------------

    def error_2628(self):
        long_name = "abcdefghijk"
        self.expect_error(
            2628,
            "INSERT INTO %s (id, name) VALUES (%%s, %%s)" % self.table,
            (self.next_id(), long_name),
            mentions=("column 'name'", "Truncated value: '%s'" % long_name[:10]),
        )

    def error_515(self):
        self.expect_error(
            515,
            "INSERT INTO %s (id, name) VALUES (%%s, %%s)" % self.table,
            (self.next_id(), None),
            mentions=("column 'name'",),
        )

    def error_2627(self):
        self.expect_error(
            2627, "INSERT INTO %s (id, name) VALUES (1, N'again')" % self.table
        )

    def error_208(self):
        self.expect_error(208, "SELECT * FROM no_such_table_%d" % self.key, mentions=("no_such_table",))

    def error_102(self):
        self.expect_error(102, "SELECT * FROM customers WHERE (customer_no = 1")

    def syntax_error_runs_nothing(self):
        row_id = self.next_id()
        self.expect_error(
            102,
            "INSERT INTO %s (id, name) VALUES (%d, N'batch'); SELECT * FROM customers WHERE (customer_no = 1"
            % (self.table, row_id),
        )
        expect(not self.exists(self.conn, row_id), "a batch with a syntax error ran its first statement")

    def error_1222(self):
        holder = self.d.connect(self.args, autocommit=False)
        waiter = self.second()
        try:
            self.run("UPDATE %s SET note = N'held' WHERE id = 1" % self.table, conn=holder)
            self.run("SET LOCK_TIMEOUT 200", conn=waiter)
            started = time.monotonic()
            self.expect_error(
                1222,
                "UPDATE %s SET note = N'waiter' WHERE id = 1" % self.table,
                conn=waiter,
                mentions=("Lock request time out period exceeded",),
            )
            waited = time.monotonic() - started
            expect(waited < 5, "1222 came after %.1f s with LOCK_TIMEOUT 200 ms" % waited)
        finally:
            holder.rollback()
            holder.close()
            waiter.close()

    def cancel(self):
        holder = self.d.connect(self.args, autocommit=False)
        try:
            self.run("UPDATE %s SET note = N'held' WHERE id = 1" % self.table, conn=holder)
            self.d.wait_is_cancelled(
                self.args, "UPDATE %s SET note = N'cancelled' WHERE id = 1" % self.table
            )
        finally:
            holder.rollback()
            holder.close()
        note, _ = self.one("SELECT note FROM %s WHERE id = 1" % self.table)
        expect(note != "cancelled", "the cancelled UPDATE ran after the lock was released")

    def error_then_transaction(self):
        """An error inside a driver transaction leaves the transaction usable (SQL Server
        does not roll back on a statement-level error such as 2627)."""
        conn = self.d.connect(self.args, autocommit=False)
        try:
            row_id = self.next_id()
            self.run("INSERT INTO %s (id, name) VALUES (%d, N'kept')" % (self.table, row_id), conn=conn)
            self.expect_error(2627, "INSERT INTO %s (id, name) VALUES (1, N'dup')" % self.table, conn=conn)
            conn.commit()
            expect(self.exists(self.conn, row_id), "row %d written before a 2627 in the same transaction is lost" % row_id)
        finally:
            conn.close()

    def all(self):
        return [
            ("login", self.login),
            ("login_wrong_password_18456", self.login_wrong_password),
            ("select_1", self.select_1),
            ("version", self.version),
            ("db_name", self.db_name),
            ("reference_schema", self.reference_schema),
            ("result_types", self.result_types),
            ("param_int", self.param_int),
            ("param_bigint", self.param_bigint),
            ("param_decimal", self.param_decimal),
            ("param_nvarchar", self.param_nvarchar),
            ("param_null", self.param_null),
            ("param_varbinary", self.param_varbinary),
            ("rpc_then_batch", self.rpc_then_batch),
            ("create_table", self.create_table),
            ("row_round_trip", self.row_round_trip),
            ("reference_round_trip", self.reference_round_trip),
            ("collation", self.collation),
            ("transaction_commit", self.transaction_commit),
            ("transaction_rollback", self.transaction_rollback),
            ("error_2628_truncation", self.error_2628),
            ("error_515_null", self.error_515),
            ("error_2627_duplicate", self.error_2627),
            ("error_208_unknown_table", self.error_208),
            ("error_102_syntax", self.error_102),
            ("syntax_error_runs_nothing", self.syntax_error_runs_nothing),
            ("error_then_transaction", self.error_then_transaction),
            ("error_1222_lock_timeout", self.error_1222),
            ("cancel", self.cancel),
        ]


def main(driver):
    args = options("Checks the Mamut stand-in with %s." % driver.name)
    runner = Runner(driver.name, args.only)
    checks = Checks(driver, args)
    if args.only:
        # The named checks alone, on a logged-in connection and the check table.
        checks.login()
        checks.create_table()
    for name, check in checks.all():
        if checks.conn is None and name not in ("login", "login_wrong_password_18456"):
            runner.fail(name, "not run: login failed")
            continue
        if not runner.run(name, check):
            checks.recover()
    runner.finish()
