//! The MapReduce face, in the spirit of mrjob's `MRJob`.
//!
//! A step has a mapper, an optional combiner and a reducer, each with
//! init/final hooks; a job is a chain of steps ([`Steps`]). Each task (one per
//! partition) works on its own clone of the step, so hooks can keep state in
//! `self`, as mrjob tasks do.
//!
//! How a step runs: mapper tasks (fused with whatever came before) → combiner
//! on buffered map output, map-side → hash shuffle on the key → external sort
//! by key (spills) → one reducer call per key, keys ascending within each
//! reducer, with an iterator over the values.

mod slots;

use std::sync::Arc;

use crate::ops::table::KeyTable;
use slots::Slots;

use crate::context::Context;
use crate::dataset::{Dataset, Key};
use crate::error::Error;
use crate::ops::group::{GroupFactory, GroupFn};
use crate::rows::Data;

/// Where a task's output goes.
pub struct Emitter<'a, T> {
    out: Out<'a, T>,
}

/// Where an emitter's records go.
enum Out<'a, T> {
    /// To a function (the next step).
    Call(&'a mut dyn FnMut(T)),
    /// Onto a buffer the task drains: the record is built where it is
    /// stored, with no call per record.
    Buffer(&'a mut Vec<T>),
}

impl<'a, T> Emitter<'a, T> {
    pub(crate) fn new(out: &'a mut dyn FnMut(T)) -> Self {
        Self {
            out: Out::Call(out),
        }
    }

    pub(crate) fn to_buffer(out: &'a mut Vec<T>) -> Self {
        Self {
            out: Out::Buffer(out),
        }
    }

    /// Emits one record.
    #[inline]
    pub fn emit(&mut self, record: T) {
        match &mut self.out {
            Out::Buffer(v) => v.push(record),
            Out::Call(f) => f(record),
        }
    }
}

impl<K, V> Emitter<'_, (K, V)> {
    /// Emits one key-value pair.
    #[inline]
    pub fn emit_kv(&mut self, key: K, value: V) {
        self.emit((key, value))
    }
}

