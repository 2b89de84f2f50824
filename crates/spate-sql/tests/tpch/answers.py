"""Writes the expected TPC-H answers (answers/qN.tsv) with DuckDB, an
engine independent of DataFusion, on the data tpchgen-cli generates.

    pip install tpchgen-cli duckdb
    python3 crates/spate-sql/tests/tpch/answers.py [SCALE]    # default 0.1

Values are tab-separated, one row per line, with a header; NULL is "NULL".
"""
import os
import subprocess
import sys
import tempfile

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]


def main():
    scale = sys.argv[1] if len(sys.argv) > 1 else "0.1"
    with tempfile.TemporaryDirectory() as data:
        subprocess.run(["tpchgen-cli", "parquet", "-s", scale, "--output-dir", data], check=True)
        con = duckdb.connect()
        for t in TABLES:
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}.parquet')")
        for n in range(1, 23):
            with open(os.path.join(HERE, "queries", f"q{n}.sql")) as f:
                statements = [s for s in f.read().split(";") if s.strip()]
            result = None
            for s in statements:
                code = "\n".join(l for l in s.splitlines() if not l.strip().startswith("--"))
                rel = con.sql(s)
                if code.strip().lower().startswith(("select", "with")):
                    result = (rel.columns, rel.fetchall())
            columns, rows = result
            with open(os.path.join(HERE, "answers", f"q{n}.tsv"), "w") as out:
                out.write("\t".join(columns) + "\n")
                for row in rows:
                    out.write("\t".join("NULL" if v is None else str(v) for v in row) + "\n")
            print(f"q{n}: {len(rows)} rows")


if __name__ == "__main__":
    main()
