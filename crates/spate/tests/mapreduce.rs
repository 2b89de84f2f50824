//! MapReduce semantics: keys sorted within each reducer (ascending or
//! descending), one reducer call per key, reducer count = part files, task
//! hooks, multi-step and map-only steps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use spate::mapreduce::MRMapStep;
use spate::prelude::*;

/// Emits `(word, 1)`; the reducer records the keys in the order it sees them.
#[derive(Clone)]
struct Ordered {
    descending: bool,
    reducers: usize,
    /// Records seen by this map task (mapper_init resets, mapper_final emits).
    seen: u64,
}

impl MRStep for Ordered {
    type Input = String;
    type Key = String;
    type Value = u64;
    type Output = (String, u64);

    fn mapper_init(&mut self) {
        self.seen = 0;
    }
    fn mapper(&mut self, line: String, out: &mut Emitter<'_, (String, u64)>) {
        self.seen += 1;
        for w in line.split_whitespace() {
            out.emit_kv(w.to_string(), 1);
        }
    }
    fn mapper_final(&mut self, out: &mut Emitter<'_, (String, u64)>) {
        out.emit_kv("~records".to_string(), self.seen);
    }
    fn has_combiner(&self) -> bool {
        true
    }
    fn combiner(
        &mut self,
        k: &String,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (String, u64)>,
    ) {
        out.emit_kv(k.clone(), vs.sum());
    }
    fn reducer(
        &mut self,
        k: &String,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (String, u64)>,
    ) {
        out.emit((k.clone(), vs.sum()));
    }
    fn num_reducers(&self) -> Option<usize> {
        Some(self.reducers)
    }
    fn sort_descending(&self) -> bool {
        self.descending
    }
}

struct Job(Ordered);

impl MRJob for Job {
    type Input = String;
    type Output = (String, u64);
    fn steps(&self) -> Steps<String, (String, u64)> {
        Steps::of(self.0.clone())
    }
}

fn lines() -> Vec<String> {
    (0..500)
        .map(|i| format!("k{} k{} shared", i % 37, (i * 7) % 53))
        .collect()
}

#[test]
fn keys_reach_one_reducer_in_order_and_hooks_run_per_task() {
    let ctx = Context::builder()
        .threads(3)
        .batch_size(32)
        .build()
        .unwrap();
    for descending in [false, true] {
        let job = Job(Ordered {
            descending,
            reducers: 1,
            seen: 0,
        });
        let out = ctx.run_job(&job, ctx.from_vec(lines())).collect().unwrap();
        let keys: Vec<&String> = out.iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        if descending {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "descending={descending}");
        let records = out.iter().find(|(k, _)| k == "~records").unwrap().1;
        assert_eq!(
            records, 500,
            "mapper_final of every task counted its records"
        );
        assert_eq!(out.iter().find(|(k, _)| k == "shared").unwrap().1, 500);
    }
}

#[test]
fn reducers_become_sorted_part_files() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let job = Job(Ordered {
        descending: false,
        reducers: 3,
        seen: 0,
    });
    let summary = ctx
        .run_job(&job, ctx.from_vec(lines()))
        .write_text(&out)
        .unwrap();
    assert_eq!(summary.files, 3);
    let mut all = Vec::new();
    for i in 0..3 {
        let text = std::fs::read_to_string(out.join(format!("part-{i:05}"))).unwrap();
        let keys: Vec<String> = text
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "part {i} sorted by key");
        all.extend(keys);
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "each key in exactly one part file");
}

#[derive(Clone)]
struct Lengths;

impl MRMapStep for Lengths {
    type Input = (String, u64);
    type Output = (u64, String);
    fn mapper(&mut self, (k, n): (String, u64), out: &mut Emitter<'_, (u64, String)>) {
        if !k.starts_with('~') {
            out.emit((n, k));
        }
    }
}

struct TwoSteps;

impl MRJob for TwoSteps {
    type Input = String;
    type Output = (u64, String);
    fn steps(&self) -> Steps<String, (u64, String)> {
        Steps::of(Ordered {
            descending: false,
            reducers: 2,
            seen: 0,
        })
        .then_map_only(Lengths)
    }
}