/// One map → (combine) → shuffle → reduce step.
pub trait MRStep: Clone + Send + Sync + 'static {
    /// Records the mapper reads (a line of text for a first step).
    type Input: Data;
    /// Intermediate key.
    type Key: Key;
    /// Intermediate value.
    type Value: Data;
    /// Records the reducer writes.
    type Output: Data;

    /// Once per map task, before its first record.
    fn mapper_init(&mut self) {}
    /// Once per input record.
    fn mapper(&mut self, input: Self::Input, out: &mut Emitter<'_, (Self::Key, Self::Value)>);
    /// Once per map task, after its last record.
    fn mapper_final(&mut self, _out: &mut Emitter<'_, (Self::Key, Self::Value)>) {}

    /// Whether [`combiner`](Self::combiner) should run (default: no).
    fn has_combiner(&self) -> bool {
        false
    }
    /// Map-side pre-reduction of some of a key's values; may run zero or more times.
    fn combiner(
        &mut self,
        key: &Self::Key,
        values: &mut dyn Iterator<Item = Self::Value>,
        out: &mut Emitter<'_, (Self::Key, Self::Value)>,
    ) {
        for v in values {
            out.emit((key.clone(), v));
        }
    }

    /// Once per reduce task, before its first key.
    fn reducer_init(&mut self) {}
    /// Once per key, with all its values.
    fn reducer(
        &mut self,
        key: &Self::Key,
        values: &mut dyn Iterator<Item = Self::Value>,
        out: &mut Emitter<'_, Self::Output>,
    );
    /// Once per reduce task, after its last key.
    fn reducer_final(&mut self, _out: &mut Emitter<'_, Self::Output>) {}

    /// Number of reduce tasks (output part files); `None`: one per thread.
    fn num_reducers(&self) -> Option<usize> {
        None
    }

    /// Whether [`partition`](Self::partition) chooses the reducer of each key
    /// (Hadoop's custom `Partitioner`); default: hash of the key.
    fn has_partitioner(&self) -> bool {
        false
    }

    /// The reducer (`0..num_reducers`) that gets `key`, when
    /// [`has_partitioner`](Self::has_partitioner). Out-of-range answers wrap.
    fn partition(&self, _key: &Self::Key, _num_reducers: usize) -> usize {
        0
    }

    /// Whether each reducer sees its keys in descending order (Hadoop's
    /// reversed key comparator); default: ascending.
    fn sort_descending(&self) -> bool {
        false
    }
}

/// A map-only step (mrjob's `MRStep(mapper=...)` with no reducer).
pub trait MRMapStep: Clone + Send + Sync + 'static {
    /// Records the mapper reads.
    type Input: Data;
    /// Records the mapper writes.
    type Output: Data;
    /// Once per map task, before its first record.
    fn mapper_init(&mut self) {}
    /// Once per input record.
    fn mapper(&mut self, input: Self::Input, out: &mut Emitter<'_, Self::Output>);
    /// Once per map task, after its last record.
    fn mapper_final(&mut self, _out: &mut Emitter<'_, Self::Output>) {}
}

type StepsFn<I, O> = Arc<dyn Fn(Dataset<I>) -> Dataset<O> + Send + Sync>;

/// The steps of a job, from input records `I` to output records `O`.
pub struct Steps<I, O> {
    apply: StepsFn<I, O>,
    count: usize,
}

impl<I: Data> Steps<I, I> {
    /// No steps yet.
    pub fn new() -> Self {
        Steps {
            apply: Arc::new(|ds| ds),
            count: 0,
        }
    }
}

impl<I: Data> Default for Steps<I, I> {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes of mapper output (estimated) a map task buffers before running the
/// combiner over it — the role of Hadoop's sort buffer
/// (`mapreduce.task.io.sort.mb`): the larger it is, the fewer partial
/// results leave the task. 65 536 values (the earlier bound) sent a word
/// count's 22 k distinct words downstream ~2 700 times per GiB.
const COMBINE_BUFFER_BYTES: usize = 16 << 20;

/// At most this many value slots (`GROUP` per key), whatever their
/// estimated size (the estimate does not see values' heap data, e.g. long
/// strings).
const COMBINE_BUFFER_VALUES: usize = 1 << 20;

/// Heap bytes guessed per distinct key beyond the table's buckets (a long
/// key's text).
const KEY_OVERHEAD: usize = 16;

/// Values a key holds in a map task before the combiner folds them, in
/// place. A key's values sit together in one small group (one cache line
/// for 8-byte values: `slots.rs`), and the table maps a key to its
/// group's place, so a short key's bucket is 16 bytes as in the Dataset
/// face's combiner: a frequent key's values stay in cache and the table
/// stays half the size of one holding a value list per key (a word count's
/// map tasks: 4.7–4.9 s against 5.5–6.6 s with lists folded at 64 values,
/// 5.0–5.2 s with groups of 4). Allowed because a combiner may run any number of times, also over
/// its own output (as Hadoop's does when it merges spills).
const GROUP: usize = 8;

/// Mapper output gathered before it is buffered by key: the lookups of a
/// run of pairs overlap their cache misses, where a record's few pairs at a
/// time leave each miss to stall alone between the mapper's calls.
const ABSORB_RUN: usize = 512;

/// Pairs between a key's prefetch and its buffering (as the combiner's).
const PREFETCH_AHEAD: usize = 16;

impl<I: Data, O: Data> Steps<I, O> {
    /// A job of one step.
    pub fn of<S: MRStep<Input = I, Output = O>>(step: S) -> Self {
        Steps::<I, I>::new().then(step)
    }

    /// Appends a map → shuffle → reduce step.
    pub fn then<S: MRStep<Input = O>>(self, step: S) -> Steps<I, S::Output> {
        let prev = self.apply;
        let name = format!("step-{}", self.count + 1);
        Steps {
            apply: Arc::new(move |ds| {
                let ds = prev(ds);
                let ctx = ds.context().clone();
                ctx.in_scope(&name, || run_step(ds, step.clone()))
            }),
            count: self.count + 1,
        }
    }

    /// Appends a map-only step.
    pub fn then_map_only<S: MRMapStep<Input = O>>(self, step: S) -> Steps<I, S::Output> {
        let prev = self.apply;
        let name = format!("step-{}", self.count + 1);
        Steps {
            count: self.count + 1,
            apply: Arc::new(move |ds| {
                let s = step.clone();
                let ds = prev(ds);
                let ctx = ds.context().clone();
                ctx.in_scope(&name, || {
                    ds.map_partitions_with(
                        "mapper",
                        move || {
                            let mut s = s.clone();
                            s.mapper_init();
                            s
                        },
                        |s: &mut S, rec, emit| s.mapper(rec, &mut Emitter::new(emit)),
                        Some(Arc::new(|s: &mut S, emit: &mut dyn FnMut(S::Output)| {
                            s.mapper_final(&mut Emitter::new(emit))
                        })),
                    )
                })
            }),
        }
    }

    /// Applies the steps to a dataset.
    pub fn apply(&self, input: Dataset<I>) -> Dataset<O> {
        (self.apply)(input)
    }
}

/// A MapReduce job: a chain of steps (mrjob's `MRJob.steps()`).
pub trait MRJob {
    /// Records the first step reads.
    type Input: Data;
    /// Records the last step writes.
    type Output: Data;
    /// The job's steps.
    fn steps(&self) -> Steps<Self::Input, Self::Output>;
}

/// Runs MapReduce jobs on a context.
pub trait MapReduce {
    /// Applies `job` to `input`, lazily (write or collect the result).
    fn run_job<J: MRJob>(&self, job: &J, input: Dataset<J::Input>) -> Dataset<J::Output>;
}

impl MapReduce for Context {
    fn run_job<J: MRJob>(&self, job: &J, input: Dataset<J::Input>) -> Dataset<J::Output> {
        job.steps().apply(input)
    }
}

/// Where a key's values are in a map task's `held` slots.
#[derive(Clone, Copy)]
struct Group {
    /// The key's group of slots, or with [`LISTED`] in `len` the key's
    /// index in `lists`; `u32::MAX` until the key's first value.
    at: u32,
    /// Slots in use, or [`LISTED`].
    len: u32,
}

/// `Group::len` of a key whose values moved to a list of their own.
const LISTED: u32 = u32::MAX;

/// Values of a key whose combiner did not halve a full group (a top-k with
/// k ≥ 5, a distinct-values combiner): folded in place, its values would
/// leave the task about one per value and run the combiner once per value.
/// Its values gather in a list instead, folded each time the list doubles
/// past what the last fold kept (Hadoop combines a key's whole spill).
struct Listed<V> {
    values: Vec<V>,
    fold_at: usize,
}

/// A map task's buffers, borrowed apart from its table.
type Buffers<'a, V, K> = (
    &'a mut Slots<V>,
    &'a mut Vec<Listed<V>>,
    &'a mut usize,
    &'a mut Vec<(K, V)>,
);

/// [`MapTask::absorb_one`] for a key's first value, a value that fills its
/// group (which the combiner then folds) and a listed key's value.
#[inline(never)]
fn absorb_rare<S: MRStep>(
    step: &mut S,
    (held, lists, listed, folded): Buffers<'_, S::Value, S::Key>,
    key: &S::Key,
    g: &mut Group,
    v: S::Value,
    emit: &mut dyn FnMut((S::Key, S::Value)),
) {
    if g.len == LISTED {
        let list = &mut lists[g.at as usize];
        list.values.push(v);
        *listed += 1;
        if list.values.len() >= list.fold_at {
            *listed -= list.values.len();
            let mut values = list.values.drain(..);
            step.combiner(key, &mut values, &mut Emitter::to_buffer(folded));
            drop(values);
            keep_own(folded, key, emit, |v| list.values.push(v));
            *listed += list.values.len();
            list.fold_at = (2 * list.values.len()).max(list.fold_at);
        }
        return;
    }
    if g.at == u32::MAX {
        g.at = held.alloc();
    }
    let at = g.at;
    held.put(at, g.len as usize, v);
    g.len += 1;
    if (g.len as usize) < GROUP {
        return;
    }
    g.len = 0;
    // SAFETY: the group's slots all hold values (`len` counted them), and
    // it counts none from here on.
    #[allow(unsafe_code)]
    let mut values = unsafe { held.take(at, GROUP) };
    step.combiner(key, &mut values, &mut Emitter::to_buffer(folded));
    drop(values);
    let kept = folded.iter().filter(|(k2, _)| k2 == key).count();
    if kept > GROUP / 2 {
        let mut values = Vec::with_capacity(2 * kept);
        keep_own(folded, key, emit, |v| values.push(v));
        *listed += values.len();
        // Fewer lists than slots (above).
        g.at = lists.len() as u32;
        g.len = LISTED;
        let fold_at = (2 * values.len()).max(4 * GROUP);
        lists.push(Listed { values, fold_at });
        return;
    }
    keep_own(folded, key, emit, |v| {
        held.put(at, g.len as usize, v);
        g.len += 1;
    });
}

/// Takes a combiner's output: values for `key` go to `keep`, other keys'
/// pairs to `emit`.
fn keep_own<K: PartialEq, V>(
    folded: &mut Vec<(K, V)>,
    key: &K,
    emit: &mut dyn FnMut((K, V)),
    mut keep: impl FnMut(V),
) {
    for (k2, v2) in folded.drain(..) {
        if k2 == *key {
            keep(v2);
        } else {
            emit((k2, v2));
        }
    }
}

struct MapTask<S: MRStep> {
    step: S,
    /// Each buffered key's group of value slots.
    groups: KeyTable<S::Key, Group>,
    /// Value slots, a group per key; the first `len` of a group hold the
    /// key's values.
    held: Slots<S::Value>,
    /// Listed keys' values, and how many values they hold in all.
    lists: Vec<Listed<S::Value>>,
    listed: usize,
    /// The mapper's output for the current record, before buffering.
    pending: Vec<(S::Key, S::Value)>,
    /// The combiner's output while folding one key.
    folded: Vec<(S::Key, S::Value)>,
}

impl<S: MRStep> MapTask<S> {
    fn new(step: S) -> Self {
        Self {
            step,
            groups: KeyTable::default(),
            held: Slots::default(),
            lists: Vec::new(),
            listed: 0,
            pending: Vec::new(),
            folded: Vec::new(),
        }
    }

    /// Moves `pending` pairs into their keys' groups; a full group is
    /// folded by the combiner, its output for the same key kept in the group
    /// (or in a list, when it is more than half a group) and the rest sent
    /// to `emit`. The buffer is combined whenever it fills, also within a
    /// long run (a `mapper_final` that emits millions of pairs).
    fn absorb(&mut self, emit: &mut dyn FnMut((S::Key, S::Value))) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut since_check = 0;
        for (k, _) in pending.iter().take(PREFETCH_AHEAD) {
            self.groups.prefetch(k);
        }
        let mut pairs = pending.drain(..);
        while let Some((k, v)) = pairs.next() {
            // The key's bucket, asked for ahead (see `KeyTable::prefetch`).
            if let Some((ahead, _)) = pairs.as_slice().get(PREFETCH_AHEAD - 1) {
                self.groups.prefetch(ahead);
            }
            self.absorb_one(k, v, emit);
            since_check += 1;
            if since_check == ABSORB_RUN {
                since_check = 0;
                if self.full() {
                    self.combine_all(emit);
                }
            }
        }
        drop(pairs);
        // Kept for its capacity.
        self.pending = pending;
    }

    fn absorb_one(&mut self, k: S::Key, v: S::Value, emit: &mut dyn FnMut((S::Key, S::Value))) {
        let MapTask {
            step,
            groups,
            held,
            lists,
            listed,
            folded,
            ..
        } = self;
        let new = || Group {
            at: u32::MAX,
            len: 0,
        };
        groups.slot_with(k, new, |key, g| {
            // Most pairs join a group with room to spare: that store is
            // all, inlined into the absorbing loop. A key's first value, a
            // group that fills and a listed key go out of line.
            if g.len != LISTED && g.at != u32::MAX && (g.len as usize) + 1 < GROUP {
                held.put(g.at, g.len as usize, v);
                g.len += 1;
            } else {
                absorb_rare(step, (held, lists, listed, folded), key, g, v, emit);
            }
        });
    }

    /// Is the buffer full?
    fn full(&self) -> bool {
        let slot_bytes = Slots::<S::Value>::SLOT_BYTES;
        let values = self.held.len() + self.listed;
        values >= COMBINE_BUFFER_VALUES
            || self.groups.bytes(KEY_OVERHEAD) + values * slot_bytes >= COMBINE_BUFFER_BYTES
    }

    fn combine_all(&mut self, emit: &mut dyn FnMut((S::Key, S::Value))) {
        let MapTask {
            step,
            groups,
            held,
            lists,
            listed,
            ..
        } = self;
        // Draining keeps the table's and the slots' memory for the next round.
        let mut drained = Drained::new(groups.drain(), held);
        for (k, g) in drained.groups.by_ref() {
            let mut emitter = Emitter::new(emit);
            if g.len == LISTED {
                let values = std::mem::take(&mut lists[g.at as usize].values);
                step.combiner(&k, &mut values.into_iter(), &mut emitter);
                continue;
            }
            if g.len == 0 {
                continue;
            }
            // SAFETY: the group's first `len` slots hold values; the group
            // left the table with the drain.
            #[allow(unsafe_code)]
            let mut values = unsafe { drained.held.take(g.at, g.len as usize) };
            step.combiner(&k, &mut values, &mut emitter);
        }
        drop(drained);
        held.clear();
        lists.clear();
        *listed = 0;
    }
}

impl<S: MRStep> Drop for MapTask<S> {
    /// A task that ends early (an error, a cancelled job) drops the values
    /// still buffered.
    fn drop(&mut self) {
        if std::mem::needs_drop::<S::Value>() {
            drop(Drained::new(self.groups.drain(), &mut self.held));
        }
    }
}

/// Groups drained from a map task's table, with the slots they point to.
/// Whatever groups are left when it is dropped — all of them, or those a
/// panicking combiner did not reach — have their values dropped.
struct Drained<'a, K, I: Iterator<Item = (K, Group)>, V> {
    groups: I,
    held: &'a mut Slots<V>,
    key: std::marker::PhantomData<K>,
}

impl<'a, K, I: Iterator<Item = (K, Group)>, V> Drained<'a, K, I, V> {
    fn new(groups: I, held: &'a mut Slots<V>) -> Self {
        Self {
            groups,
            held,
            key: std::marker::PhantomData,
        }
    }
}

impl<K, I: Iterator<Item = (K, Group)>, V> Drop for Drained<'_, K, I, V> {
    fn drop(&mut self) {
        for (_, g) in self.groups.by_ref() {
            if g.len != LISTED && g.len > 0 {
                // SAFETY: the group's first `len` slots hold values; the
                // group left the table with the drain.
                #[allow(unsafe_code)]
                drop(unsafe { self.held.take(g.at, g.len as usize) });
            }
        }
    }
}

