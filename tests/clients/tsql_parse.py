"""Every SQL statement the agent can send, parsed by an independent T-SQL grammar (sqlglot,
`read="tsql"`), and the reference schema with it.

Reads JSON lines `{"name": ..., "sql": ...}` from stdin, as `agent sql [--mapping FILE]`
prints them (built by the functions the agent sends them with), and parses each with
`sqlglot.parse(sql, read="tsql", error_level=RAISE)`. A statement fails when sqlglot raises,
and also when sqlglot only kept it as an opaque `Command` (its fallback for syntax it does not
know), since then nothing was checked. `--schema FILE` also parses that file statement by
statement. Prints `ok <name>` or `FAIL <name>: <why>` per statement, then the counts; exits 1
when any statement failed or stdin held none.

Usage: agent sql --mapping deploy/mamut/mapping.toml | tsql_parse.py --schema deploy/mamut/schema.sql
"""

import argparse
import json
import re
import sys

try:
    import sqlglot
    from sqlglot import exp
except ImportError as e:
    print("sqlglot is not installed (%s): run scripts/test-deps.sh" % e, file=sys.stderr)
    sys.exit(2)


# What a T-SQL statement parses into; anything else is an expression sqlglot accepted alone.
STATEMENTS = tuple(
    getattr(exp, name)
    for name in (
        "Query", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Set",
        "Transaction", "Commit", "Rollback", "IfBlock", "Use", "Declare",
    )
    if hasattr(exp, name)
)


def problem(sql):
    """None when sqlglot parses `sql` as T-SQL, else why not."""
    try:
        statements = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as e:
        return re.sub(r"\x1b\[[0-9;]*m", "", str(e)).replace("\n", " | ")
    statements = [s for s in statements if s is not None]
    if not statements:
        return "no statement in %r" % sql
    for statement in statements:
        if not isinstance(statement, STATEMENTS):
            # sqlglot reads a bare expression too (`DBCC CHECKDB` as a column alias)
            return "sqlglot read a %s, not a statement: %s" % (type(statement).__name__, statement.sql("tsql")[:120])
        for node in statement.walk():
            if isinstance(node, exp.Command):
                return "sqlglot did not understand it, kept only as a command: %s" % node.sql("tsql")[:120]
    return None


def schema_statements(path):
    """The statements of a T-SQL script: `--` comments dropped, split on `;`."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"--[^\n]*", "", f.read())
    statements = [s.strip() for s in text.split(";")]
    return [s for s in statements if s]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", help="a T-SQL script to parse statement by statement too")
    parser.add_argument("--no-stdin", action="store_true", help="parse the schema only")
    args = parser.parse_args()

    checked = []  # (source, name, problem)
    if not args.no_stdin:
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                name, sql = item["name"], item["sql"]
            except (ValueError, KeyError, TypeError) as e:
                checked.append(("agent", "line %d" % number, "not a {\"name\", \"sql\"} JSON line (%s): %r" % (e, line[:200])))
                continue
            checked.append(("agent", name, problem(sql)))
    if args.schema:
        for number, sql in enumerate(schema_statements(args.schema), 1):
            first = " ".join(sql.split()[:3])
            checked.append(("schema", "schema %d (%s)" % (number, first), problem(sql)))

    for _, name, why in checked:
        print(("ok %s" % name) if why is None else ("FAIL %s: %s" % (name, why)), flush=True)
    failed = [name for _, name, why in checked if why is not None]
    agent = sum(1 for source, _, why in checked if source == "agent" and why is None)
    schema = sum(1 for source, _, why in checked if source == "schema" and why is None)
    print(
        "sqlglot %s (tsql): %d statements parsed (%d from the agent, %d from the schema), %d failed"
        % (sqlglot.__version__, agent + schema, agent, schema, len(failed)),
        flush=True,
    )
    if not args.no_stdin and not any(source == "agent" for source, _, _ in checked):
        print("no statement on stdin: `agent sql` printed nothing", file=sys.stderr)
        sys.exit(1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
