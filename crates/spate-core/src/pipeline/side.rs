//! Side inputs: another collection, seen whole by every element of a step
//! (Beam's `AsSingleton`, `AsIter`, `AsList`, `AsDict`, `AsMultiMap`).
//!
//! A step declares the side inputs it reads (`Map::new(f).with_side(&s)`);
//! before the step's job runs, each is computed by a job of its own and
//! kept for the run. A closure reads it with [`SideInput::get`]. On a
//! cluster the value travels to the executors as a broadcast value does
//! (see [`crate::shared`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::rows::Data;
use crate::shared::Broadcast;

use super::PCollection;

/// Something a step needs computed before it runs.
pub trait Materialize: Send + Sync {
    /// Computes the value, once.
    fn materialize(&self) -> Result<()>;
}

type Compute<S> = Box<dyn Fn() -> Result<S> + Send + Sync>;

struct SideInner<S> {
    value: Broadcast<S>,
    compute: Compute<S>,
    /// Builds the side collection's plan only (what executors need: its
    /// steps, registered under their names).
    declare: Box<dyn Fn() -> Result<()> + Send + Sync>,
    ctx: crate::Context,
    done: parking_lot::Mutex<bool>,
}

/// A view of a collection for other steps' closures: declare it on the
/// step (`with_side`), read it with [`get`](Self::get).
pub struct SideInput<S> {
    inner: Arc<SideInner<S>>,
}

impl<S> Clone for SideInput<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for SideInput<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SideInput({:?})", self.inner.value)
    }
}

impl<S: Data> SideInput<S> {
    fn new<T: Data>(
        pc: &PCollection<T>,
        view: impl Fn(Vec<T>) -> Result<S> + Send + Sync + 'static,
    ) -> Self {
        let ctx = pc.pipeline().context().clone();
        let id = ctx.step_name("side_input");
        let ds: Dataset<T> = pc.consume();
        let plan_only = ds.clone();
        Self {
            inner: Arc::new(SideInner {
                value: Broadcast::unset(id),
                compute: Box::new(move || view(ds.clone().collect()?)),
                declare: Box::new(move || plan_only.logical_plan().map(|_| ())),
                ctx,
                done: parking_lot::Mutex::new(false),
            }),
        }
    }

    /// The view's value (in a step that declared it).
    pub fn get(&self) -> Arc<S> {
        self.inner.value.value()
    }
}

impl<S: Data> Materialize for SideInput<S> {
    fn materialize(&self) -> Result<()> {
        let inner = &self.inner;
        // Executors that only declare steps read the driver's value from
        // the task's settings; they need the side job's steps, not its value.
        if inner.ctx.is_declaring() {
            return (inner.declare)();
        }
        let mut done = inner.done.lock();
        if *done {
            return Ok(());
        }
        let value = (inner.compute)()?;
        inner.ctx.ship_broadcast(inner.value.id(), &value)?;
        inner.value.set(value);
        *done = true;
        Ok(())
    }
}

/// The one element of a collection (Beam's `AsSingleton`); a collection of
/// none (without a default) or of several fails the step that reads it.
#[derive(Debug, Clone, Copy)]
pub struct AsSingleton;

impl AsSingleton {
    /// A view of `pc`'s single element.
    pub fn of<T: Data>(pc: &PCollection<T>) -> SideInput<T> {
        Self::view(pc, None)
    }

    /// A view of `pc`'s single element, `default` if it has none.
    pub fn or<T: Data + Clone>(pc: &PCollection<T>, default: T) -> SideInput<T> {
        Self::view(pc, Some(default))
    }

    fn view<T: Data>(pc: &PCollection<T>, default: Option<T>) -> SideInput<T> {
        let default = parking_lot::Mutex::new(default);
        SideInput::new(pc, move |mut rows: Vec<T>| match rows.len() {
            1 => Ok(rows.remove(0)),
            0 => default
                .lock()
                .take()
                .ok_or_else(|| Error::Usage("AsSingleton: the side input has no element".into())),
            n => Err(Error::Usage(format!(
                "AsSingleton: the side input has {n} elements, not one"
            ))),
        })
    }
}

/// Every element of a collection, as a list (Beam's `AsIter`; order not
/// kept).
#[derive(Debug, Clone, Copy)]
pub struct AsIter;

impl AsIter {
    /// A view of `pc`'s elements.
    pub fn of<T: Data>(pc: &PCollection<T>) -> SideInput<Vec<T>> {
        SideInput::new(pc, Ok)
    }
}

/// Every element of a collection, as a list (Beam's `AsList`).
#[derive(Debug, Clone, Copy)]
pub struct AsList;

impl AsList {
    /// A view of `pc`'s elements.
    pub fn of<T: Data>(pc: &PCollection<T>) -> SideInput<Vec<T>> {
        SideInput::new(pc, Ok)
    }
}

/// A keyed collection as a map (Beam's `AsDict`); a key that occurs twice
/// fails the step that reads it.
#[derive(Debug, Clone, Copy)]
pub struct AsDict;

impl AsDict {
    /// A view of `pc` as a map.
    pub fn of<K: Data + Hash + Eq, V: Data>(pc: &PCollection<(K, V)>) -> SideInput<HashMap<K, V>> {
        SideInput::new(pc, |rows: Vec<(K, V)>| {
            let n = rows.len();
            let map: HashMap<K, V> = rows.into_iter().collect();
            if map.len() != n {
                return Err(Error::Usage(format!(
                    "AsDict: the side input has {} duplicate keys (AsMultiMap keeps them all)",
                    n - map.len()
                )));
            }
            Ok(map)
        })
    }
}

/// A keyed collection as a map to each key's values (Beam's `AsMultiMap`).
#[derive(Debug, Clone, Copy)]
pub struct AsMultiMap;

impl AsMultiMap {
    /// A view of `pc` as a map of lists.
    pub fn of<K: Data + Hash + Eq, V: Data>(
        pc: &PCollection<(K, V)>,
    ) -> SideInput<HashMap<K, Vec<V>>> {
        SideInput::new(pc, |rows: Vec<(K, V)>| {
            let mut map: HashMap<K, Vec<V>> = HashMap::new();
            for (k, v) in rows {
                map.entry(k).or_default().push(v);
            }
            Ok(map)
        })
    }
}

/// `ds`, whose plan first computes `sides`.
pub(crate) fn after_sides<T: Data>(ds: Dataset<T>, sides: Vec<Arc<dyn Materialize>>) -> Dataset<T> {
    if sides.is_empty() {
        return ds;
    }
    ds.after(Arc::new(move || {
        for side in &sides {
            side.materialize()?;
        }
        Ok(())
    }))
}