fn run_step<S: MRStep>(input: Dataset<S::Input>, step: S) -> Dataset<S::Output> {
    let combine = step.has_combiner();
    let s0 = step.clone();
    let mapped: Dataset<(S::Key, S::Value)> = input.map_partitions_with(
        "mapper",
        move || {
            let mut step = s0.clone();
            step.mapper_init();
            MapTask::new(step)
        },
        move |t: &mut MapTask<S>, rec, emit| {
            if !combine {
                t.step.mapper(rec, &mut Emitter::new(emit));
                return;
            }
            let MapTask { step, pending, .. } = t;
            step.mapper(rec, &mut Emitter::to_buffer(pending));
            if pending.len() >= ABSORB_RUN {
                t.absorb(emit);
                if t.full() {
                    t.combine_all(emit);
                }
            }
        },
        Some(Arc::new(
            move |t: &mut MapTask<S>, emit: &mut dyn FnMut((S::Key, S::Value))| {
                if combine {
                    let MapTask { step, pending, .. } = t;
                    step.mapper_final(&mut Emitter::to_buffer(pending));
                    t.absorb(emit);
                    t.combine_all(emit);
                } else {
                    t.step.mapper_final(&mut Emitter::new(emit));
                }
            },
        )),
    );
    let s1 = step.clone();
    let factory: GroupFactory<S::Key, S::Value, S::Output> = Arc::new(move || {
        let mut step = s1.clone();
        step.reducer_init();
        Box::new(ReduceTask(step))
    });
    if step.has_partitioner() {
        let count = step
            .num_reducers()
            .unwrap_or_else(|| mapped.context().threads())
            .max(1);
        // Route values make the hash shuffle send partition p's rows to reducer p.
        let routes: Arc<Vec<u64>> = match crate::node::route_values(count) {
            Ok(routes) => Arc::new(routes),
            Err(e) => {
                // Never a guess: a wrong route sends keys to the wrong reducer.
                let e = Error::Plan(format!("routing rows to {count} reducers: {e}"));
                return mapped.context().failed(&e);
            }
        };
        let chooser = step.clone();
        let routed = mapped.map(move |(k, v)| {
            let p = chooser.partition(&k, count) % count;
            (k, v, routes[p])
        });
        return crate::dataset::reduce_routed(
            routed,
            "reducer",
            count,
            step.sort_descending(),
            factory,
        );
    }
    let mut grouped = mapped.group_by_key();
    if step.sort_descending() {
        grouped = grouped.keys_descending();
    }
    if let Some(n) = step.num_reducers() {
        grouped = grouped.partitions(n);
    }
    grouped.reduce_with("reducer", factory)
}

