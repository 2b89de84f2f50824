//! Keyed operations give exact results on data far larger than the memory
//! budget: they spill. Size: SPATE_SPILL_MB (default 200) of distinct keys
//! under a 32 MiB budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use spate::prelude::*;

fn budget_ctx() -> Context {
    Context::builder()
        .threads(2)
        .memory_limit(32 << 20)
        .build()
        .unwrap()
}

fn keys() -> u64 {
    let mb: u64 = std::env::var("SPATE_SPILL_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // ~50 bytes per key as a string plus its counts in memory.
    mb * (1 << 20) / 50
}

#[test]
fn count_reduce_and_group_spill_with_exact_results() {
    let n = keys();
    let ctx = budget_ctx();
    let dir = tempfile::tempdir().unwrap();
    // Every key twice, far apart, so the partial maps cannot combine them.
    let input = dir.path().join("keys.txt");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for round in 0..2 {
            for i in 0..n {
                let _ = round;
                writeln!(
                    f,
                    "key-{:016x}-{:024}",
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    i
                )
                .unwrap();
            }
        }
    }
    let lines = ctx.read_text(&[&input]).unwrap();

    let counts = lines
        .clone()
        .count_by_value()
        .filter(|(_, c)| *c != 2)
        .count()
        .unwrap();
    assert_eq!(counts, 0, "every key counted exactly twice");
    let distinct = lines.clone().count_by_value().count().unwrap();
    assert_eq!(distinct, n);

    let reduced = lines.clone().map(|l| (l, 1u32)).reduce_by_key(|a, b| a + b);
    let wrong = reduced.clone().filter(|(_, c)| *c != 2).count().unwrap();
    assert_eq!(wrong, 0);
    assert_eq!(reduced.count().unwrap(), n);

    let groups = lines
        .map(|l| (l, 1u8))
        .group_by_key()
        .map_groups(|_, vs| vs.count() as u64);
    let sizes = groups.count_by_value().collect().unwrap();
    assert_eq!(sizes, vec![(2, n)]);
}
