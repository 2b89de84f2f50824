"""Word count in spate's peers, for `cargo bench -p spate-cli --bench wordcount`.

    python3 peers_wordcount.py ENGINE FILE THREADS RUNS OUT

ENGINE is duckdb, polars or pyspark. The job is spate's: words are maximal
runs of [A-Za-z'], lowercased (lowercase the line, then take runs of
[a-z']), counted per word. Prints the best of RUNS wall-clock times in
seconds; writes the last run's counts to OUT as word<TAB>count lines (the
benchmark checks every count against spate's). Engine start-up (importing,
starting the JVM) is not timed; fetching the result is. Exits 3 when the
engine is not installed.
"""

import sys
import time


def main():
    engine, path, threads, runs, out = (
        sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    try:
        job = {"duckdb": duckdb_job, "polars": polars_job, "pyspark": pyspark_job}[engine](path, threads)
    except ImportError as e:
        print(f"{engine} is not installed: {e}", file=sys.stderr)
        sys.exit(3)
    best, counts = None, None
    for _ in range(runs):
        t = time.perf_counter()
        counts = job()
        e = time.perf_counter() - t
        best = e if best is None else min(best, e)
    with open(out, "w") as f:
        for w, n in counts:
            f.write(f"{w}\t{n}\n")
    print(best)


def duckdb_job(path, threads):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads TO {threads}")
    # One column of whole lines: a separator and no quoting that never occur.
    query = f"""
        SELECT w, count(*) AS n FROM (
            SELECT unnest(regexp_extract_all(lower(line), '[a-z'']+')) AS w
            FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, header = false,
                          delim = chr(1), quote = '', escape = '', auto_detect = false,
                          strict_mode = false)
        ) GROUP BY w
    """
    return lambda: con.sql(query).fetchall()


def polars_job(path, threads):
    import os

    os.environ.setdefault("POLARS_MAX_THREADS", str(threads))
    import polars as pl

    def run():
        lines = pl.scan_csv(
            path,
            has_header=False,
            separator="\x01",
            quote_char=None,
            new_columns=["line"],
            schema_overrides={"line": pl.String},
        )
        counts = (
            lines.select(pl.col("line").str.to_lowercase().str.extract_all(r"[a-z']+").alias("w"))
            .explode("w")
            .drop_nulls()
            .group_by("w")
            .len()
            .collect()
        )
        return counts.rows()

    return run


def pyspark_job(path, threads):
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master(f"local[{threads}]")
        .config("spark.sql.shuffle.partitions", str(threads))
        .config("spark.driver.memory", "6g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def run():
        words = spark.read.text(path).select(
            F.explode(F.expr("regexp_extract_all(lower(value), '[a-z\\']+', 0)")).alias("w")
        )
        return [(r[0], r[1]) for r in words.groupBy("w").count().collect()]

    return run


if __name__ == "__main__":
    main()
