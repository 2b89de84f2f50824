//! `ParDo` with a `DoFn` (Beam's general per-element transform): a
//! life cycle per instance, bundles, and tagged extra outputs.
//!
//! **Life cycle.** A partition of the input is a bundle. An instance is
//! cloned from the `DoFn` given and `setup` once, then used for one bundle
//! after another (`start_bundle`, `process` per element, `finish_bundle`),
//! so there are as many instances as bundles that run at once — one per
//! worker thread. `teardown` is always called: on an instance whose bundle
//! failed (which is then discarded), and on every pooled instance when the
//! pipeline's run ends, whether it succeeded or not (or, for collections
//! used outside a run, when the pipeline is dropped). On a cluster's
//! executors, which keep a job's steps as long as they run, pooled
//! instances are torn down when the executor's registry is dropped, not
//! at the end of each run.
//!
//! **Tagged outputs.** `ParDo::of(f).with_outputs(&[tag.id()])` gives a
//! [`DoOutputs`]: the main output and one collection per [`TupleTag`],
//! each of its own type. Internally every output row is `(tag, main value,
//! other value as CBOR)`, computed once per run however many outputs are
//! read.

use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::rows::{Data, Held};

use super::{Materialize, PCollection, PTransform, Pipeline};

/// Beam's `DoFn`: per-element code with a life cycle (see the module docs).
/// Only `process` is required.
///
/// ```
/// use spate_core::prelude::*;
/// use spate_core::pipeline::{DoFn, DoOut, ParDo};
/// #[derive(Clone)]
/// struct Split;
/// impl DoFn for Split {
///     type In = String;
///     type Out = String;
///     fn process(&mut self, line: String, out: &mut DoOut<'_, String>) {
///         for w in line.split(' ') { out.emit(w.to_string()) }
///     }
/// }
/// let p = Pipeline::with_context(Context::builder().threads(2).build()?);
/// let words = p.apply("In", Create(vec!["a b".to_string(), "c".into()])).apply("Split", ParDo::of(Split));
/// assert_eq!(words.dataset().clone().count()?, 3);
/// # Ok::<(), spate_core::Error>(())
/// ```
pub trait DoFn: Clone + Send + Sync + 'static {
    /// The input elements.
    type In: Data;
    /// The main output's elements.
    type Out: Data;
    /// Called once per instance, before its first bundle.
    fn setup(&mut self) {}
    /// Called at the start of each bundle.
    fn start_bundle(&mut self) {}
    /// Called for each element.
    fn process(&mut self, element: Self::In, out: &mut DoOut<'_, Self::Out>);
    /// Called at the end of each bundle; may emit.
    fn finish_bundle(&mut self, _out: &mut DoOut<'_, Self::Out>) {}
    /// Called once per instance, when it is discarded.
    fn teardown(&mut self) {}
}

/// A typed tag of an extra output of a [`ParDo`] (Beam's `TupleTag`).
pub struct TupleTag<T> {
    id: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TupleTag<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TupleTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TupleTag({})", self.id)
    }
}

impl<T: Data> TupleTag<T> {
    /// A tag named `id`.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            _t: PhantomData,
        }
    }

    /// The tag's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// One output row of a multi-output `ParDo`: the tag's index (0: main),
/// the main value, or another output's value as CBOR.
type Tagged<O> = (u32, Option<Held<O>>, Option<Vec<u8>>);

/// The declared tags and where a tagged output's encoded value goes.
type TaggedSink<'a> = (&'a [String], &'a mut dyn FnMut(u32, Vec<u8>));

/// Where a `DoFn` emits: the main output and, with
/// [`ParDo::with_outputs`], tagged ones.
pub struct DoOut<'a, O> {
    main: &'a mut dyn FnMut(O),
    tagged: Option<TaggedSink<'a>>,
}

impl<O> DoOut<'_, O> {
    /// Emits to the main output.
    pub fn emit(&mut self, value: O) {
        (self.main)(value)
    }

    /// Emits to the output tagged `tag`, which
    /// [`with_outputs`](ParDo::with_outputs) must have declared (else the
    /// step fails, naming the tag).
    pub fn emit_to<T: Data>(&mut self, tag: &TupleTag<T>, value: T) {
        let Some((tags, emit)) = &mut self.tagged else {
            undeclared(&tag.id);
        };
        let Some(i) = tags.iter().position(|t| *t == tag.id) else {
            undeclared(&tag.id);
        };
        let mut bytes = Vec::new();
        if let Err(e) = ciborium::into_writer(&value, &mut bytes) {
            fail(&format!("output {}: {e}", tag.id));
        }
        emit(i as u32 + 1, bytes)
    }
}

