#!/usr/bin/env python3
"""Checks GBAOX10 order files against the documented field table.

An independent reading of deploy/mamut/import/gbaox10.toml (the format Mamut's import documents,
transcribed with its sources): it shares no code with the agent's writer (Rust, quick-xml) or the
import stand-in (Rust, roxmltree). It parses with Python's expat and reads the table with tomllib.

    scripts/check-gbaox10.py [--table PATH] FILE...

Checks, per file:
- the XML declaration names version 1.0 and the table's encoding (iso-8859-1); the bytes are
  ISO-8859-1 text: no C1 control characters (0x80-0x9F, where Windows-1252 puts the euro sign and
  typographic quotes) and no UTF-8 sequences read as Latin-1;
- the root and the nesting of [format] order_path and line_path (ORDERLIST holds ORDER and
  ORDERLINES, each ORDERLINES after the ORDER it belongs to, ORDERLINES holds ORDERLINE); no
  other elements, no attributes, tag names in upper case;
- every <ORDER> and <ORDERLINE> has exactly the table's tags, in the table's order ("All tag
  names must be included");
- each value: no line breaks (addresses use the table's address_line_break), at most max_len
  characters, numbers with a full stop and at most the documented decimals (none when the table
  gives none), dates as YYYYMMDD, export-only and unused fields empty, required fields filled,
  at least one field of each one_of group filled (a number 0 does not count), and fields whose
  note says "Cannot be blank" filled.

Exit status: 0 every file valid; 1 a file is invalid (the reasons on standard output, one line
each, `<file>: <where>: <reason>`); 2 usage, or the table or a file cannot be read.
"""

import argparse
import datetime
import os
import re
import sys
import xml.parsers.expat

try:
    import tomllib
except ImportError:  # Python < 3.11
    print("check-gbaox10.py needs Python 3.11 or later (tomllib)", file=sys.stderr)
    sys.exit(2)

DEFAULT_TABLE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "mamut", "import", "gbaox10.toml"
)

