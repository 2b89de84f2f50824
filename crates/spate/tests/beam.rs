//! Beam's vocabulary on the Pipeline face — combiners, grouping, layout,
//! one run for every sink, all-or-nothing publishing — against plain
//! in-memory references.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use spate::pipeline::{
    CoGroupByKey, Distinct, Flatten, Keys, KvSwap, Max, Min, Partition, Reshuffle, Sample, ToList,
    Values,
};
use spate::prelude::*;

fn pipeline() -> Pipeline {
    Pipeline::with_context(
        Context::builder()
            .threads(3)
            .batch_size(32)
            .build()
            .unwrap(),
    )
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn collect<T: Data>(pc: &PCollection<T>) -> Vec<T> {
    pc.dataset().clone().collect().unwrap()
}

fn pairs() -> impl Strategy<Value = Vec<(String, i64)>> {
    prop::collection::vec(("[a-d]{1}", -100i64..100), 0..150)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn global_combiners_match(xs in prop::collection::vec(-1000i64..1000, 0..200)) {
        let p = pipeline();
        let input = p.apply("In", Create(xs.clone()));
        let sum = input.clone().apply("Sum", Sum::globally());
        let min = input.clone().apply("Min", Min::globally());
        let max = input.clone().apply("Max", Max::globally());
        let mean = input.clone().apply("Mean", Mean::globally());
        let largest = input.clone().apply("Largest", Top::largest(3));
        let smallest = input.clone().apply("Smallest", Top::smallest(3));
        let list = input.clone().apply("List", ToList);
        let sample = input.clone().apply("Sample", Sample::fixed_size_globally(5));
        let count = input.apply("Count", Count::globally());
        prop_assert_eq!(collect(&sum), vec![xs.iter().sum::<i64>()]);
        prop_assert_eq!(collect(&min), vec![xs.iter().min().copied()]);
        prop_assert_eq!(collect(&max), vec![xs.iter().max().copied()]);
        let m = collect(&mean)[0];
        if xs.is_empty() { prop_assert!(m.is_nan()); }
        else { prop_assert!((m - xs.iter().sum::<i64>() as f64 / xs.len() as f64).abs() < 1e-9); }
        let mut want = xs.clone();
        want.sort_by(|a, b| b.cmp(a));
        prop_assert_eq!(collect(&largest), vec![want.iter().take(3).copied().collect::<Vec<_>>()]);
        want.reverse();
        prop_assert_eq!(collect(&smallest), vec![want.iter().take(3).copied().collect::<Vec<_>>()]);
        prop_assert_eq!(sorted(collect(&list).remove(0)), sorted(xs.clone()));
        let s = collect(&sample).remove(0);
        prop_assert_eq!(s.len(), xs.len().min(5));
        let mut left: BTreeMap<i64, usize> = BTreeMap::new();
        for x in &xs { *left.entry(*x).or_default() += 1; }
        for x in &s { let n = left.get_mut(x).unwrap(); prop_assert!(*n > 0); *n -= 1; }
        prop_assert_eq!(collect(&count), vec![xs.len() as u64]);
    }

    #[test]
    fn per_key_combiners_match(ps in pairs()) {
        let p = pipeline();
        let input = p.apply("In", Create(ps.clone()));
        let mut groups: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, v) in &ps { groups.entry(k.clone()).or_default().push(*v); }
        let sums = collect(&input.clone().apply("Sum", Sum::per_key()));
        prop_assert_eq!(sorted(sums), groups.iter().map(|(k, v)| (k.clone(), v.iter().sum::<i64>())).collect::<Vec<_>>());
        let mins = collect(&input.clone().apply("Min", Min::per_key()));
        prop_assert_eq!(sorted(mins), groups.iter().map(|(k, v)| (k.clone(), v.iter().min().copied())).collect::<Vec<_>>());
        let tops = collect(&input.clone().apply("Top", Top::largest_per_key(2)));
        let want: Vec<(String, Vec<i64>)> = groups.iter().map(|(k, v)| {
            let mut v = v.clone(); v.sort_by(|a, b| b.cmp(a)); v.truncate(2); (k.clone(), v)
        }).collect();
        prop_assert_eq!(sorted(tops), want);
        let samples = collect(&input.clone().apply("Sample", Sample::fixed_size_per_key(2)));
        for (k, s) in &samples { prop_assert_eq!(s.len(), groups[k].len().min(2)); }
        let keys = collect(&input.clone().apply("Keys", Keys));
        prop_assert_eq!(sorted(keys), sorted(ps.iter().map(|(k, _)| k.clone()).collect()));
        let values = collect(&input.clone().apply("Values", Values));
        prop_assert_eq!(sorted(values), sorted(ps.iter().map(|(_, v)| *v).collect()));
        let swapped = collect(&input.apply("Swap", KvSwap));
        prop_assert_eq!(sorted(swapped), sorted(ps.iter().map(|(k, v)| (*v, k.clone())).collect()));
    }

    #[test]
    fn grouping_transforms_match(a in pairs(), b in pairs()) {
        let p = pipeline();
        let (pa, pb) = (p.apply("A", Create(a.clone())), p.apply("B", Create(b.clone())));
        let joined = collect(&p.apply("Join", CoGroupByKey::new().and("a", pa.clone()).and("b", pb.clone())));
        let mut want: BTreeMap<String, BTreeMap<String, Vec<i64>>> = BTreeMap::new();
        for (tag, input) in [("a", &a), ("b", &b)] {
            for (k, _) in a.iter().chain(b.iter()) {
                want.entry(k.clone()).or_default().entry(tag.to_string()).or_default();
            }
            for (k, v) in input { want.get_mut(k).unwrap().get_mut(tag).unwrap().push(*v); }
        }
        let got: BTreeMap<String, BTreeMap<String, Vec<i64>>> = joined.into_iter()
            .map(|(k, g)| (k, g.tags.iter().map(|t| (t.clone(), sorted(g.get(t).unwrap().to_vec()))).collect())).collect();
        let want: BTreeMap<String, BTreeMap<String, Vec<i64>>> = want.into_iter()
            .map(|(k, g)| (k, g.into_iter().map(|(t, v)| (t, sorted(v))).collect())).collect();
        prop_assert_eq!(got, want);

        let flat = collect(&p.apply("Flat", Flatten::of(vec![pa.clone(), pb.clone()])));
        prop_assert_eq!(sorted(flat), sorted(a.iter().chain(b.iter()).cloned().collect()));
        let parts = pa.clone().apply("Split", Partition::of(3, |(_, v): &(String, i64), n| v.unsigned_abs() as usize % n));
        prop_assert_eq!(parts.len(), 3);
        for (i, part) in parts.iter().enumerate() {
            let want: Vec<_> = a.iter().filter(|(_, v)| v.unsigned_abs() as usize % 3 == i).cloned().collect();
            prop_assert_eq!(sorted(collect(part)), sorted(want));
        }
        let distinct = collect(&pa.clone().apply("Distinct", Distinct));
        prop_assert_eq!(sorted(distinct), a.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        let reshuffled = collect(&pb.apply("Reshuffle", Reshuffle));
        prop_assert_eq!(sorted(reshuffled), sorted(b.clone()));
    }
}

fn lines(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            out.extend(
                std::fs::read_to_string(entry.path())
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    out.sort();
    out
}

#[test]
fn every_sink_reads_one_run_of_the_shared_steps() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let words = p
        .apply("Words", Create((0..3000u64).collect::<Vec<_>>()))
        .apply(
            "Name",
            Map::new(move |x: u64| {
                c.fetch_add(1, Ordering::Relaxed);
                format!("w{}", x % 7)
            }),
        );
    let counts = words.clone().apply("Count", Count::per_element());
    counts
        .clone()
        .apply("WriteCounts", WriteText::to(dir.path().join("counts")));
    words
        .clone()
        .apply("Distinct", Distinct)
        .apply("WriteWords", WriteText::to(dir.path().join("words")));
    let total = words.apply("Total", Count::globally());
    total.apply("WriteTotal", WriteText::to(dir.path().join("total")));
    let result = p.run().unwrap();
    assert_eq!(result.writes.len(), 3);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3000,
        "the shared step ran once"
    );
    assert_eq!(lines(&dir.path().join("total")), vec!["3000"]);
    assert_eq!(lines(&dir.path().join("words")).len(), 7);
    assert_eq!(lines(&dir.path().join("counts")).len(), 7);
}

