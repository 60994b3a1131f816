"""The Mamut stand-in checked with FreeTDS `tsql` (Debian `freetds-bin`), driven through stdin.

Each check runs `tsql` as its own process (a connection of its own), feeds it batches ended by
`go`, and reads result rows from stdout (`-o fhq`: no header, footer or prompts; columns
tab-separated) and server messages from stderr (`Msg N (severity S, state T) from ...`).
Every answer row starts with a tag so a check knows which statement produced it. The lock
check keeps one `tsql` open inside a transaction while a second one runs into the lock
timeout. tsql sends no parameters (plain SQL batches only) and has no cancel command, so
those checks are python-tds's and pymssql's.

Usage: check_tsql.py [--host H] [--port P] [--user U] [--password PW] [--database DB]
"""

import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import tempfile
import threading
import time

from common import CheckFailed, Runner, error_table_ddl, expect, options, table_name, wait_until

MSG = re.compile(r'^Msg (\d+) \(severity (\d+), state (\d+)\) from [^\n]*:\n\t"(.*?)"$', re.M | re.S)
TIMEOUT = 20  # seconds for one tsql process


class Answer:
    def __init__(self, proc_rc, stdout, stderr):
        self.rc = proc_rc
        self.stdout = stdout
        self.stderr = stderr
        self.rows = [line.split("\t") for line in stdout.splitlines() if line.strip()]
        self.messages = [(int(m.group(1)), m.group(4)) for m in MSG.finditer(stderr)]

    def tagged(self, tag):
        """The values of the row starting with `tag` (it must appear exactly once)."""
        rows = [row[1:] for row in self.rows if row and row[0] == tag]
        if len(rows) != 1:
            raise CheckFailed(
                "expected one row tagged %r, got %d; stdout %r, stderr %r"
                % (tag, len(rows), self.stdout, self.stderr.strip())
            )
        return rows[0]

    def value(self, tag):
        return self.tagged(tag)[0]

    def errors(self):
        return [number for number, _ in self.messages if number not in (0, 3621)]


