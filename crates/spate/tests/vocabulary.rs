//! Spark's RDD vocabulary beyond the core operators — actions, shaping and
//! keyed operations — each against a plain in-memory reference on random
//! inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use spate::prelude::*;

static CTX: LazyLock<Context> = LazyLock::new(|| {
    Context::builder()
        .threads(3)
        .batch_size(64)
        .build()
        .unwrap()
});

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-e]{0,2}",
        1 => "[äöü中🙂 ]{1,2}",
        1 => Just("hot".to_string()),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, i64)>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec(Just(("same".to_string(), 1i64)), 0..300),
        6 => prop::collection::vec((key_strategy(), -1000i64..1000), 0..200),
    ]
}

/// One key's values from each of three inputs.
type Three = (Vec<i64>, Vec<i64>, Vec<i64>);

fn grouped(ps: &[(String, i64)]) -> BTreeMap<String, Vec<i64>> {
    let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (k, v) in ps {
        m.entry(k.clone()).or_default().push(*v);
    }
    m
}

/// Every line of every `part-*` file of `dir`, by file name.
fn parts(dir: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(name, text.lines().map(String::from).collect());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, .. ProptestConfig::default() })]

    #[test]
    fn take_and_first_follow_partition_order(xs in prop::collection::vec(-50i64..50, 0..400), n in 0usize..500) {
        // `from_vec` splits in order, so partition order is the vector's.
        let got = CTX.from_vec(xs.clone()).take(n).unwrap();
        prop_assert_eq!(&got[..], &xs[..n.min(xs.len())]);
        prop_assert_eq!(CTX.from_vec(xs.clone()).first().unwrap(), xs.first().copied());
        let doubled = CTX.from_vec(xs.clone()).flat_map(|x| vec![x, x]).take(n).unwrap();
        let want: Vec<i64> = xs.iter().flat_map(|x| [*x, *x]).take(n).collect();
        prop_assert_eq!(doubled, want);
        let top = CTX.from_vec(xs.clone()).sort_by(|x| *x, false).take(n).unwrap();
        let mut want = xs.clone();
        want.sort_by(|a, b| b.cmp(a));
        want.truncate(n);
        prop_assert_eq!(top, want);
    }

    #[test]
    fn global_reductions_match(xs in prop::collection::vec(-1000i64..1000, 0..400)) {
        prop_assert_eq!(CTX.from_vec(xs.clone()).reduce(|a, b| a + b).unwrap(), xs.iter().copied().reduce(|a, b| a + b));
        prop_assert_eq!(CTX.from_vec(xs.clone()).fold(0, |a, b| a.max(b)).unwrap(), xs.iter().copied().fold(0, i64::max));
        let (sum, count) = CTX.from_vec(xs.clone())
            .aggregate((0i64, 0u64), |(s, c), x| (s + x, c + 1), |(s1, c1), (s2, c2)| (s1 + s2, c1 + c2))
            .unwrap();
        prop_assert_eq!((sum, count), (xs.iter().sum::<i64>(), xs.len() as u64));
        prop_assert_eq!(CTX.from_vec(xs.clone()).min_by(|x| *x).unwrap(), xs.iter().min().copied());
        prop_assert_eq!(CTX.from_vec(xs.clone()).max_by(|x| *x).unwrap(), xs.iter().max().copied());
        let lists = CTX.from_vec(xs.clone())
            .aggregate(Vec::new(), |mut v: Vec<i64>, x| { v.push(x); v }, |mut a, b| { a.extend(b); a })
            .unwrap();
        prop_assert_eq!(sorted(lists), sorted(xs.clone()));
    }

    #[test]
    fn keyed_maps_and_lookups_match(ps in pairs()) {
        let want = grouped(&ps);
        let counts = CTX.from_vec(ps.clone()).count_by_key().unwrap();
        let counts: BTreeMap<String, u64> = counts.into_iter().collect();
        let want_counts: BTreeMap<String, u64> = want.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
        prop_assert_eq!(counts, want_counts);
        let map = CTX.from_vec(ps.clone()).collect_map().unwrap();
        prop_assert_eq!(map.keys().cloned().collect::<BTreeSet<_>>(), want.keys().cloned().collect::<BTreeSet<_>>());
        for (k, v) in &map {
            prop_assert!(want[k].contains(v));
        }
        for key in ["hot", "a", "nothing-like-it"] {
            let got = sorted(CTX.from_vec(ps.clone()).lookup(&key.to_string()).unwrap());
            prop_assert_eq!(got, sorted(want.get(key).cloned().unwrap_or_default()));
        }
        let keys = CTX.from_vec(ps.clone()).keys().collect().unwrap();
        prop_assert_eq!(sorted(keys), sorted(ps.iter().map(|(k, _)| k.clone()).collect()));
        let values = CTX.from_vec(ps.clone()).values().collect().unwrap();
        prop_assert_eq!(sorted(values), sorted(ps.iter().map(|(_, v)| *v).collect()));
    }

    #[test]
    fn sort_by_key_sorts_globally(ps in pairs(), asc in any::<bool>()) {
        let got = CTX.from_vec(ps.clone()).sort_by_key(asc).collect().unwrap();
        let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
        let mut want: Vec<&String> = ps.iter().map(|(k, _)| k).collect();
        want.sort();
        if !asc { want.reverse(); }
        prop_assert_eq!(keys, want);
        prop_assert_eq!(sorted(got), sorted(ps));
    }

    #[test]
    fn per_key_folds_match(ps in pairs()) {
        let want = grouped(&ps);
        let got = CTX.from_vec(ps.clone()).fold_by_key(0, |a, b| a + b).collect().unwrap();
        prop_assert_eq!(sorted(got), want.iter().map(|(k, v)| (k.clone(), v.iter().sum())).collect::<Vec<_>>());
        let got = CTX.from_vec(ps.clone())
            .aggregate_by_key((i64::MAX, 0u64), |(m, c), v| (m.min(v), c + 1), |(m1, c1), (m2, c2)| (m1.min(m2), c1 + c2))
            .collect().unwrap();
        let want_agg: Vec<(String, (i64, u64))> = want.iter()
            .map(|(k, v)| (k.clone(), (*v.iter().min().unwrap(), v.len() as u64))).collect();
        prop_assert_eq!(sorted(got), want_agg);
    }

    #[test]
    fn cogroups_match(a in pairs(), b in pairs(), c in pairs()) {
        let (ga, gb, gc) = (grouped(&a), grouped(&b), grouped(&c));
        let got = CTX.from_vec(a.clone()).cogroup(CTX.from_vec(b.clone())).collect().unwrap();
        let got: BTreeMap<String, (Vec<i64>, Vec<i64>)> =
            got.into_iter().map(|(k, (v, w))| (k, (sorted(v), sorted(w)))).collect();
        let keys: BTreeSet<&String> = ga.keys().chain(gb.keys()).collect();
        let want: BTreeMap<String, (Vec<i64>, Vec<i64>)> = keys.iter().map(|k| {
            ((*k).clone(), (sorted(ga.get(*k).cloned().unwrap_or_default()), sorted(gb.get(*k).cloned().unwrap_or_default())))
        }).collect();
        prop_assert_eq!(got, want);

        let got = CTX.from_vec(a).cogroup3(CTX.from_vec(b), CTX.from_vec(c)).collect().unwrap();
        let got: BTreeMap<String, Three> =
            got.into_iter().map(|(k, (v, w, x))| (k, (sorted(v), sorted(w), sorted(x)))).collect();
        let keys: BTreeSet<&String> = ga.keys().chain(gb.keys()).chain(gc.keys()).collect();
        let get = |g: &BTreeMap<String, Vec<i64>>, k: &String| sorted(g.get(k).cloned().unwrap_or_default());
        let want: BTreeMap<String, Three> = keys.iter()
            .map(|k| ((*k).clone(), (get(&ga, k), get(&gb, k), get(&gc, k)))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn outer_joins_match(l in pairs(), r in pairs()) {
        let got = CTX.from_vec(l.clone()).right_join(CTX.from_vec(r.clone())).collect().unwrap();
        let mut want = Vec::new();
        for (rk, rv) in &r {
            let matches: Vec<_> = l.iter().filter(|(lk, _)| lk == rk).collect();
            if matches.is_empty() { want.push((rk.clone(), (None, *rv))); }
            for (_, lv) in matches { want.push((rk.clone(), (Some(*lv), *rv))); }
        }
        prop_assert_eq!(sorted(got), sorted(want));

        let got = CTX.from_vec(l.clone()).full_outer_join(CTX.from_vec(r.clone())).collect().unwrap();
        let mut want = Vec::new();
        for (lk, lv) in &l {
            let matches: Vec<_> = r.iter().filter(|(rk, _)| rk == lk).collect();
            if matches.is_empty() { want.push((lk.clone(), (Some(*lv), None))); }
            for (_, rv) in matches { want.push((lk.clone(), (Some(*lv), Some(*rv)))); }
        }
        for (rk, rv) in &r {
            if !l.iter().any(|(lk, _)| lk == rk) { want.push((rk.clone(), (None, Some(*rv)))); }
        }
        prop_assert_eq!(sorted(got), sorted(want));
    }

    #[test]
    fn set_operations_match(a in prop::collection::vec(key_strategy(), 0..150), b in prop::collection::vec(key_strategy(), 0..150)) {
        let got = CTX.from_vec(a.clone()).subtract(CTX.from_vec(b.clone())).collect().unwrap();
        let want: Vec<String> = a.iter().filter(|x| !b.contains(x)).cloned().collect();
        prop_assert_eq!(sorted(got), sorted(want));
        let got = CTX.from_vec(a.clone()).intersection(CTX.from_vec(b.clone())).collect().unwrap();
        let want: BTreeSet<String> = a.iter().filter(|x| b.contains(x)).cloned().collect();
        prop_assert_eq!(sorted(got), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn cartesian_matches(a in prop::collection::vec(-9i64..9, 0..40), b in prop::collection::vec((key_strategy(), any::<bool>()), 0..40)) {
        let got = CTX.from_vec(a.clone()).cartesian(CTX.from_vec(b.clone())).collect().unwrap();
        let mut want = Vec::new();
        for x in &a { for y in &b { want.push((*x, y.clone())); } }
        prop_assert_eq!(sorted(got), sorted(want));
    }

    #[test]
    fn zip_with_index_numbers_in_order(xs in prop::collection::vec(key_strategy(), 0..400)) {
        let got = CTX.from_vec(xs.clone()).zip_with_index().collect().unwrap();
        let mut got = got;
        got.sort_by_key(|(_, i)| *i);
        let want: Vec<(String, u64)> = xs.iter().cloned().zip(0u64..).collect();
        prop_assert_eq!(got, want);
        // After a shuffle: every index once, every element once.
        let shuffled = CTX.from_vec(xs.clone()).count_by_value().zip_with_index().collect().unwrap();
        let indices: Vec<u64> = sorted(shuffled.iter().map(|(_, i)| *i).collect());
        prop_assert_eq!(indices, (0..shuffled.len() as u64).collect::<Vec<_>>());
        let distinct: BTreeSet<&String> = xs.iter().collect();
        prop_assert_eq!(shuffled.len(), distinct.len());
    }

    #[test]
    fn samples_are_subsets_fixed_by_their_seed(xs in prop::collection::vec(0u32..1000, 0..500), fraction in 0.0f64..1.0, seed in any::<u64>()) {
        let a = CTX.from_vec(xs.clone()).sample(false, fraction, seed).collect().unwrap();
        let b = CTX.from_vec(xs.clone()).sample(false, fraction, seed).collect().unwrap();
        prop_assert_eq!(sorted(a.clone()), sorted(b));
        let mut left: BTreeMap<u32, usize> = BTreeMap::new();
        for x in &xs { *left.entry(*x).or_default() += 1; }
        for x in &a {
            let n = left.get_mut(x).unwrap();
            prop_assert!(*n > 0);
            *n -= 1;
        }
        let with = CTX.from_vec(xs.clone()).sample(true, fraction * 2.0, seed).collect().unwrap();
        for x in &with { prop_assert!(xs.contains(x)); }
    }
}

#[test]
fn sample_sizes_follow_the_fraction() {
    let xs: Vec<u32> = (0..40_000).collect();
    let n = |replace, fraction, seed| {
        CTX.from_vec(xs.clone())
            .sample(replace, fraction, seed)
            .count()
            .unwrap() as f64
    };
    assert_eq!(n(false, 0.0, 1), 0.0);
    assert_eq!(n(false, 1.0, 1), 40_000.0);
    for (replace, fraction) in [(false, 0.1), (false, 0.5), (true, 0.5), (true, 2.0)] {
        let want = 40_000.0 * fraction;
        let got = n(replace, fraction, 7);
        assert!(
            (got - want).abs() < want * 0.05,
            "{replace} {fraction}: {got} vs {want}"
        );
    }
    assert_ne!(
        sorted(
            CTX.from_vec(xs.clone())
                .sample(false, 0.5, 1)
                .collect()
                .unwrap()
        ),
        sorted(
            CTX.from_vec(xs.clone())
                .sample(false, 0.5, 2)
                .collect()
                .unwrap()
        ),
        "another seed, another sample"
    );
    let err = CTX
        .from_vec(xs)
        .sample(false, 1.5, 1)
        .count()
        .unwrap_err()
        .to_string();
    assert!(err.contains("fraction must be in [0, 1]"), "{err}");
}

#[test]
fn count_approx_distinct_is_close() {
    let xs: Vec<u64> = (0..60_000).map(|i| i % 50_000).collect();
    let got = CTX.from_vec(xs).count_approx_distinct().unwrap() as f64;
    assert!((got - 50_000.0).abs() < 1_000.0, "{got}");
    let words = vec!["a".to_string(), "b".to_string(), "a".to_string()];
    assert_eq!(CTX.from_vec(words).count_approx_distinct().unwrap(), 2);
    assert_eq!(
        CTX.from_vec(Vec::<u8>::new())
            .count_approx_distinct()
            .unwrap(),
        0
    );
}

#[test]
fn foreach_sees_every_element_once() {
    let xs: Vec<u64> = (1..=5000).collect();
    let sum = Arc::new(AtomicU64::new(0));
    let s = sum.clone();
    CTX.from_vec(xs.clone())
        .foreach(move |x| {
            s.fetch_add(x, Ordering::Relaxed);
        })
        .unwrap();
    assert_eq!(sum.load(Ordering::Relaxed), xs.iter().sum::<u64>());

    let (total, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (t, c) = (total.clone(), calls.clone());
    CTX.from_vec(xs.clone())
        .map(|x| x * 2)
        .foreach_partition(move |rows| {
            c.fetch_add(1, Ordering::Relaxed);
            t.fetch_add(rows.sum::<u64>(), Ordering::Relaxed);
        })
        .unwrap();
    assert_eq!(total.load(Ordering::Relaxed), 2 * xs.iter().sum::<u64>());
    assert_eq!(calls.load(Ordering::Relaxed), 3, "one call per partition");

    // A panic in the function fails the job, naming the step.
    let err = CTX
        .from_vec(xs)
        .foreach_partition(|rows| {
            if rows.any(|x| x == 4000) {
                panic!("bad row")
            }
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("foreach_partition") && err.contains("bad row"),
        "{err}"
    );
}

#[test]
fn take_reads_the_first_lines_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let lines: Vec<String> = (0..200_000).map(|i| format!("line {i}")).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let got = CTX.read_text(&[&path]).unwrap().take(5).unwrap();
    assert_eq!(got, lines[..5]);
    assert_eq!(
        CTX.read_text(&[&path]).unwrap().first().unwrap().as_deref(),
        Some("line 0")
    );
}

#[test]
fn repartition_and_partition_by_choose_the_parts() {
    let dir = tempfile::tempdir().unwrap();
    let xs: Vec<u32> = (0..1000).collect();
    let out = dir.path().join("r");
    let summary = CTX
        .from_vec(xs.clone())
        .repartition(5)
        .write_text(&out)
        .unwrap();
    assert_eq!(summary.files, 5);
    let mut all: Vec<u32> = parts(&out)
        .values()
        .flatten()
        .map(|l| l.parse().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, xs);
    let one = CTX
        .from_vec(xs.clone())
        .coalesce(1)
        .write_text(dir.path().join("c"))
        .unwrap();
    assert_eq!(one.files, 1);

    let ps: Vec<(u32, String)> = xs.iter().map(|x| (*x, format!("v{x}"))).collect();
    let out = dir.path().join("p");
    CTX.from_vec(ps)
        .partition_by(4, |k| (*k as usize) % 7)
        .write_text(&out)
        .unwrap();
    let files = parts(&out);
    let mut seen = 0;
    for (name, lines) in &files {
        let part: usize = name.trim_start_matches("part-").parse().unwrap();
        for line in lines {
            let key: usize = line.split('\t').next().unwrap().parse().unwrap();
            assert_eq!(key % 7 % 4, part, "{line} in {name}");
            seen += 1;
        }
    }
    assert_eq!(seen, 1000);
}

#[test]
fn spreading_one_partition_keeps_every_row_for_the_steps_after() {
    // One input partition spread into four: the steps above are planned
    // for four partitions (a shuffle), not for the one there was.
    let one = Context::builder().threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.txt");
    std::fs::write(&path, "apple bob\nax\n").unwrap();
    let got = one
        .read_text(&[&path])
        .unwrap()
        .flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>())
        .map(|w| (w[..1].to_string(), w.len() as u64))
        .partition_by(4, |k: &String| k.len())
        .aggregate_by_key(0u64, |a, n| a + n, |a, b| a + b)
        .collect()
        .unwrap();
    assert_eq!(sorted(got), vec![("a".to_string(), 7), ("b".into(), 3)]);
    let got = one
        .read_text(&[&path])
        .unwrap()
        .flat_map(|_| 0..50u32)
        .repartition(3)
        .map(|x| (x % 5, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    assert_eq!(sorted(got), (0..5).map(|k| (k, 20)).collect::<Vec<_>>());
}

#[test]
fn collect_map_keeps_one_value_per_key() {
    let map: HashMap<String, u32> = CTX
        .from_vec(vec![("a".to_string(), 1u32), ("b".to_string(), 2)])
        .collect_map()
        .unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(map["b"], 2);
}

/// A dataset that counts how many rows its closure produced.
fn counted(ctx: &Context, n: u64) -> (Dataset<(u64, String)>, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let ds = ctx.from_vec((0..n).collect::<Vec<u64>>()).map(move |x| {
        c.fetch_add(1, Ordering::Relaxed);
        (x, format!("row {x} {}", "x".repeat((x % 50) as usize)))
    });
    (ds, calls)
}

#[test]
fn cache_computes_once_and_unpersist_drops() {
    let (ds, calls) = counted(&CTX, 5000);
    let cached = ds.cache();
    assert_eq!(cached.cached_size(), None);
    // A job that stops early keeps nothing.
    assert_eq!(cached.clone().take(3).unwrap().len(), 3);
    assert_eq!(cached.cached_size(), None);
    let before = calls.load(Ordering::Relaxed);
    assert_eq!(cached.clone().count().unwrap(), 5000);
    assert_eq!(calls.load(Ordering::Relaxed) - before, 5000);
    let (memory, disk) = cached.cached_size().unwrap();
    assert!(memory > 0 && disk == 0, "{memory} {disk}");
    let want: u64 = (0..5000).sum();
    let sum = cached.clone().map(|(x, _)| x).reduce(|a, b| a + b).unwrap();
    assert_eq!(sum, Some(want));
    let evens = cached.clone().filter(|(x, _)| x % 2 == 0).count().unwrap();
    assert_eq!(evens, 2500);
    assert!(cached.explain().unwrap().contains("SpateCachedExec"));
    assert_eq!(
        calls.load(Ordering::Relaxed) - before,
        5000,
        "computed once"
    );
    cached.unpersist();
    assert_eq!(cached.cached_size(), None);
    assert_eq!(cached.clone().count().unwrap(), 5000);
    assert_eq!(
        calls.load(Ordering::Relaxed) - before,
        10_000,
        "computed again"
    );
}

#[test]
fn cache_beyond_the_budget_spills_or_is_not_kept() {
    use spate::ops::cache::StorageLevel;
    let ctx = Context::builder()
        .threads(2)
        .batch_size(256)
        .memory_limit(1 << 20)
        .build()
        .unwrap();
    let want = {
        let (ds, _) = counted(&ctx, 60_000);
        sorted(ds.collect().unwrap())
    };
    for level in [
        StorageLevel::MemoryAndDisk,
        StorageLevel::DiskOnly,
        StorageLevel::MemoryOnly,
    ] {
        let (ds, calls) = counted(&ctx, 60_000);
        let cached = ds.persist(level);
        assert_eq!(sorted(cached.clone().collect().unwrap()), want, "{level:?}");
        assert_eq!(sorted(cached.clone().collect().unwrap()), want, "{level:?}");
        let size = cached.cached_size();
        match level {
            StorageLevel::MemoryOnly => {
                assert_eq!(size, None, "does not fit in 1 MiB: not kept");
                assert_eq!(calls.load(Ordering::Relaxed), 120_000);
            }
            _ => {
                let (memory, disk) = size.unwrap();
                assert!(disk > 0, "{level:?}: {memory} {disk}");
                if level == StorageLevel::DiskOnly {
                    assert_eq!(memory, 0);
                }
                assert_eq!(calls.load(Ordering::Relaxed), 60_000, "{level:?}");
            }
        }
    }
}

#[test]
fn a_failed_job_keeps_no_cache() {
    let ds = CTX
        .from_vec((0..1000u64).collect::<Vec<_>>())
        .map(|x| {
            if x == 999 {
                panic!("boom")
            }
            x
        })
        .cache();
    let err = ds.clone().count().unwrap_err().to_string();
    assert!(err.contains("boom"), "{err}");
    assert_eq!(ds.cached_size(), None);
    assert!(ds.count().is_err(), "computed again, failing again");
}

#[test]
fn accumulators_count_each_successful_task_once() {
    let ctx = Context::builder()
        .threads(3)
        .batch_size(16)
        .build()
        .unwrap();
    let odd = ctx.accumulator("odd");
    let (o, p) = (odd.clone(), ctx.accumulator("partitions"));
    let evens = ctx
        .from_vec((0..300i64).collect::<Vec<_>>())
        .filter(move |x| {
            if x % 2 == 1 {
                o.add(1);
            }
            x % 2 == 0
        })
        .count()
        .unwrap();
    assert_eq!((evens, odd.value()), (150, 150));
    ctx.from_vec((0..300i64).collect::<Vec<_>>())
        .foreach_partition(move |rows| p.add(rows.count() as i64))
        .unwrap();
    assert_eq!(ctx.accumulator("partitions").value(), 300);

    // A failed task's additions never count: each partition (100 rows)
    // counts whole or not at all.
    let seen = ctx.accumulator("seen");
    let s = seen.clone();
    let err = ctx
        .from_vec((0..300i64).collect::<Vec<_>>())
        .map(move |x| {
            s.add(1);
            if x == 250 {
                panic!("row 250")
            }
            x
        })
        .count()
        .unwrap_err();
    assert!(err.to_string().contains("row 250"), "{err}");
    assert_eq!(seen.value() % 100, 0, "{}", seen.value());
    assert!(seen.value() <= 200);

    // EXPLAIN ANALYZE shows a step's accumulator amounts.
    let a = ctx.accumulator("shown");
    let text = ctx
        .from_vec(vec![1u8, 2, 3])
        .map(move |x| {
            a.add(2);
            x
        })
        .explain_analyze()
        .unwrap();
    assert!(text.contains("shown"), "{text}");
    assert_eq!(ctx.accumulator("shown").value(), 6);
}

#[test]
fn broadcast_values_are_read_by_closures() {
    let table: BTreeMap<u32, String> = (0..100).map(|i| (i, format!("n{i}"))).collect();
    let names = CTX.broadcast(table.clone()).unwrap();
    let got = CTX
        .from_vec((0..200u32).collect::<Vec<_>>())
        .flat_map(move |n| names.value().get(&n).cloned())
        .collect()
        .unwrap();
    let want: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    assert_eq!(sorted(got), sorted(want));
}

#[test]
fn reducers_run_in_their_task_scope() {
    let ctx = Context::builder().threads(3).build().unwrap();
    let groups = ctx.accumulator("groups");
    let g = groups.clone();
    let n = ctx
        .from_vec((0..500u32).map(|i| (i % 17, i)).collect::<Vec<_>>())
        .group_by_key()
        .map_groups(move |k, vs| {
            g.add(1);
            (*k, vs.count())
        })
        .count()
        .unwrap();
    assert_eq!((n, groups.value()), (17, 17));
}

#[test]
fn a_cache_that_spills_keeps_the_order_of_its_rows() {
    let ctx = Context::builder()
        .threads(2)
        .batch_size(128)
        .memory_limit(1 << 20)
        .build()
        .unwrap();
    let xs: Vec<(u64, String)> = (0..40_000u64)
        .map(|i| ((i * 7919) % 40_000, "y".repeat((i % 40) as usize)))
        .collect();
    let cached = ctx.from_vec(xs).sort_by(|(k, _)| *k, true).cache();
    assert_eq!(cached.clone().count().unwrap(), 40_000);
    let (_, disk) = cached.cached_size().unwrap();
    assert!(disk > 0, "the test needs a spill");
    let keys: Vec<u64> = cached
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, (0..40_000).collect::<Vec<_>>());
}

#[test]
fn values_that_are_none_are_kept_by_cogroups() {
    let a = vec![("k".to_string(), None), ("k".to_string(), Some(1i64))];
    let b = vec![("k".to_string(), None::<i64>), ("j".to_string(), None)];
    let got = CTX
        .from_vec(a.clone())
        .cogroup(CTX.from_vec(b.clone()))
        .collect()
        .unwrap();
    type Both = (Vec<Option<i64>>, Vec<Option<i64>>);
    let got: BTreeMap<String, Both> = got
        .into_iter()
        .map(|(k, (v, w))| (k, (sorted(v), sorted(w))))
        .collect();
    assert_eq!(got["k"], (vec![None, Some(1)], vec![None]));
    assert_eq!(got["j"], (vec![], vec![None]));
    let three = CTX
        .from_vec(a)
        .cogroup3(CTX.from_vec(b.clone()), CTX.from_vec(b))
        .collect()
        .unwrap();
    assert_eq!(three.len(), 2);
    for (k, (v, w, x)) in three {
        assert_eq!(v.len(), if k == "k" { 2 } else { 0 });
        assert_eq!((w.len(), x.len()), (1, 1));
    }
}

#[test]
fn whole_text_files_give_each_file_whole() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut want = BTreeMap::new();
    for i in 0..7 {
        let path = dir.path().join(format!("f{i}.txt"));
        let text = format!("line one of {i}\r\nline two\n{}", "x".repeat(i * 1000));
        std::fs::write(&path, &text).unwrap();
        want.insert(path.to_string_lossy().into_owned(), text);
    }
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    want.insert(empty.to_string_lossy().into_owned(), String::new());
    let gz = dir.path().join("z.txt.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(b"compressed\ncontent\n").unwrap();
    enc.finish().unwrap();
    want.insert(
        gz.to_string_lossy().into_owned(),
        "compressed\ncontent\n".into(),
    );
    let got: BTreeMap<String, String> = CTX
        .whole_text_files(&[dir.path()])
        .unwrap()
        .collect()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got, want);

    std::fs::write(dir.path().join("bad.txt"), b"ok\n\xff\xfe").unwrap();
    let err = CTX
        .whole_text_files(&[dir.path().join("bad.txt")])
        .unwrap()
        .count()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.txt") && err.contains("byte offset 3"),
        "{err}"
    );
}
