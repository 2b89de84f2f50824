//! Typed ↔ relational on one plan: Dataset → DataFrame/SQL → Dataset, and
//! a SQL step in a Pipeline, each checked against plain Rust.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use datafusion::prelude::{col, lit};
use serde::{Deserialize, Serialize};
use spate::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sale {
    item: String,
    qty: u32,
    price: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Total {
    item: String,
    revenue: f64,
}

fn sales() -> Vec<Sale> {
    (0..200u32)
        .map(|i| Sale {
            item: format!("item{}", i % 7),
            qty: i % 5,
            price: f64::from(i % 3) + 0.5,
        })
        .collect()
}

fn expected_totals(min_qty: u32) -> Vec<Total> {
    let mut map = std::collections::BTreeMap::<String, f64>::new();
    for s in sales().into_iter().filter(|s| s.qty >= min_qty) {
        *map.entry(s.item).or_default() += f64::from(s.qty) * s.price;
    }
    map.into_iter()
        .map(|(item, revenue)| Total { item, revenue })
        .collect()
}

#[test]
fn dataset_to_dataframe_and_back() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let ds = ctx.from_vec(sales()).filter(|s| s.qty >= 2);
    let df = ds
        .to_dataframe()
        .unwrap()
        .filter(col("price").gt(lit(1.0)))
        .unwrap();
    let back: Vec<Sale> = df.into_dataset::<Sale>(&ctx).unwrap().collect().unwrap();
    let mut want: Vec<Sale> = sales()
        .into_iter()
        .filter(|s| s.qty >= 2 && s.price > 1.0)
        .collect();
    let key = |s: &Sale| (s.item.clone(), s.qty, (s.price * 2.0) as u32);
    let mut got = back;
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
}

#[test]
fn sql_over_a_registered_dataset_is_one_plan() {
    let ctx = Context::builder().threads(2).build().unwrap();
    ctx.from_vec(sales())
        .map(|s| s) // a closure step: the SQL must read through it
        .register_table("sales")
        .unwrap();
    let totals = ctx
        .sql::<Total>(
            "SELECT item, sum(qty * price) AS revenue FROM sales WHERE qty >= 1 \
             GROUP BY item ORDER BY item",
        )
        .unwrap();
    let plan = totals.explain().unwrap();
    assert!(plan.contains("Aggregate"), "{plan}");
    assert!(
        plan.contains("map"),
        "the closure step is in the same plan: {plan}"
    );
    let got = totals.collect().unwrap();
    assert_eq!(got.len(), 7);
    for (g, w) in got.iter().zip(expected_totals(1)) {
        assert_eq!(g.item, w.item);
        assert!((g.revenue - w.revenue).abs() < 1e-9, "{g:?} vs {w:?}");
    }
    // Typed code continues on the SQL result.
    let best = totals_max(&ctx);
    assert_eq!(
        best.item,
        expected_totals(1)
            .into_iter()
            .fold(
                Total {
                    item: String::new(),
                    revenue: f64::MIN
                },
                |a, b| if b.revenue > a.revenue { b } else { a },
            )
            .item
    );
    // A missing column names itself.
    let err = ctx
        .sql::<Total>("SELECT item FROM sales")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no column named 'revenue'"), "{err}");
}

fn totals_max(ctx: &Context) -> Total {
    ctx.sql::<Total>("SELECT item, sum(qty * price) AS revenue FROM sales GROUP BY item")
        .unwrap()
        .max_by(|t| (t.revenue * 1000.0) as i64)
        .unwrap()
        .unwrap()
}

#[test]
fn sql_step_in_a_pipeline() {
    let p = Pipeline::new().unwrap();
    let sales = p.apply("Sales", Create(sales()));
    let totals = sales
        .apply("Big", Filter::new(|s: &Sale| s.qty >= 3))
        .apply(
            "Totals",
            Sql::<Total>::query(
                "SELECT item, sum(qty * price) AS revenue FROM PCOLLECTION GROUP BY item ORDER BY item",
            ),
        );
    let got = totals.into_dataset().collect().unwrap();
    let want = expected_totals(3);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.item, w.item);
        assert!((g.revenue - w.revenue).abs() < 1e-9);
    }
    // PCOLLECTION is only visible inside the step.
    assert!(
        p.context()
            .session()
            .table_exist("pcollection")
            .map_or(true, |e| !e)
    );
}