DECLARATION = re.compile(rb"^<\?xml\s+([^?]*)\?>")
ATTRIBUTE = re.compile(r'([A-Za-z]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


class Table:
    """The parts of the field table the checks use."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = tomllib.load(f)
        fmt = data["format"]
        self.encoding = fmt["encoding"].lower()
        self.root = fmt["root"]
        self.order_path = fmt["order_path"].split("/")
        self.line_path = fmt["line_path"].split("/")
        self.line_break = fmt.get("address_line_break", ":")
        self.decimal_separator = fmt.get("decimal_separator", ".")
        self.order = [r for r in data.get("order", []) if r.get("tag")]
        self.line = [r for r in data.get("line", []) if r.get("tag")]
        if self.order_path[0] != self.root or self.line_path[0] != self.root:
            raise ValueError("order_path and line_path must start at the root")
        if self.order_path[:-1] != self.line_path[:-2]:
            raise ValueError("the table's line_path is not beside its order_path")


class Element:
    def __init__(self, name, attrs, parent, line):
        self.name = name
        self.attrs = attrs
        self.parent = parent
        self.line = line
        self.children = []
        self.text = []

    def value(self):
        return "".join(self.text)

    def path(self):
        names = []
        e = self
        while e is not None:
            names.append(e.name)
            e = e.parent
        return list(reversed(names))


def parse(data):
    """The element tree, by expat; raises expat.ExpatError."""
    parser = xml.parsers.expat.ParserCreate()
    state = {"root": None, "current": None}

    def start(name, attrs):
        e = Element(name, attrs, state["current"], parser.CurrentLineNumber)
        if state["current"] is None:
            state["root"] = e
        else:
            state["current"].children.append(e)
        state["current"] = e

    def end(_name):
        state["current"] = state["current"].parent

    def chars(text):
        if state["current"] is not None:
            state["current"].text.append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.Parse(data, True)
    return state["root"]


def check_bytes(data, table, fail):
    m = DECLARATION.match(data)
    if not m:
        fail("start", "no XML declaration at the very start of the file (it must name the encoding)")
    else:
        attrs = {k: a or b for k, a, b in ATTRIBUTE.findall(m.group(1).decode("ascii", "replace"))}
        if attrs.get("version") != "1.0":
            fail("declaration", f"version is {attrs.get('version')!r}, not '1.0'")
        encoding = attrs.get("encoding")
        if encoding is None or encoding.lower() != table.encoding:
            fail("declaration", f"encoding is {encoding!r}, the format is {table.encoding}")
    c1 = sorted({b for b in data if 0x80 <= b <= 0x9F})
    if c1:
        fail(
            "bytes",
            "C1 control bytes " + " ".join(f"0x{b:02X}" for b in c1)
            + " (not text in ISO-8859-1; Windows-1252 or UTF-8 written instead?)",
        )
    if any(b >= 0x80 for b in data):
        try:
            data.decode("utf-8")
            fail("bytes", "the non-ASCII bytes are valid UTF-8: the file looks UTF-8 encoded, "
                          "which Latin-1 reads as mojibake (e.g. 'Ã¶' for 'ö')")
        except UnicodeDecodeError:
            pass
    text = data.decode("latin-1")
    bad = sorted({c for c in text if ord(c) < 0x20 and c not in "\t\r\n"})
    if bad:
        fail("bytes", "control characters not allowed in XML: "
                      + " ".join(f"U+{ord(c):04X}" for c in bad))


def check_value(where, row, value, fail):
    tag = row["tag"]
    kind = row.get("type")
    usage = row.get("use", "import")
    if "\n" in value or "\r" in value:
        fail(where, f"{tag} has a line break; the format's line break is ':'")
    if usage in ("export_only", "not_used"):
        if value.strip():
            fail(where, f"{tag} is {usage.replace('_', ' ')} and must be empty, has {value!r}")
        return
    max_len = row.get("max_len")
    if max_len is not None and len(value) > max_len:
        fail(where, f"{tag} is {len(value)} characters, the format allows {max_len}: {value!r}")
    filled = value.strip() != ""
    if row.get("required") == "yes" and not filled:
        fail(where, f"{tag} is required and empty")
    if "cannot be blank" in row.get("note", "").lower() and not filled:
        fail(where, f"{tag} cannot be blank (the table's note)")
    if not filled:
        return
    if kind == "numeric":
        if "," in value:
            fail(where, f"{tag} {value!r} has a comma; the decimal separator is a full stop")
        elif not NUMBER.match(value):
            fail(where, f"{tag} {value!r} is not a number")
        else:
            decimals = row.get("decimals", 0)
            given = len(value.split(".", 1)[1]) if "." in value else 0
            if given > decimals:
                fail(where, f"{tag} {value!r} has {given} decimals, the format allows {decimals}")
    elif kind == "date":
        ok = re.fullmatch(r"[0-9]{8}", value) is not None
        if ok:
            try:
                datetime.datetime.strptime(value, "%Y%m%d")
            except ValueError:
                ok = False
        if not ok:
            fail(where, f"{tag} {value!r} is not a date YYYYMMDD")


def check_record(where, element, rows, fail):
    """An <ORDER> or <ORDERLINE>: exactly the table's tags in order, each value valid."""
    names = [c.name for c in element.children]
    expected = [r["tag"] for r in rows]
    if names != expected:
        missing = [t for t in expected if t not in names]
        unknown = [n for n in names if n not in expected]
        twice = sorted({n for n in names if names.count(n) > 1})
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            parts.append("unknown " + ", ".join(unknown))
        if twice:
            parts.append("repeated " + ", ".join(twice))
        if not parts:
            parts.append("out of the documented order: " + " ".join(names))
        fail(where, f"<{element.name}> tags: " + "; ".join(parts))
    for child in element.children:
        if child.children:
            fail(f"{where} {child.name}", "a field holds elements")
    by_tag = {r["tag"]: r for r in rows}
    for child in element.children:
        row = by_tag.get(child.name)
        if row is not None:
            check_value(where, row, child.value(), fail)
    groups = {}
    for r in rows:
        if r.get("required") == "one_of":
            groups.setdefault(r.get("one_of", r["tag"]), []).append(r)
    values = {c.name: c.value().strip() for c in element.children}
    for group, members in groups.items():
        def completed(r):
            v = values.get(r["tag"], "")
            if r.get("type") == "numeric" and NUMBER.match(v or "x"):
                return float(v) != 0
            return v != ""
        if not any(completed(r) for r in members):
            fail(where, f"none of {', '.join(r['tag'] for r in members)} is filled ({group})")


def check_tree(root, table, fail):
    if root.name != table.root:
        fail("root", f"the root is <{root.name}>, the format's is <{table.root}>")
        return
    containers = set()
    for path in (table.order_path, table.line_path):
        for i in range(1, len(path) + 1):
            containers.add("/".join(path[:i]))
    order_path = "/".join(table.order_path)
    line_path = "/".join(table.line_path)
    list_path = "/".join(table.order_path[:-1])
    lines_name = table.line_path[-2]
    orders = 0

    def walk(e):
        path = "/".join(e.path())
        if e.name != e.name.upper():
            fail(f"line {e.line}", f"<{e.name}> is not in upper case")
        if e.attrs:
            fail(f"line {e.line}", f"<{e.name}> has attributes {sorted(e.attrs)}")
        if path not in containers:
            parent = "/".join(e.path()[:-1])
            if parent not in (order_path, line_path):
                fail(f"line {e.line}", f"<{e.name}> is not where the format has elements ({path})")
            return
        if path not in (order_path, line_path) and e.value().strip():
            fail(f"line {e.line}", f"<{e.name}> holds text {e.value().strip()[:40]!r}")
        for c in e.children:
            walk(c)

    walk(root)

    def lists(e):
        if "/".join(e.path()) == list_path:
            yield e
        for c in e.children:
            if "/".join(c.path()) in containers:
                yield from lists(c)

    for lst in lists(root):
        pending = None
        for c in lst.children:
            if c.name == table.order_path[-1]:
                if pending is not None:
                    fail(f"line {pending.line}", f"<{pending.name}> has no <{lines_name}> after it")
                orders += 1
                pending = c
                check_record(f"order {orders} (line {c.line})", c, table.order, fail)
            elif c.name == lines_name:
                if pending is None:
                    fail(f"line {c.line}", f"<{lines_name}> without an <{table.order_path[-1]}> before it")
                pending = None
                n = 0
                for line in c.children:
                    if line.name == table.line_path[-1]:
                        n += 1
                        check_record(f"order {orders} line {n} (line {line.line})", line, table.line, fail)
                if n == 0:
                    fail(f"line {c.line}", f"<{lines_name}> has no <{table.line_path[-1]}>")
        if pending is not None:
            fail(f"line {pending.line}", f"<{pending.name}> has no <{lines_name}> after it")
    if orders == 0:
        fail("file", f"no <{table.order_path[-1]}> at {order_path}")


def check_file(path, table):
    """The reasons `path` is invalid (empty when valid)."""
    reasons = []

    def fail(where, reason):
        reasons.append(f"{where}: {reason}")

    with open(path, "rb") as f:
        data = f.read()
    check_bytes(data, table, fail)
    try:
        root = parse(data)
    except xml.parsers.expat.ExpatError as e:
        fail("xml", f"not well-formed: {e}")
        return reasons
    check_tree(root, table, fail)
    return reasons


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=DEFAULT_TABLE, help="the field table (gbaox10.toml)")
    parser.add_argument("files", nargs="+", help="GBAOX10 files")
    args = parser.parse_args()
    try:
        table = Table(args.table)
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as e:
        print(f"cannot read the field table {args.table}: {e}", file=sys.stderr)
        return 2
    invalid = 0
    for path in args.files:
        try:
            reasons = check_file(path, table)
        except OSError as e:
            print(f"cannot read {path}: {e}", file=sys.stderr)
            return 2
        if reasons:
            invalid += 1
            for r in reasons:
                print(f"{path}: {r}")
        else:
            print(f"{path}: valid GBAOX10")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