#[test]
fn a_failed_sink_publishes_no_sink() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    let xs = p.apply("In", Create((0..100i64).collect::<Vec<_>>()));
    xs.clone()
        .apply("WriteGood", WriteText::to(dir.path().join("good")));
    xs.apply(
        "Bad",
        Map::new(|x: i64| {
            if x == 77 {
                panic!("no 77s")
            }
            x
        }),
    )
    .apply("WriteBad", WriteText::to(dir.path().join("bad")));
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("no 77s") && err.contains("Bad/map"), "{err}");
    assert!(
        !dir.path().join("good").exists(),
        "published a sink of a failed run"
    );
    assert!(!dir.path().join("bad").exists());
    // Nothing is left behind under a hidden name either.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A `DoFn` that records its life cycle.
#[derive(Clone)]
struct Lifecycle {
    events: Arc<std::sync::Mutex<Vec<&'static str>>>,
    evens: spate::pipeline::TupleTag<i64>,
    fail_on: Option<i64>,
    seen: u64,
}

impl spate::pipeline::DoFn for Lifecycle {
    type In = i64;
    type Out = String;
    fn setup(&mut self) {
        self.events.lock().unwrap().push("setup");
    }
    fn start_bundle(&mut self) {
        self.seen = 0;
        self.events.lock().unwrap().push("start");
    }
    fn process(&mut self, x: i64, out: &mut spate::pipeline::DoOut<'_, String>) {
        if Some(x) == self.fail_on {
            panic!("cannot take {x}");
        }
        self.seen += 1;
        if x % 2 == 0 {
            out.emit_to(&self.evens, x);
        } else {
            out.emit(format!("odd {x}"));
        }
    }
    fn finish_bundle(&mut self, out: &mut spate::pipeline::DoOut<'_, String>) {
        out.emit(format!("bundle of {}", self.seen));
        self.events.lock().unwrap().push("finish");
    }
    fn teardown(&mut self) {
        self.events.lock().unwrap().push("teardown");
    }
}