struct ReduceTask<S>(S);

impl<S: MRStep> GroupFn<S::Key, S::Value, S::Output> for ReduceTask<S> {
    fn group(
        &mut self,
        key: &S::Key,
        values: &mut dyn Iterator<Item = S::Value>,
        emit: &mut dyn FnMut(S::Output),
    ) {
        self.0.reducer(key, values, &mut Emitter::new(emit));
    }
    fn finish(&mut self, emit: &mut dyn FnMut(S::Output)) {
        self.0.reducer_final(&mut Emitter::new(emit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::sync::atomic::{AtomicIsize, Ordering};

    /// Values alive: each `Tracked` made counts +1, each dropped −1.
    static LIVE: AtomicIsize = AtomicIsize::new(0);

    #[derive(Serialize, Deserialize)]
    struct Tracked(u64);

    impl Tracked {
        fn new(n: u64) -> Self {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Tracked(n)
        }
    }

    impl Clone for Tracked {
        fn clone(&self) -> Self {
            Tracked::new(self.0)
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// What the test's combiner does.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Mode {
        /// Sums the values.
        Sum,
        /// Sums the first two values and reads no further.
        ReadTwo,
        /// Gives every value back (never halves: the key moves to a list).
        KeepAll,
        /// Sums, until `end`: then panics.
        PanicAtEnd,
    }

    #[derive(Clone)]
    struct TestStep {
        mode: Mode,
        end: bool,
    }

    impl MRStep for TestStep {
        type Input = u64;
        type Key = String;
        type Value = Tracked;
        type Output = u64;
        fn mapper(&mut self, _: u64, _: &mut Emitter<'_, (String, Tracked)>) {}
        fn has_combiner(&self) -> bool {
            true
        }
        fn combiner(
            &mut self,
            key: &String,
            values: &mut dyn Iterator<Item = Tracked>,
            out: &mut Emitter<'_, (String, Tracked)>,
        ) {
            match self.mode {
                Mode::KeepAll => values.for_each(|v| out.emit_kv(key.clone(), v)),
                Mode::PanicAtEnd if self.end => std::panic::panic_any("the combiner fails"),
                mode => {
                    let n = if mode == Mode::ReadTwo { 2 } else { usize::MAX };
                    let sum = values.take(n).map(|v| v.0).sum();
                    out.emit_kv(key.clone(), Tracked::new(sum));
                }
            }
        }
        fn reducer(
            &mut self,
            _: &String,
            _: &mut dyn Iterator<Item = Tracked>,
            _: &mut Emitter<'_, u64>,
        ) {
        }
    }

    #[test]
    fn every_buffered_value_is_folded_emitted_or_dropped() {
        use Mode::*;
        for mode in [Sum, ReadTwo, KeepAll, PanicAtEnd] {
            for finish in [true, false] {
                let mut task = MapTask::new(TestStep { mode, end: false });
                let mut out: Vec<(String, Tracked)> = Vec::new();
                let mut emit = |p: (String, Tracked)| out.push(p);
                // 7 keys, 1000 values each: groups fill and fold many times.
                for i in 0..7000u64 {
                    task.pending.push((format!("k{}", i % 7), Tracked::new(1)));
                    if task.pending.len() == ABSORB_RUN {
                        task.absorb(&mut emit);
                    }
                }
                task.absorb(&mut emit);
                if finish {
                    task.step.end = true;
                    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        task.combine_all(&mut emit)
                    }));
                    assert_eq!(ended.is_err(), mode == PanicAtEnd);
                    let total: u64 = out.iter().map(|(_, v)| v.0).sum();
                    if mode == Sum || mode == KeepAll {
                        assert_eq!(total, 7000, "{mode:?}: every value counted once");
                    }
                }
                // A task that ends early drops what it still buffers.
                drop(task);
                let emitted = out.len() as isize;
                assert_eq!(LIVE.load(Ordering::SeqCst), emitted, "{mode:?} {finish}");
                drop(out);
                assert_eq!(LIVE.load(Ordering::SeqCst), 0);
            }
        }
    }
}
