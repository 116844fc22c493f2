#!/usr/bin/env python3
"""Run SQL statements on current ClickHouse, in-process, through chdb.

Reads a JSON list of {"label": ..., "sql": ...} from stdin and runs them in order in
one fresh chdb session (own temp dir). Exits 2 if chdb is not installed.

Default mode: prints the chdb/ClickHouse version, then one line per statement
(`ok   LABEL` or `FAIL LABEL` with the server's message); exits 1 if any failed.
Used by crates/vero-clickhouse/tests/sql_compat.rs to check the migrations.

`--json`: prints the same lines to stderr and, on stdout, one JSON object
{"version": ..., "results": [{"label", "ok", "output" (TabSeparated) | "error"}]}, one
entry per statement in input order; exits 0 once every statement ran, whatever they
answered (the caller compares the answers). Used by
crates/vero-clickhouse/tests/docs_queries.rs to check the answers of the
docs/analytics.md queries.
"""
import json
import os
import sys
import tempfile

as_json = "--json" in sys.argv[1:]
log = sys.stderr if as_json else sys.stdout

try:
    from chdb import session
except ImportError:
    print("chdb is not installed: python3 -m pip install chdb (scripts/install-deps.sh does it)", file=sys.stderr)
    sys.exit(2)

statements = json.load(sys.stdin)
work = tempfile.mkdtemp(prefix="vero-chdb-")
os.chdir(work)  # chdb reads a config.xml from the working directory if one is there
s = session.Session(os.path.join(work, "data"))
version = str(s.query("SELECT version()", "TabSeparated")).strip()
print("chdb ClickHouse", version, file=log)
failed = 0
results = []
for item in statements:
    try:
        output = str(s.query(item["sql"], "TabSeparated"))
        results.append({"label": item["label"], "ok": True, "output": output})
        print("ok   ", item["label"], file=log)
    except Exception as e:  # chdb raises a plain RuntimeError with the server message
        failed += 1
        results.append({"label": item["label"], "ok": False, "error": str(e).strip()})
        print("FAIL ", item["label"], "\n      ", str(e).strip().replace("\n", "\n       "), file=log)
if as_json:
    json.dump({"version": version, "results": results}, sys.stdout)
    sys.exit(0)
sys.exit(1 if failed else 0)