fn count(events: &std::sync::Mutex<Vec<&'static str>>, what: &str) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == what)
        .count()
}

#[test]
fn pardo_runs_the_dofn_life_cycle_with_tagged_outputs() {
    use spate::pipeline::{ParDo, TupleTag};
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let evens = TupleTag::<i64>::new("evens");
    let dofn = Lifecycle {
        events: events.clone(),
        evens: evens.clone(),
        fail_on: None,
        seen: 0,
    };
    let p = pipeline();
    let outputs = p
        .apply("In", Create((0..300i64).collect::<Vec<_>>()))
        .apply("Split", ParDo::of(dofn.clone()).with_outputs(&["evens"]));
    outputs
        .main()
        .apply("WriteOdd", WriteText::to(dir.path().join("odd")));
    outputs
        .get(&evens)
        .apply("WriteEven", WriteText::to(dir.path().join("even")));
    p.run().unwrap();
    let odd = lines(&dir.path().join("odd"));
    let bundles: Vec<&String> = odd.iter().filter(|l| l.starts_with("bundle")).collect();
    assert_eq!(bundles.len(), 3, "one bundle per partition: {bundles:?}");
    assert_eq!(odd.len(), 150 + 3);
    let even: Vec<i64> = lines(&dir.path().join("even"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(sorted(even), (0..300).step_by(2).collect::<Vec<_>>());
    // The ParDo ran once for both outputs: three bundles, instances set up
    // at most once per concurrent bundle, every one torn down.
    assert_eq!(count(&events, "start"), 3);
    assert_eq!(count(&events, "finish"), 3);
    let setups = count(&events, "setup");
    assert!((1..=3).contains(&setups), "{setups}");
    assert_eq!(count(&events, "teardown"), setups);

    // A failing bundle's instance is torn down too.
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing = Lifecycle {
        events: events.clone(),
        fail_on: Some(150),
        ..dofn
    };
    let p = pipeline();
    p.apply("In", Create((0..300i64).collect::<Vec<_>>()))
        .apply("Split", ParDo::of(failing.clone()).with_outputs(&["evens"]))
        .main()
        .apply("Write", WriteText::to(dir.path().join("never")));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("cannot take 150") && err.contains("Split/pardo"),
        "{err}"
    );
    // The other bundles are cancelled when the run fails: their instances
    // are torn down as their tasks stop, which may be just after `run`
    // returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(&events, "teardown") != count(&events, "setup") {
        assert!(
            std::time::Instant::now() < deadline,
            "{} set up, {} torn down",
            count(&events, "setup"),
            count(&events, "teardown")
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!dir.path().join("never").exists());

    // Emitting to a tag that was not declared fails the step, naming it.
    let p = pipeline();
    p.apply("In", Create(vec![2i64]))
        .apply(
            "Split",
            ParDo::of(Lifecycle {
                fail_on: None,
                ..failing
            }),
        )
        .apply("Write", WriteText::to(dir.path().join("never")));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("output 'evens'") && err.contains("did not declare"),
        "{err}"
    );
}