class Tsql:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="tsql-check-")
        self.conf = os.path.join(self.dir, "freetds.conf")
        with open(self.conf, "w") as f:
            f.write("[mamut]\n\thost = %s\n\tport = %d\n\ttds version = 7.4\n" % (args.host, args.port))

    def command(self, password=None, by_name=False):
        a = self.args
        where = ["-S", "mamut", "-I", self.conf] if by_name else ["-H", a.host, "-p", str(a.port)]
        password = a.password if password is None else password
        return ["tsql", *where, "-U", a.user, "-P", password, "-D", a.database, "-o", "fhq"]

    @staticmethod
    def script(batches):
        return "".join("%s\ngo\n" % b for b in batches) + "exit\n"

    def run(self, *batches, password=None, by_name=False):
        try:
            proc = subprocess.run(
                self.command(password, by_name),
                input=self.script(batches),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            raise CheckFailed("tsql did not finish within %d s; stdout %r" % (TIMEOUT, e.stdout))
        return Answer(proc.returncode, proc.stdout, proc.stderr)

    def clean(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Checks:
    def __init__(self, args):
        self.args = args
        self.t = Tsql(args)
        self.table = table_name("tsql")

    def login(self):
        a = self.t.run("SELECT 'one', 1")
        expect(a.value("one") == "1", "SELECT 1 answered %r; stderr %r" % (a.stdout, a.stderr))

    def login_by_server_name(self):
        a = self.t.run("SELECT 'one', 1", by_name=True)
        expect(a.value("one") == "1", "SELECT 1 via -S answered %r; stderr %r" % (a.stdout, a.stderr))

    def login_wrong_password(self):
        a = self.t.run("SELECT 'one', 1", password=self.args.password + "x")
        expect(18456 in a.errors(), "expected Msg 18456; stderr %r" % a.stderr)
        expect(a.rc != 0, "tsql exited 0 after a failed login")
        expect(not a.rows, "rows after a failed login: %r" % a.rows)

    def identity(self):
        a = self.t.run("SELECT 'v', @@VERSION", "SELECT 'db', DB_NAME()", "SELECT 'tc', @@TRANCOUNT")
        expect(not a.errors(), "errors: %r" % a.messages)
        expect(a.value("v").strip() != "", "@@VERSION is empty")
        expect(a.value("db") == self.args.database, "DB_NAME() is %r" % a.value("db"))
        expect(a.value("tc") == "0", "@@TRANCOUNT outside a transaction is %r" % a.value("tc"))

    def reference_schema(self):
        tables = ("customers", "products", "stock", "orders", "order_lines")
        a = self.t.run(*["SELECT '%s', COUNT(*) FROM %s" % (t, t) for t in tables])
        expect(not a.errors(), "errors: %r" % a.messages)
        for t in tables:
            expect(a.value(t).isdigit(), "COUNT(*) FROM %s answered %r" % (t, a.value(t)))

    def create_table(self):
        a = self.t.run(
            error_table_ddl(self.table),
            "INSERT INTO %s (id, name) VALUES (1, N'first')" % self.table,
            "SELECT 'n', COUNT(*) FROM %s" % self.table,
        )
        expect(not a.errors(), "errors: %r" % a.messages)
        expect(a.value("n") == "1", "the new table holds %r rows" % a.value("n"))

    def literals_round_trip(self):
        a = self.t.run(
            "INSERT INTO %s (id, name, note, amount, big, data) "
            "VALUES (2, N'Smörgås', NULL, 5, 12345678901, 0x00FF)" % self.table,
            "SELECT 'row', name, note, amount, big, data FROM %s WHERE id = 2" % self.table,
            "SELECT 'expr', 'a' + 'b', CAST(7 AS BIGINT), CAST(2.5 AS DECIMAL(9, 3))",
        )
        expect(not a.errors(), "errors: %r" % a.messages)
        row = a.tagged("row")
        expect(row[0] == "Smörgås", "nvarchar read back as %r" % row[0])
        expect(row[1] == "NULL", "NULL read back as %r" % row[1])
        expect(row[2] == "5.00", "decimal(9, 2) 5 read back as %r" % row[2])
        expect(row[3] == "12345678901", "bigint read back as %r" % row[3])
        expect(row[4].lower() in ("00ff", "0x00ff"), "varbinary 0x00FF read back as %r" % row[4])
        expr = a.tagged("expr")
        expect(expr == ["ab", "7", "2.500"], "'a'+'b', CAST AS BIGINT, CAST AS DECIMAL(9,3): %r" % expr)

    def collation(self):
        a = self.t.run("SELECT 'n', COUNT(*) FROM %s WHERE name = N'FIRST ' AND id = 1" % self.table)
        expect(a.value("n") == "1", "case- and trailing-space-insensitive = found %r rows" % a.value("n"))

    def transaction_commit(self):
        a = self.t.run(
            "BEGIN TRAN",
            "INSERT INTO %s (id, name) VALUES (10, N'commit')" % self.table,
            "SELECT 'in', @@TRANCOUNT",
            "COMMIT",
            "SELECT 'out', @@TRANCOUNT",
        )
        expect(not a.errors(), "errors: %r" % a.messages)
        expect((a.value("in"), a.value("out")) == ("1", "0"), "@@TRANCOUNT %r then %r" % (a.value("in"), a.value("out")))
        b = self.t.run("SELECT 'n', COUNT(*) FROM %s WHERE id = 10" % self.table)
        expect(b.value("n") == "1", "committed row not visible to a second connection")

    def transaction_rollback(self):
        a = self.t.run(
            "BEGIN TRAN",
            "INSERT INTO %s (id, name) VALUES (11, N'rollback')" % self.table,
            "SELECT 'in', COUNT(*) FROM %s WHERE id = 11" % self.table,
            "ROLLBACK",
            "SELECT 'out', COUNT(*) FROM %s WHERE id = 11" % self.table,
        )
        expect(not a.errors(), "errors: %r" % a.messages)
        expect(a.value("in") == "1", "row not visible inside its own transaction")
        expect(a.value("out") == "0", "rolled-back row still visible to its writer")
        b = self.t.run("SELECT 'n', COUNT(*) FROM %s WHERE id = 11" % self.table)
        expect(b.value("n") == "0", "rolled-back row visible to a second connection")

    def nested_transactions(self):
        a = self.t.run(
            "BEGIN TRAN",
            "BEGIN TRAN",
            "SELECT 'two', @@TRANCOUNT",
            "COMMIT",
            "SELECT 'one', @@TRANCOUNT",
            "ROLLBACK",
            "SELECT 'zero', @@TRANCOUNT",
        )
        expect(not a.errors(), "errors: %r" % a.messages)
        got = (a.value("two"), a.value("one"), a.value("zero"))
        expect(got == ("2", "1", "0"), "@@TRANCOUNT after BEGIN, BEGIN / COMMIT / ROLLBACK: %r" % (got,))

    def error(self, number, sql, mentions=()):
        a = self.t.run(sql, "SELECT 'after', 1")
        errors = a.errors()
        expect(errors == [number], "expected Msg %d, got %r" % (number, a.messages or a.stderr.strip()))
        text = a.messages[[n for n, _ in a.messages].index(number)][1]
        for word in mentions:
            expect(word in text, "Msg %d does not mention %s: %s" % (number, word, text))
        expect(a.value("after") == "1", "connection unusable after Msg %d" % number)

    def error_2628(self):
        self.error(
            2628,
            "INSERT INTO %s (id, name) VALUES (20, N'abcdefghijk')" % self.table,
            ("column 'name'", "Truncated value: 'abcdefghij'"),
        )

    def error_515(self):
        self.error(515, "INSERT INTO %s (id, name) VALUES (21, NULL)" % self.table, ("column 'name'",))

    def error_2627(self):
        self.error(2627, "INSERT INTO %s (id, name) VALUES (1, N'again')" % self.table)

    def error_208(self):
        self.error(208, "SELECT * FROM no_such_table_x", ("no_such_table_x",))

    def error_102(self):
        self.error(102, "SELECT * FROM customers WHERE (customer_no = 1")

    def error_1222(self):
        holder = subprocess.Popen(
            ["stdbuf", "-oL", *self.t.command()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(holder.stdout), daemon=True)
        reader.start()
        try:
            holder.stdin.write(
                "BEGIN TRAN\ngo\nUPDATE %s SET note = N'held' WHERE id = 1\ngo\nSELECT 'locked', 1\ngo\n" % self.table
            )
            holder.stdin.flush()
            def locked():
                if holder.poll() is not None:
                    raise CheckFailed("the lock holder ended; stdout %r" % "".join(lines))
                return any(line.startswith("locked") for line in lines)

            wait_until(locked, "the lock holder to take its lock", seconds=10)
            started = time.monotonic()
            a = self.t.run(
                "SET LOCK_TIMEOUT 200",
                "UPDATE %s SET note = N'waiter' WHERE id = 1" % self.table,
                "SELECT 'after', 1",
            )
            waited = time.monotonic() - started
            expect(1222 in a.errors(), "expected Msg 1222, got %r" % (a.messages or a.stderr.strip()))
            expect(waited < 5, "Msg 1222 came after %.1f s with LOCK_TIMEOUT 200 ms" % waited)
            expect(a.value("after") == "1", "connection unusable after Msg 1222")
        finally:
            try:
                holder.communicate("ROLLBACK\ngo\nexit\n", timeout=TIMEOUT)
            except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
                holder.kill()
                holder.wait()

    def all(self):
        return [
            ("login", self.login),
            ("login_by_server_name", self.login_by_server_name),
            ("login_wrong_password_18456", self.login_wrong_password),
            ("version_db_name_trancount", self.identity),
            ("reference_schema", self.reference_schema),
            ("create_table", self.create_table),
            ("literals_round_trip", self.literals_round_trip),
            ("collation", self.collation),
            ("transaction_commit", self.transaction_commit),
            ("transaction_rollback", self.transaction_rollback),
            ("nested_transactions", self.nested_transactions),
            ("error_2628_truncation", self.error_2628),
            ("error_515_null", self.error_515),
            ("error_2627_duplicate", self.error_2627),
            ("error_208_unknown_table", self.error_208),
            ("error_102_syntax", self.error_102),
            ("error_1222_lock_timeout", self.error_1222),
        ]


def main():
    args = options("Checks the Mamut stand-in with FreeTDS tsql.")
    if shutil.which("tsql") is None:
        print("tsql is not installed (Debian freetds-bin): run scripts/test-deps.sh", file=sys.stderr)
        sys.exit(2)
    runner = Runner("tsql", args.only)
    checks = Checks(args)
    try:
        if args.only:
            checks.create_table()
        for name, check in checks.all():
            runner.run(name, check)
    finally:
        checks.t.clean()
    runner.finish()


if __name__ == "__main__":
    main()