/// Fails the step running user code (its panic is reported as the step's
/// error, named).
#[expect(
    clippy::panic,
    reason = "inside a user's process call: the step fails, named"
)]
fn fail(message: &str) -> ! {
    panic!("{message}")
}

fn undeclared(tag: &str) -> ! {
    fail(&format!(
        "emitted to output '{tag}', which ParDo::with_outputs did not declare"
    ))
}

/// Set-up instances of one `DoFn`, waiting for their next bundle.
pub(crate) struct Pool<D: DoFn> {
    idle: Mutex<Vec<D>>,
}

impl<D: DoFn> Pool<D> {
    fn take(&self, prototype: &D) -> D {
        if let Some(d) = self.idle.lock().pop() {
            return d;
        }
        let mut d = prototype.clone();
        d.setup();
        d
    }

    fn give_back(&self, d: D) {
        self.idle.lock().push(d);
    }
}

/// Tears down pooled instances (a run ended).
pub(crate) trait Teardown: Send + Sync {
    fn teardown_all(&self);
}

impl<D: DoFn> Teardown for Pool<D> {
    fn teardown_all(&self) {
        let idle = std::mem::take(&mut *self.idle.lock());
        for mut d in idle {
            d.teardown();
        }
    }
}

impl<D: DoFn> Drop for Pool<D> {
    fn drop(&mut self) {
        self.teardown_all();
    }
}

/// One bundle's instance; torn down if the bundle does not finish.
struct Bundle<D: DoFn> {
    dofn: Option<D>,
    pool: Arc<Pool<D>>,
}

impl<D: DoFn> Drop for Bundle<D> {
    fn drop(&mut self) {
        if let Some(mut d) = self.dofn.take() {
            d.teardown();
        }
    }
}

/// Beam's `ParDo`: applies a [`DoFn`].
pub struct ParDo<D> {
    dofn: D,
    sides: Vec<Arc<dyn Materialize>>,
}

impl<D: DoFn> ParDo<D> {
    /// `ParDo.of(dofn)`.
    pub fn of(dofn: D) -> Self {
        Self {
            dofn,
            sides: Vec::new(),
        }
    }

    /// Declares a side input the `DoFn` reads (computed before the step
    /// runs; read it with [`SideInput::get`](super::SideInput::get)).
    pub fn with_side<S: Data>(mut self, side: &super::SideInput<S>) -> Self {
        self.sides.push(Arc::new(side.clone()));
        self
    }