#[test]
fn side_inputs_are_seen_whole_by_every_element() {
    use spate::pipeline::{AsDict, AsList, AsSingleton, ParDo};
    let p = pipeline();
    let xs = p.apply("Xs", Create((1..=100i64).collect::<Vec<_>>()));
    let total = xs.clone().apply("Total", Sum::globally());
    let total = AsSingleton::of(&total);
    let names = p.apply(
        "Names",
        Create(vec![(1i64, "one".to_string()), (2, "two".into())]),
    );
    let names = AsDict::of(&names);
    let small = AsList::of(&p.apply("Small", Create(vec![1i64, 2, 3])));
    let (t, n, s) = (total.clone(), names.clone(), small.clone());
    let shares = xs.clone().apply(
        "Share",
        Map::new(move |x: i64| {
            let name = n.get().get(&x).cloned().unwrap_or_default();
            (x * 10_000 / *t.get(), name, s.get().contains(&x))
        })
        .with_side(&total)
        .with_side(&names)
        .with_side(&small),
    );
    let got = sorted(collect(&shares));
    assert_eq!(got.len(), 100);
    assert_eq!(got[0], (10_000 / 5050, "one".to_string(), true));
    assert_eq!(got[3], (4 * 10_000 / 5050, String::new(), false));

    // A singleton view of several elements fails the step that reads it.
    let many = AsSingleton::of(&xs);
    let m = many.clone();
    let bad = xs.apply("Bad", Map::new(move |x: i64| x + *m.get()).with_side(&many));
    let err = bad.dataset().clone().count().unwrap_err().to_string();
    assert!(
        err.contains("AsSingleton") && err.contains("100 elements"),
        "{err}"
    );

    // Reading a side input the step did not declare fails it, naming it.
    let p = pipeline();
    let one = AsSingleton::of(&p.apply("One", Create(vec![1u8])));
    let o = one.clone();
    let undeclared = p
        .apply("In", Create(vec![1u8, 2]))
        .apply("Read", ParDo::of(ReadSide(o)));
    let err = undeclared
        .dataset()
        .clone()
        .count()
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not declare it"), "{err}");
}

#[derive(Clone)]
struct ReadSide(spate::pipeline::SideInput<u8>);

impl spate::pipeline::DoFn for ReadSide {
    type In = u8;
    type Out = u8;
    fn process(&mut self, x: u8, out: &mut spate::pipeline::DoOut<'_, u8>) {
        out.emit(x + *self.0.get())
    }
}

