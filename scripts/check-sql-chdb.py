#!/usr/bin/env python3
"""Run SQL statements on current ClickHouse, in-process, through chdb.

Reads a JSON list of {"label": ..., "sql": ...} from stdin and runs them in order in
one fresh chdb session (own temp dir). Prints the chdb/ClickHouse version, then one
line per statement; exits 1 if any statement failed, 2 if chdb is not installed.
Used by crates/vero-clickhouse/tests/sql_compat.rs to check migrations and the
example queries of docs/analytics.md against the ClickHouse users actually run.
"""
import json
import os
import sys
import tempfile

try:
    from chdb import session
except ImportError:
    print("chdb is not installed: python3 -m pip install chdb (scripts/install-deps.sh does it)", file=sys.stderr)
    sys.exit(2)

statements = json.load(sys.stdin)
work = tempfile.mkdtemp(prefix="vero-chdb-")
os.chdir(work)  # chdb reads a config.xml from the working directory if one is there
s = session.Session(os.path.join(work, "data"))
print("chdb ClickHouse", str(s.query("SELECT version()")).strip())
failed = 0
for item in statements:
    try:
        s.query(item["sql"])
        print("ok   ", item["label"])
    except Exception as e:  # chdb raises a plain RuntimeError with the server message
        failed += 1
        print("FAIL ", item["label"], "\n      ", str(e).strip().replace("\n", "\n       "))
sys.exit(1 if failed else 0)