    /// Declares tagged outputs besides the main one: the result is a
    /// [`DoOutputs`].
    pub fn with_outputs(self, tags: &[&str]) -> ParDoWithOutputs<D> {
        ParDoWithOutputs {
            dofn: self.dofn,
            sides: self.sides,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// A [`ParDo`] with tagged outputs.
pub struct ParDoWithOutputs<D> {
    dofn: D,
    sides: Vec<Arc<dyn Materialize>>,
    tags: Vec<String>,
}

/// Runs `dofn` over `input` as a stage: one bundle per partition, `emit`
/// turning its outputs into rows of `R`.
fn run_dofn<D: DoFn, R: Data>(
    input: &PCollection<D::In>,
    dofn: D,
    sides: Vec<Arc<dyn Materialize>>,
    tags: Arc<Vec<String>>,
    wrap: fn(D::Out) -> R,
    tagged: fn(u32, Vec<u8>) -> Option<R>,
) -> crate::Dataset<R> {
    let pipeline = input.pipeline().clone();
    let pool: Arc<Pool<D>> = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
    });
    pipeline.keep_for_teardown(pool.clone());
    let prototype = Arc::new(dofn);
    let pool2 = pool.clone();
    let tags2 = tags.clone();
    let finish: crate::ops::chain::EndFn<Bundle<D>, R> = Arc::new(move |bundle, emit| {
        // The instance stays in the bundle until `finish_bundle` returns:
        // if it panics, the bundle's drop tears it down.
        if let Some(d) = bundle.dofn.as_mut() {
            for r in call(&tags, wrap, tagged, |out| d.finish_bundle(out)) {
                emit(r)
            }
        }
        if let Some(d) = bundle.dofn.take() {
            bundle.pool.give_back(d);
        }
    });
    super::side::after_sides(input.consume(), sides).map_partitions_with(
        "pardo",
        move || {
            let mut d = pool2.take(prototype.as_ref());
            d.start_bundle();
            Bundle {
                dofn: Some(d),
                pool: pool2.clone(),
            }
        },
        move |bundle, element, emit| {
            let Some(d) = bundle.dofn.as_mut() else {
                return;
            };
            for r in call(&tags2, wrap, tagged, |out| d.process(element, out)) {
                emit(r)
            }
        },
        Some(finish),
    )
}

/// Calls a `DoFn` method with a [`DoOut`] and returns the rows it emitted.
fn call<O, R>(
    tags: &[String],
    wrap: fn(O) -> R,
    tagged: fn(u32, Vec<u8>) -> Option<R>,
    f: impl FnOnce(&mut DoOut<'_, O>),
) -> Vec<R> {
    let rows = std::cell::RefCell::new(Vec::new());
    let mut main = |o: O| rows.borrow_mut().push(wrap(o));
    let mut other = |i: u32, bytes: Vec<u8>| {
        if let Some(r) = tagged(i, bytes) {
            rows.borrow_mut().push(r)
        }
    };
    let mut out = DoOut {
        main: &mut main,
        tagged: if tags.is_empty() {
            None
        } else {
            Some((tags, &mut other))
        },
    };
    f(&mut out);
    rows.into_inner()
}

impl<D: DoFn> PTransform<PCollection<D::In>> for ParDo<D> {
    type Out = PCollection<D::Out>;
    fn expand(self, input: PCollection<D::In>) -> PCollection<D::Out> {
        fn same<O>(o: O) -> O {
            o
        }
        fn none<O>(_: u32, _: Vec<u8>) -> Option<O> {
            None
        }
        let ds = run_dofn(
            &input,
            self.dofn,
            self.sides,
            Arc::new(Vec::new()),
            same,
            none,
        );
        input.with(ds)
    }
}

impl<D: DoFn> PTransform<PCollection<D::In>> for ParDoWithOutputs<D> {
    type Out = DoOutputs<D::Out>;
    fn expand(self, input: PCollection<D::In>) -> DoOutputs<D::Out> {
        fn main<O>(o: O) -> Tagged<O> {
            (0, Some(Held { v: o }), None)
        }
        fn other<O>(i: u32, bytes: Vec<u8>) -> Option<Tagged<O>> {
            Some((i, None, Some(bytes)))
        }
        let tags = Arc::new(self.tags);
        let ds = run_dofn(&input, self.dofn, self.sides, tags.clone(), main, other);
        DoOutputs {
            all: input.with(ds),
            tags,
        }
    }
}

/// The outputs of a [`ParDo::with_outputs`]: read any of them; the
/// `ParDo` runs once per pipeline run however many are read.
pub struct DoOutputs<O> {
    all: PCollection<Tagged<O>>,
    tags: Arc<Vec<String>>,
}

impl<O: Data> DoOutputs<O> {
    /// The main output.
    pub fn main(&self) -> PCollection<O> {
        let ds = self
            .all
            .consume()
            .flat_map(|(i, v, _): Tagged<O>| if i == 0 { v.map(|h| h.v) } else { None });
        self.all.with(ds)
    }

    /// The output tagged `tag` (declared in `with_outputs`; else a
    /// collection whose use fails, naming the tag).
    pub fn get<T: Data>(&self, tag: &TupleTag<T>) -> PCollection<T> {
        let Some(i) = self.tags.iter().position(|t| *t == tag.id) else {
            let e = crate::Error::Usage(format!(
                "ParDo output '{}' was not declared in with_outputs ({})",
                tag.id,
                self.tags.join(", ")
            ));
            let p: &Pipeline = self.all.pipeline();
            p.fail(e.replay());
            return p.collection(p.context().failed(&e));
        };
        let index = i as u32 + 1;
        let name = tag.id.clone();
        let ds = self
            .all
            .consume()
            .flat_map(move |(i, _, bytes): Tagged<O>| {
                if i != index {
                    return None;
                }
                let bytes = bytes.unwrap_or_default();
                match ciborium::from_reader::<T, _>(bytes.as_slice()) {
                    Ok(v) => Some(v),
                    Err(e) => fail(&format!("output {name}: {e}")),
                }
            });
        self.all.with(ds)
    }
}
