//! Every operator against a plain in-memory reference, on random inputs
//! (including empty input, one huge group and non-ASCII strings).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

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
        1 => "[äöüé€中文🙂 ]{1,3}",
        1 => Just("hot".to_string()),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, i64)>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec(Just(("same".to_string(), 1i64)), 0..600),
        6 => prop::collection::vec((key_strategy(), -1000i64..1000), 0..300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn closures_fuse_like_iterators(xs in prop::collection::vec(-50i64..50, 0..400)) {
        let got = CTX.from_vec(xs.clone())
            .map(|x| x * 3)
            .filter(|x| x % 2 == 0)
            .flat_map(|x| vec![x; (x.rem_euclid(3)) as usize])
            .key_by(|x| x.rem_euclid(7))
            .map_values(|x| x.to_string())
            .collect().unwrap();
        let want: Vec<(i64, String)> = xs.iter().map(|x| x * 3).filter(|x| x % 2 == 0)
            .flat_map(|x| vec![x; (x.rem_euclid(3)) as usize])
            .map(|x| (x.rem_euclid(7), x.to_string())).collect();
        prop_assert_eq!(sorted(got), sorted(want));
    }

    #[test]
    fn flat_map_lines_matches_flat_map(lines in prop::collection::vec("[a-zA-Z' ,.äé中]{0,60}", 0..400)) {
        let want: Vec<Word> = sorted(lines.iter().flat_map(|l| words(l)).collect());
        // Lines read from their batches (borrowed), and lines a closure made.
        let borrowed = CTX.from_vec(lines.clone())
            .flat_map_lines(|line, out| out.extend(words(line)))
            .collect().unwrap();
        prop_assert_eq!(sorted(borrowed), want.clone());
        let made = CTX.from_vec(lines.clone())
            .map(|l| l.to_uppercase())
            .flat_map_lines(|line, out| out.extend(words(line)))
            .collect().unwrap();
        let upper: Vec<Word> = sorted(lines.iter().flat_map(|l| words(&l.to_uppercase()).collect::<Vec<_>>()).collect());
        prop_assert_eq!(sorted(made), upper);
        let counted: BTreeMap<Word, u64> = CTX.from_vec(lines)
            .flat_map_lines(|line, out| out.extend(words(line)))
            .count_by_value().collect().unwrap().into_iter().collect();
        let mut want_counts = BTreeMap::new();
        for w in want { *want_counts.entry(w).or_insert(0u64) += 1; }
        prop_assert_eq!(counted, want_counts);
    }

    #[test]
    fn count_by_value_matches(xs in prop::collection::vec(key_strategy(), 0..400)) {
        let got: BTreeMap<String, u64> = CTX.from_vec(xs.clone()).count_by_value().collect().unwrap().into_iter().collect();
        let mut want = BTreeMap::new();
        for x in xs { *want.entry(x).or_insert(0u64) += 1; }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn reduce_by_key_matches(ps in pairs()) {
        let got = CTX.from_vec(ps.clone()).reduce_by_key(|a, b| a + b).collect().unwrap();
        let mut want = BTreeMap::new();
        for (k, v) in ps { *want.entry(k).or_insert(0i64) += v; }
        prop_assert_eq!(sorted(got), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn combine_per_key_matches(ps in pairs()) {
        let got = CTX.from_vec(ps.clone()).combine_per_key(MinMaxCount).collect().unwrap();
        let mut want: BTreeMap<String, (i64, i64, u64)> = BTreeMap::new();
        for (k, v) in ps {
            let e = want.entry(k).or_insert((i64::MAX, i64::MIN, 0));
            e.0 = e.0.min(v); e.1 = e.1.max(v); e.2 += 1;
        }
        prop_assert_eq!(sorted(got), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn group_by_key_matches(ps in pairs()) {
        let got: Vec<(String, Vec<i64>)> = CTX.from_vec(ps.clone()).group_by_key().collect_lists()
            .map(|(k, vs)| (k, sorted(vs))).collect().unwrap();
        let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, v) in ps { want.entry(k).or_default().push(v); }
        let want: Vec<_> = want.into_iter().map(|(k, vs)| (k, sorted(vs))).collect();
        prop_assert_eq!(sorted(got), want);
    }

    #[test]
    fn distinct_union_count_match(a in prop::collection::vec(key_strategy(), 0..200), b in prop::collection::vec(key_strategy(), 0..200)) {
        let got = CTX.from_vec(a.clone()).union(CTX.from_vec(b.clone())).distinct().collect().unwrap();
        let want: BTreeSet<String> = a.iter().chain(&b).cloned().collect();
        prop_assert_eq!(sorted(got), want.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(CTX.from_vec(a.clone()).union(CTX.from_vec(b.clone())).count().unwrap(), (a.len() + b.len()) as u64);
    }

    #[test]
    fn joins_match(l in pairs(), r in pairs()) {
        let inner = CTX.from_vec(l.clone()).join(CTX.from_vec(r.clone())).collect().unwrap();
        let mut want = Vec::new();
        for (lk, lv) in &l { for (rk, rv) in &r { if lk == rk { want.push((lk.clone(), (*lv, *rv))); } } }
        prop_assert_eq!(sorted(inner), sorted(want));

        let left = CTX.from_vec(l.clone()).left_join(CTX.from_vec(r.clone())).collect().unwrap();
        let mut want = Vec::new();
        for (lk, lv) in &l {
            let matches: Vec<_> = r.iter().filter(|(rk, _)| rk == lk).collect();
            if matches.is_empty() { want.push((lk.clone(), (*lv, None))); }
            for (_, rv) in matches { want.push((lk.clone(), (*lv, Some(*rv)))); }
        }
        prop_assert_eq!(sorted(left), sorted(want));
    }

    #[test]
    fn sort_and_top_match(xs in prop::collection::vec((key_strategy(), 0u32..50), 0..300), n in 0usize..8) {
        let got = CTX.from_vec(xs.clone()).sort_by(|(k, _)| k.clone(), true).collect().unwrap();
        let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
        let mut want: Vec<&String> = xs.iter().map(|(k, _)| k).collect();
        want.sort();
        prop_assert_eq!(keys, want);
        prop_assert_eq!(sorted(got.clone()), sorted(xs.clone()));

        let desc = CTX.from_vec(xs.clone()).sort_by(|(_, v)| *v, false).collect().unwrap();
        prop_assert!(desc.windows(2).all(|w| w[0].1 >= w[1].1));

        let top = CTX.from_vec(xs.clone()).top_by(n, |(_, v)| *v).collect().unwrap();
        let mut vals: Vec<u32> = xs.iter().map(|(_, v)| *v).collect();
        vals.sort_by(|a, b| b.cmp(a));
        vals.truncate(n);
        prop_assert_eq!(top.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vals);

        let top = CTX.from_vec(xs.clone()).top(n).collect().unwrap();
        let mut all = xs.clone();
        all.sort_by(|a, b| b.cmp(a));
        all.truncate(n);
        prop_assert_eq!(top, all);
    }
}

/// A combiner with a tuple accumulator, to exercise `CombineFn` fully.
struct MinMaxCount;

impl CombineFn<i64> for MinMaxCount {
    type Acc = (i64, i64, u64);
    type Output = (i64, i64, u64);
    fn create(&self) -> Self::Acc {
        (i64::MAX, i64::MIN, 0)
    }
    fn add(&self, acc: &mut Self::Acc, v: i64) {
        acc.0 = acc.0.min(v);
        acc.1 = acc.1.max(v);
        acc.2 += 1;
    }
    fn merge(&self, acc: &mut Self::Acc, o: Self::Acc) {
        acc.0 = acc.0.min(o.0);
        acc.1 = acc.1.max(o.1);
        acc.2 += o.2;
    }
    fn extract(&self, acc: Self::Acc) -> Self::Output {
        acc
    }
}

#[test]
fn max_by_and_structs() {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sale {
        shop: String,
        amount: f64,
        items: Vec<u32>,
    }
    let sales = vec![
        Sale {
            shop: "a".into(),
            amount: 2.5,
            items: vec![1],
        },
        Sale {
            shop: "b".into(),
            amount: 9.0,
            items: vec![],
        },
        Sale {
            shop: "a".into(),
            amount: 1.0,
            items: vec![2, 3],
        },
    ];
    let best = CTX
        .from_vec(sales.clone())
        .max_by(|s| (s.amount * 100.0) as i64)
        .unwrap();
    assert_eq!(best, Some(sales[1].clone()));
    let per_shop = CTX
        .from_vec(sales)
        .key_by(|s| s.shop.clone())
        .map_values(|s| s.amount)
        .combine_per_key(Sum)
        .collect()
        .unwrap();
    assert_eq!(
        sorted_f(per_shop),
        vec![("a".to_string(), 3.5), ("b".to_string(), 9.0)]
    );
}

fn sorted_f(mut v: Vec<(String, f64)>) -> Vec<(String, f64)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn empty_inputs_everywhere() {
    let empty: Vec<(String, i64)> = Vec::new();
    assert!(
        CTX.from_vec(empty.clone())
            .reduce_by_key(|a, b| a + b)
            .collect()
            .unwrap()
            .is_empty()
    );
    assert!(
        CTX.from_vec(empty.clone())
            .group_by_key()
            .collect_lists()
            .collect()
            .unwrap()
            .is_empty()
    );
    assert_eq!(CTX.from_vec(empty.clone()).count().unwrap(), 0);
    assert!(CTX.from_vec(empty).top(3).collect().unwrap().is_empty());
}

#[test]
fn writes_text_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![("a\"b".to_string(), 1u64), ("ü".to_string(), 2)];
    let json = CTX
        .from_vec(rows.clone())
        .write_jsonl(dir.path().join("j"))
        .unwrap();
    assert_eq!(json.rows, 2);
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("j")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            lines.extend(
                std::fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed[0]["0"], "a\"b");
    assert_eq!(parsed[1]["1"], 2);
    assert!(dir.path().join("j/_SUCCESS").exists());

    let text = CTX
        .from_vec(rows)
        .sort_by(|(k, _)| k.clone(), true)
        .write_text(dir.path().join("t"))
        .unwrap();
    assert_eq!(text.files, 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("t/part-00000")).unwrap(),
        "a\"b\t1\nü\t2\n"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Beam's global combines give exactly one element, also for an empty
    /// input: `Count::globally` 0, `Combine::globally` the combiner's
    /// result for no values.
    #[test]
    fn global_combines_give_one_element(xs in prop::collection::vec(-50i64..50, 0..300)) {
        let p = Pipeline::with_context(CTX.clone());
        let input = p.apply("Create", Create(xs.clone()));
        let count = input.clone().apply("Count", Count::globally()).into_dataset().collect().unwrap();
        prop_assert_eq!(count, vec![xs.len() as u64]);
        let combined = input.apply("MinMax", Combine::globally(MinMaxCount)).into_dataset().collect().unwrap();
        let expected = xs.iter().fold(MinMaxCount.create(), |mut acc, x| {
            MinMaxCount.add(&mut acc, *x);
            acc
        });
        prop_assert_eq!(combined, vec![expected]);
    }
}

#[test]
fn global_combines_on_empty_input() {
    let p = Pipeline::with_context(CTX.clone());
    let empty = p.apply("Create", Create(Vec::<i64>::new()));
    let count = empty.clone().apply("Count", Count::globally());
    spate::testing::assert_that(&count).contains_in_any_order([0u64]);
    let sum = empty.apply("Sum", Combine::globally(Sum));
    spate::testing::assert_that(&sum).contains_in_any_order([0i64]);
}

/// A reducer's outputs go on while it is still in its group: a hot key whose
/// reducer emits 200k values is never held whole (the first output is seen
/// downstream long before the reducer is done).
#[test]
fn reducer_outputs_stream_within_one_group() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ctx = Context::builder().threads(2).build().unwrap();
    let emitted = Arc::new(AtomicUsize::new(0));
    let first_seen_at = Arc::new(AtomicUsize::new(usize::MAX));
    const N: usize = 200_000;
    let (e, f) = (emitted.clone(), first_seen_at.clone());
    let out = ctx
        .from_vec(vec![("hot".to_string(), 1u64)])
        .group_by_key()
        .flat_map_groups(move |_k, _vs, emit: &mut dyn FnMut(u64)| {
            for i in 0..N as u64 {
                e.fetch_add(1, Ordering::SeqCst);
                emit(i);
            }
        })
        .map(move |v| {
            let _ = f.compare_exchange(
                usize::MAX,
                emitted.load(Ordering::SeqCst),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            v
        })
        .count()
        .unwrap();
    assert_eq!(out, N as u64);
    let at = first_seen_at.load(Ordering::SeqCst);
    assert!(
        at < N / 2,
        "first output seen after {at} of {N} were emitted"
    );
}

/// A combiner judged not to reduce (its first 131 072 words nearly all
/// distinct) empties its table every few thousand keys, within batches;
/// when words repeat again its table grows again. Counts stay exact
/// through every change, words of every packed length and longer.
#[test]
fn counts_stay_exact_when_a_combiner_stops_combining() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let word = |i: u64| {
        let mut w = String::new();
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
        for _ in 0..(3 + i % 15) {
            w.push(char::from(b'a' + (x % 26) as u8));
            x /= 26;
        }
        w
    };
    let mut lines = Vec::new();
    let mut next = 0u64;
    // Distinct words, then a few hundred repeating ones, then distinct again.
    for phase in [40_000u64, 30_000, 40_000] {
        for l in 0..phase {
            let line: Vec<String> = (0..8)
                .map(|j| {
                    if phase == 30_000 {
                        word(1 << 40 | ((l * 8 + j) % 300))
                    } else {
                        next += 1;
                        word(next)
                    }
                })
                .collect();
            lines.push(line.join(" "));
        }
    }
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for l in &lines {
        for w in l.split(' ') {
            *want.entry(w.to_string()).or_default() += 1;
        }
    }
    let got: BTreeMap<String, u64> = ctx
        .from_vec(lines)
        .flat_map_lines(|line, out| line.split(' ').for_each(|w| out.push(w.to_string())))
        .count_by_value()
        .collect()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "counts differ");
}