#[test]
fn multi_step_with_map_only_step() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut out = ctx
        .run_job(&TwoSteps, ctx.from_vec(lines()))
        .collect()
        .unwrap();
    out.sort();
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for l in lines() {
        for w in l.split_whitespace() {
            *want.entry(w.to_string()).or_default() += 1;
        }
    }
    let mut want: Vec<(u64, String)> = want.into_iter().map(|(k, n)| (n, k)).collect();
    want.sort();
    assert_eq!(out, want);
    let fresh = Context::builder().threads(2).build().unwrap();
    let plan = fresh
        .run_job(&TwoSteps, fresh.from_vec(lines()))
        .explain()
        .unwrap();
    assert!(
        plan.contains("step-1/reducer") && plan.contains("step-2/mapper"),
        "{plan}"
    );
}

/// Sends key `k<n>` to reducer `n % reducers` (a custom partitioner).
#[derive(Clone)]
struct ByNumber(Ordered);

impl MRStep for ByNumber {
    type Input = String;
    type Key = String;
    type Value = u64;
    type Output = (String, u64);

    fn mapper(&mut self, line: String, out: &mut Emitter<'_, (String, u64)>) {
        self.0.mapper(line, out)
    }
    fn reducer(
        &mut self,
        k: &String,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (String, u64)>,
    ) {
        self.0.reducer(k, vs, out)
    }
    fn num_reducers(&self) -> Option<usize> {
        Some(3)
    }
    fn has_partitioner(&self) -> bool {
        true
    }
    fn partition(&self, key: &String, num_reducers: usize) -> usize {
        key.trim_start_matches('k').parse::<usize>().unwrap_or(0) % num_reducers
    }
    fn sort_descending(&self) -> bool {
        true
    }
}

struct Partitioned;

impl MRJob for Partitioned {
    type Input = String;
    type Output = (String, u64);
    fn steps(&self) -> Steps<String, (String, u64)> {
        Steps::of(ByNumber(Ordered {
            descending: true,
            reducers: 3,
            seen: 0,
        }))
    }
}

#[test]
fn custom_partitioner_chooses_the_part_file() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = ctx
        .run_job(&Partitioned, ctx.from_vec(lines()))
        .write_text(&out)
        .unwrap();
    assert_eq!(summary.files, 3);
    let mut total = 0;
    for p in 0..3 {
        let text = std::fs::read_to_string(out.join(format!("part-{p:05}"))).unwrap();
        let keys: Vec<String> = text
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        for k in &keys {
            let n = k.trim_start_matches('k').parse::<usize>().unwrap_or(0);
            assert_eq!(n % 3, p, "key {k} in part {p}");
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(keys, sorted, "part {p} sorted descending");
        total += keys.len();
    }
    assert_eq!(total, 54, "53 distinct k-keys and 'shared'");
}

/// A combiner that moves the counts of the `hot` lists it folds to the key
/// `moved`, leaving `hot` without values: whatever the number of combiner
/// runs (it may fold long lists early, map-side), no count is lost or
/// doubled, and it is never called without values.
#[derive(Clone)]
struct Rekey;

impl MRStep for Rekey {
    type Input = u64;
    type Key = String;
    type Value = u64;
    type Output = (String, u64);

    fn mapper(&mut self, i: u64, out: &mut Emitter<'_, (String, u64)>) {
        out.emit_kv("hot".into(), 1);
        if i.is_multiple_of(10) {
            out.emit_kv("cold".into(), 1);
        }
    }
    fn has_combiner(&self) -> bool {
        true
    }
    fn combiner(
        &mut self,
        k: &String,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (String, u64)>,
    ) {
        let first = vs.next().expect("a combiner never sees an empty list");
        let sum: u64 = first + vs.sum::<u64>();
        match k.as_str() {
            "hot" => out.emit_kv("moved".into(), sum),
            _ => out.emit_kv(k.clone(), sum),
        }
    }
    fn reducer(
        &mut self,
        k: &String,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (String, u64)>,
    ) {
        out.emit((k.clone(), vs.sum()));
    }
}

struct RekeyJob;

impl MRJob for RekeyJob {
    type Input = u64;
    type Output = (String, u64);
    fn steps(&self) -> Steps<u64, (String, u64)> {
        Steps::of(Rekey)
    }
}

#[test]
fn combiners_may_run_many_times_and_lose_nothing() {
    // One task whose `hot` values are all taken by its last fold (64 000 is
    // a multiple of the values a key holds before a fold), and two tasks
    // with values left over.
    for (threads, n) in [(1, 64_000u64), (2, 100_000)] {
        let ctx = Context::builder().threads(threads).build().unwrap();
        let out = ctx
            .run_job(&RekeyJob, ctx.from_vec((0..n).collect()))
            .collect()
            .unwrap();
        let get = |k: &str| out.iter().find(|(w, _)| w == k).map_or(0, |(_, c)| *c);
        assert_eq!(get("cold"), n / 10);
        assert_eq!(get("hot") + get("moved"), n);
        // Long lists were folded early: many more combiner runs than the
        // map tasks' final ones.
        assert!(get("moved") > 100, "{out:?}");
    }
}