#[test]
fn typed_parquet_round_trip_is_committed_atomically() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sales");
    let summary = ctx.from_vec(sales()).write_parquet(&out).unwrap();
    assert_eq!(summary.rows, 200);
    assert!(summary.files >= 1);
    assert!(out.join("_SUCCESS").exists());
    let mut back: Vec<Sale> = ctx
        .read_parquet::<Sale>(out.to_string_lossy())
        .unwrap()
        .collect()
        .unwrap();
    let key = |s: &Sale| (s.item.clone(), s.qty, (s.price * 2.0) as u32);
    let mut want = sales();
    back.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(back, want);
    // The output is never overwritten, and nothing is left behind.
    assert!(ctx.from_vec(sales()).write_parquet(&out).is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // Other row types read the same files by column name.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Item {
        item: String,
    }
    let items = ctx
        .read_parquet::<Item>(out.to_string_lossy())
        .unwrap()
        .distinct()
        .count()
        .unwrap();
    assert_eq!(items, 7);
}

#[test]
fn typed_csv_and_json_readers_match_columns_by_name() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Columns in another order than the struct's fields, and an extra one.
    std::fs::write(
        dir.path().join("t.csv"),
        "price,extra,item,qty\n1.5,x,pen,2\n2.5,y,ink,3\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.json"),
        "{\"qty\":2,\"item\":\"pen\",\"price\":1.5}\n{\"qty\":3,\"item\":\"ink\",\"price\":2.5}\n",
    )
    .unwrap();
    let want = vec![
        Sale {
            item: "ink".into(),
            qty: 3,
            price: 2.5,
        },
        Sale {
            item: "pen".into(),
            qty: 2,
            price: 1.5,
        },
    ];
    for path in ["t.csv", "t.json"] {
        let full = dir.path().join(path).to_string_lossy().into_owned();
        let ds = if path.ends_with("csv") {
            ctx.read_csv::<Sale>(&full).unwrap()
        } else {
            ctx.read_json::<Sale>(&full).unwrap()
        };
        let got = ds.sort_by(|s| s.item.clone(), true).collect().unwrap();
        assert_eq!(got, want, "{path}");
    }
}

#[test]
fn typed_writers_cover_csv_arrow_and_compressed_json() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = |s: &Sale| (s.item.clone(), s.qty, (s.price * 2.0) as u32);
    let mut want = sales();
    want.sort_by_key(key);
    let sorted = |mut v: Vec<Sale>| {
        v.sort_by_key(key);
        v
    };

    let csv = dir.path().join("csv");
    assert_eq!(ctx.from_vec(sales()).write_csv(&csv).unwrap().rows, 200);
    let back = ctx.read_csv::<Sale>(csv.to_string_lossy()).unwrap();
    assert_eq!(sorted(back.collect().unwrap()), want);

    let arrow = dir.path().join("arrow");
    let summary = ctx.from_vec(sales()).write_arrow(&arrow).unwrap();
    assert_eq!((summary.rows, summary.files > 0), (200, true));
    let back = ctx.read_arrow::<Sale>(arrow.to_string_lossy()).unwrap();
    assert_eq!(sorted(back.collect().unwrap()), want);

    // gzip JSON lines, partitioned by item: every file is gzip, and every
    // row is back (the item from its directory name).
    let json = dir.path().join("json");
    let summary = ctx
        .from_vec(sales())
        .writer(spate::output::FileFormat::Json)
        .option("compression", "gzip")
        .partition_by(["item"])
        .save(json.to_string_lossy())
        .unwrap();
    assert_eq!(summary.rows, 200);
    assert!(json.join("_SUCCESS").exists());
    let mut got = Vec::new();
    for part in std::fs::read_dir(&json).unwrap() {
        let part = part.unwrap().path();
        if !part.is_dir() {
            continue;
        }
        let item = part
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("item=")
            .to_string();
        for file in std::fs::read_dir(&part).unwrap() {
            let file = file.unwrap().path();
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{}", file.display());
            #[derive(Debug, Serialize, Deserialize)]
            struct NoItem {
                qty: u32,
                price: f64,
            }
            for r in ctx
                .read_json::<NoItem>(file.to_string_lossy())
                .unwrap()
                .collect()
                .unwrap()
            {
                got.push(Sale {
                    item: item.clone(),
                    qty: r.qty,
                    price: r.price,
                });
            }
        }
    }
    assert_eq!(sorted(got), want);
    // Unknown options are refused before anything is written.
    let e = ctx
        .from_vec(sales())
        .writer(spate::output::FileFormat::Text)
        .option("delimiter", ";")
        .save(dir.path().join("t").to_string_lossy())
        .unwrap_err();
    assert!(e.to_string().contains("TEXT files take one option"), "{e}");
    assert!(!dir.path().join("t").exists());
}