#[test]
fn metrics_are_committed_per_step_and_queried_from_the_result() {
    use spate::metrics::{Metrics, MetricsFilter};
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    let (odd, sizes, last) = (
        Metrics::counter("numbers", "odd"),
        Metrics::distribution("numbers", "size"),
        Metrics::gauge("numbers", "last"),
    );
    let evens = Metrics::counter("numbers", "even");
    p.apply("In", Create((1..=100i64).collect::<Vec<_>>()))
        .apply(
            "Odd",
            Filter::new(move |x: &i64| {
                if x % 2 == 1 {
                    odd.inc();
                }
                true
            }),
        )
        .apply(
            "Size",
            Map::new(move |x: i64| {
                sizes.update(x);
                last.set(7);
                x
            }),
        )
        .apply(
            "Even",
            Filter::new(move |x: &i64| {
                if x % 2 == 0 {
                    evens.inc_by(2);
                }
                true
            }),
        )
        .apply("Write", WriteText::to(dir.path().join("out")));
    let result = p.run().unwrap();
    assert_eq!(
        result.wait_until_finish(),
        spate::pipeline::PipelineState::Done
    );
    let all = result
        .metrics()
        .query(&MetricsFilter::new().with_namespace("numbers"));
    assert_eq!(all.counters.len(), 2);
    let odd = &result
        .metrics()
        .query(&MetricsFilter::new().with_step("Odd"))
        .counters;
    assert_eq!((odd[0].key.name.as_str(), odd[0].committed), ("odd", 50));
    let even = &result
        .metrics()
        .query(&MetricsFilter::new().with_name("even"))
        .counters;
    assert_eq!(even[0].committed, 100);
    assert_eq!(
        even[0].key.step, "Even/filter",
        "the step of the closure, in a fused chain"
    );
    let d = &all.distributions[0];
    assert_eq!(d.key.step, "Size/map");
    assert_eq!(
        (
            d.committed.count,
            d.committed.sum,
            d.committed.min,
            d.committed.max
        ),
        (100, 5050, 1, 100)
    );
    assert_eq!(all.gauges[0].committed.value, 7);
    assert!(all.gauges[0].committed.timestamp_ms > 0);
}

#[test]
fn a_collection_read_once_stays_fused_with_its_reader() {
    let p = pipeline();
    let words = p
        .apply("In", Create(vec!["a b".to_string(), "b".into()]))
        .apply("Split", FlatMap::new(into_words));
    let counts = words.apply("Count", Count::per_element());
    let plan = counts.explain().unwrap();
    assert!(
        plan.contains("partial count over [Split/flat_map]"),
        "the closure runs inside the combiner: {plan}"
    );
    assert!(
        !plan.contains("SpateCachedExec") && !plan.contains("cache ("),
        "{plan}"
    );
}

#[test]
fn writes_that_collide_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    let xs = p.apply("In", Create(vec![1u8]));
    xs.clone().apply("A", WriteText::to(dir.path().join("out")));
    xs.apply("B", WriteText::to(dir.path().join("out/inner")));
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("one is inside the other"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[derive(Clone)]
struct Maybe;

impl spate::pipeline::DoFn for Maybe {
    type In = i64;
    type Out = Option<i64>;
    fn process(&mut self, x: i64, out: &mut spate::pipeline::DoOut<'_, Option<i64>>) {
        out.emit((x % 2 == 0).then_some(x));
    }
}

#[test]
fn main_outputs_that_are_none_are_kept() {
    use spate::pipeline::ParDo;
    let p = pipeline();
    let outs = p
        .apply("In", Create((0..10i64).collect::<Vec<_>>()))
        .apply("Maybe", ParDo::of(Maybe).with_outputs(&["unused"]));
    let main = collect(&outs.main());
    assert_eq!(main.len(), 10);
    assert_eq!(main.iter().filter(|v| v.is_none()).count(), 5);
}