/// A combiner that gives back every value it is handed (it reduces
/// nothing): map tasks must still pass every value on, once.
#[derive(Clone)]
struct Echo;

impl MRStep for Echo {
    type Input = u64;
    type Key = u64;
    type Value = u64;
    type Output = (u64, u64);

    fn mapper(&mut self, i: u64, out: &mut Emitter<'_, (u64, u64)>) {
        out.emit_kv(i % 3, i);
    }
    fn has_combiner(&self) -> bool {
        true
    }
    fn combiner(
        &mut self,
        k: &u64,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (u64, u64)>,
    ) {
        for v in vs {
            out.emit_kv(*k, v);
        }
    }
    fn reducer(
        &mut self,
        k: &u64,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (u64, u64)>,
    ) {
        let mut vs: Vec<u64> = vs.collect();
        vs.sort_unstable();
        let want: Vec<u64> = (0..10_000).filter(|i| i % 3 == *k).collect();
        assert_eq!(vs, want, "key {k}: every value once");
        out.emit((*k, vs.len() as u64));
    }
}

struct EchoJob;

impl MRJob for EchoJob {
    type Input = u64;
    type Output = (u64, u64);
    fn steps(&self) -> Steps<u64, (u64, u64)> {
        Steps::of(Echo)
    }
}

/// The sorted output of `job` over `0..n`, run on `threads` threads.
fn run_sorted<J>(job: &J, n: u64, threads: usize) -> Vec<J::Output>
where
    J: MRJob<Input = u64>,
    J::Output: Ord,
{
    let ctx = Context::builder().threads(threads).build().unwrap();
    let mut out = ctx
        .run_job(job, ctx.from_vec((0..n).collect()))
        .collect()
        .unwrap();
    out.sort_unstable();
    out
}

#[test]
fn a_combiner_that_reduces_nothing_loses_and_doubles_nothing() {
    for threads in [1, 2] {
        let out = run_sorted(&EchoJob, 10_000, threads);
        assert_eq!(out, [(0, 3334), (1, 3333), (2, 3333)]);
    }
}

/// A top-8 combiner (it keeps a map task's whole group of 8 values): its keys' values must still be combined in the map tasks, not
/// leave them about one per value.
#[derive(Clone)]
struct Top8;

impl MRStep for Top8 {
    type Input = u64;
    type Key = u64;
    type Value = u64;
    type Output = (u64, Vec<u64>);

    fn mapper(&mut self, i: u64, out: &mut Emitter<'_, (u64, u64)>) {
        out.emit_kv(i % 3, i);
    }
    fn has_combiner(&self) -> bool {
        true
    }
    fn combiner(
        &mut self,
        k: &u64,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (u64, u64)>,
    ) {
        for v in top8(vs.collect()) {
            out.emit_kv(*k, v);
        }
    }
    fn reducer(
        &mut self,
        k: &u64,
        vs: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (u64, Vec<u64>)>,
    ) {
        let vs: Vec<u64> = vs.collect();
        // Combined map-side: a few values per map task reach the reducer.
        assert!(vs.len() <= 8 * 16, "key {k}: {} values", vs.len());
        out.emit((*k, top8(vs)));
    }
}

/// The 8 largest of `vs`, largest first.
fn top8(mut vs: Vec<u64>) -> Vec<u64> {
    vs.sort_unstable_by(|a, b| b.cmp(a));
    vs.truncate(8);
    vs
}

struct Top8Job;

impl MRJob for Top8Job {
    type Input = u64;
    type Output = (u64, Vec<u64>);
    fn steps(&self) -> Steps<u64, (u64, Vec<u64>)> {
        Steps::of(Top8)
    }
}

#[test]
fn a_combiner_that_keeps_most_of_a_group_still_combines() {
    for threads in [1, 2] {
        let out = run_sorted(&Top8Job, 30_000, threads);
        let want: Vec<(u64, Vec<u64>)> = (0..3)
            .map(|k| {
                (
                    k,
                    (0..30_000u64)
                        .rev()
                        .filter(|i| i % 3 == k)
                        .take(8)
                        .collect(),
                )
            })
            .collect();
        assert_eq!(out, want);
    }
}
