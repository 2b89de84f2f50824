//! Beam's combiners and element-wise helpers: `Sum`, `Min`, `Max`, `Mean`
//! (globally and per key), `Top` largest/smallest (globally and per key),
//! `Sample` of a fixed size, `ToList`, `Keys`, `Values`, `KvSwap`.
//!
//! Each global combine gives exactly one element, also for an empty input
//! (Beam's `Sum` gives 0, `Mean` NaN, `Min`/`Max` `None`, `Top`/`Sample`/
//! `ToList` an empty list); each runs `add` before the shuffle.

use std::cmp::Ordering;
use std::marker::PhantomData;

use crate::combine::CombineFn;
use crate::dataset::Key;
use crate::ops::indexed::SplitMix64;
use crate::rows::Data;

use super::{PCollection, PTransform};

/// Applies a [`CombineFn`] globally or per key: the transform behind
/// [`Sum`], [`Min`], [`Max`], [`Mean`], [`Top`], [`Sample`] and [`ToList`].
pub struct Combined<C> {
    combine: C,
}

impl<T: Data, C: CombineFn<T>> PTransform<PCollection<T>> for Combined<C> {
    type Out = PCollection<C::Output>;
    fn expand(self, input: PCollection<T>) -> PCollection<C::Output> {
        let ds = input.consume().combine_globally(self.combine);
        input.with(ds)
    }
}

/// The per-key form of a [`Combined`].
pub struct CombinedPerKey<C> {
    combine: C,
}

impl<K: Key, V: Data, C: CombineFn<V>> PTransform<PCollection<(K, V)>> for CombinedPerKey<C> {
    type Out = PCollection<(K, C::Output)>;
    fn expand(self, input: PCollection<(K, V)>) -> PCollection<(K, C::Output)> {
        let ds = input.consume().combine_per_key(self.combine);
        input.with(ds)
    }
}

fn globally<C>(combine: C) -> Combined<C> {
    Combined { combine }
}

fn per_key<C>(combine: C) -> CombinedPerKey<C> {
    CombinedPerKey { combine }
}

/// Beam's `Sum`: `Sum::globally()` (0 for no elements), `Sum::per_key()`.
impl crate::combine::Sum {
    /// The sum of all elements.
    pub fn globally() -> Combined<crate::combine::Sum> {
        globally(crate::combine::Sum)
    }
    /// The sum of each key's values.
    pub fn per_key() -> CombinedPerKey<crate::combine::Sum> {
        per_key(crate::combine::Sum)
    }
}

/// Beam's `Mean`: `Mean::globally()` (NaN for no elements), `Mean::per_key()`.
impl crate::combine::Mean {
    /// The mean of all elements, as `f64`.
    pub fn globally() -> Combined<crate::combine::Mean> {
        globally(crate::combine::Mean)
    }
    /// The mean of each key's values.
    pub fn per_key() -> CombinedPerKey<crate::combine::Mean> {
        per_key(crate::combine::Mean)
    }
}

/// The least or greatest value (`PartialOrd`, so floats too; a value that
/// compares with nothing, NaN, is skipped).
#[derive(Debug, Clone, Copy)]
pub struct Extreme<T> {
    greatest: bool,
    _t: PhantomData<fn(T)>,
}

impl<T: Data + PartialOrd> CombineFn<T> for Extreme<T> {
    type Acc = Option<T>;
    type Output = Option<T>;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: T) {
        if value.partial_cmp(&value) != Some(Ordering::Equal) {
            return;
        }
        let better = match acc {
            None => true,
            Some(a) => {
                let ord = value.partial_cmp(a);
                if self.greatest {
                    ord == Some(Ordering::Greater)
                } else {
                    ord == Some(Ordering::Less)
                }
            }
        };
        if better {
            *acc = Some(value);
        }
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(v) = other {
            self.add(acc, v);
        }
    }
    fn extract(&self, acc: Option<T>) -> Option<T> {
        acc
    }
}

/// Minimums (Beam's `Min`): `None` for no elements.
#[derive(Debug, Clone, Copy)]
pub struct Min;

impl Min {
    /// The least element.
    pub fn globally<T>() -> Combined<Extreme<T>> {
        globally(Extreme {
            greatest: false,
            _t: PhantomData,
        })
    }
    /// The least value of each key.
    pub fn per_key<T>() -> CombinedPerKey<Extreme<T>> {
        per_key(Extreme {
            greatest: false,
            _t: PhantomData,
        })
    }
}

/// Maximums (Beam's `Max`): `None` for no elements.
#[derive(Debug, Clone, Copy)]
pub struct Max;

impl Max {
    /// The greatest element.
    pub fn globally<T>() -> Combined<Extreme<T>> {
        globally(Extreme {
            greatest: true,
            _t: PhantomData,
        })
    }
    /// The greatest value of each key.
    pub fn per_key<T>() -> CombinedPerKey<Extreme<T>> {
        per_key(Extreme {
            greatest: true,
            _t: PhantomData,
        })
    }
}

/// The `n` greatest (or least) elements as one list, in order.
#[derive(Debug, Clone, Copy)]
pub struct TopN<T> {
    n: usize,
    largest: bool,
    _t: PhantomData<fn(T)>,
}

impl<T: Data + Ord> TopN<T> {
    fn better(&self, a: &T, b: &T) -> Ordering {
        if self.largest { b.cmp(a) } else { a.cmp(b) }
    }
}

impl<T: Data + Ord> CombineFn<T> for TopN<T> {
    type Acc = Vec<T>;
    type Output = Vec<T>;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: T) {
        if self.n == 0 {
            return;
        }
        let at = acc
            .binary_search_by(|x| self.better(x, &value).then(Ordering::Less))
            .unwrap_or_else(|i| i);
        if at < self.n {
            acc.insert(at, value);
            acc.truncate(self.n);
        }
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        for v in other {
            self.add(acc, v);
        }
    }
    fn extract(&self, acc: Vec<T>) -> Vec<T> {
        acc
    }
}

/// A uniform random sample of at most `n` elements (reservoir sampling by
/// random keys: the `n` elements with the smallest keys).
#[derive(Debug, Clone, Copy)]
pub struct SampleN<T> {
    n: usize,
    _t: PhantomData<fn(T)>,
}

thread_local! {
    static SAMPLER: std::cell::RefCell<SplitMix64> = std::cell::RefCell::new(SplitMix64::new(seed()));
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

impl<T: Data> CombineFn<T> for SampleN<T> {
    type Acc = Vec<(u64, T)>;
    type Output = Vec<T>;
    fn create(&self) -> Vec<(u64, T)> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<(u64, T)>, value: T) {
        let key = SAMPLER.with(|r| r.borrow_mut().next_u64());
        self.merge(acc, vec![(key, value)]);
    }
    fn merge(&self, acc: &mut Vec<(u64, T)>, other: Vec<(u64, T)>) {
        for (key, value) in other {
            if self.n == 0 {
                return;
            }
            let at = acc.partition_point(|(k, _)| *k < key);
            if at < self.n {
                acc.insert(at, (key, value));
                acc.truncate(self.n);
            }
        }
    }
    fn extract(&self, acc: Vec<(u64, T)>) -> Vec<T> {
        acc.into_iter().map(|(_, v)| v).collect()
    }
}

/// Beam's `Top`: [`Top::largest`], [`Top::smallest`] and their per-key
/// forms give lists; [`Top::of`] and [`Top::by`] give the elements.
impl super::Top {
    /// The `n` greatest elements as one list, greatest first.
    pub fn largest<T>(n: usize) -> Combined<TopN<T>> {
        globally(TopN {
            n,
            largest: true,
            _t: PhantomData,
        })
    }
    /// The `n` least elements as one list, least first.
    pub fn smallest<T>(n: usize) -> Combined<TopN<T>> {
        globally(TopN {
            n,
            largest: false,
            _t: PhantomData,
        })
    }
    /// The `n` greatest values of each key, greatest first.
    pub fn largest_per_key<T>(n: usize) -> CombinedPerKey<TopN<T>> {
        per_key(TopN {
            n,
            largest: true,
            _t: PhantomData,
        })
    }
    /// The `n` least values of each key, least first.
    pub fn smallest_per_key<T>(n: usize) -> CombinedPerKey<TopN<T>> {
        per_key(TopN {
            n,
            largest: false,
            _t: PhantomData,
        })
    }
}

/// Beam's `Sample`: uniformly random elements, a different sample each run.
#[derive(Debug, Clone, Copy)]
pub struct Sample;

impl Sample {
    /// At most `n` elements, as one list.
    pub fn fixed_size_globally<T>(n: usize) -> Combined<SampleN<T>> {
        globally(SampleN { n, _t: PhantomData })
    }
    /// At most `n` values of each key.
    pub fn fixed_size_per_key<T>(n: usize) -> CombinedPerKey<SampleN<T>> {
        per_key(SampleN { n, _t: PhantomData })
    }
}

/// All elements as one list (Beam's `ToList`); order not kept.
#[derive(Debug, Clone, Copy)]
pub struct ToList;

/// The combine behind [`ToList`].
#[derive(Debug, Clone, Copy)]
pub struct ListOf<T>(PhantomData<fn(T)>);

impl<T: Data> CombineFn<T> for ListOf<T> {
    type Acc = Vec<T>;
    type Output = Vec<T>;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: T) {
        acc.push(value)
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other)
    }
    fn extract(&self, acc: Vec<T>) -> Vec<T> {
        acc
    }
}

impl<T: Data> PTransform<PCollection<T>> for ToList {
    type Out = PCollection<Vec<T>>;
    fn expand(self, input: PCollection<T>) -> PCollection<Vec<T>> {
        let ds = input.consume().combine_globally(ListOf(PhantomData));
        input.with(ds)
    }
}

/// The keys of key-value pairs (Beam's `Keys`).
#[derive(Debug, Clone, Copy)]
pub struct Keys;

impl<K: Key, V: Data> PTransform<PCollection<(K, V)>> for Keys {
    type Out = PCollection<K>;
    fn expand(self, input: PCollection<(K, V)>) -> PCollection<K> {
        let ds = input.consume().keys();
        input.with(ds)
    }
}

/// The values of key-value pairs (Beam's `Values`).
#[derive(Debug, Clone, Copy)]
pub struct Values;

impl<K: Key, V: Data> PTransform<PCollection<(K, V)>> for Values {
    type Out = PCollection<V>;
    fn expand(self, input: PCollection<(K, V)>) -> PCollection<V> {
        let ds = input.consume().values();
        input.with(ds)
    }
}

/// Swaps keys and values (Beam's `KvSwap`).
#[derive(Debug, Clone, Copy)]
pub struct KvSwap;

impl<K: Data, V: Data> PTransform<PCollection<(K, V)>> for KvSwap {
    type Out = PCollection<(V, K)>;
    fn expand(self, input: PCollection<(K, V)>) -> PCollection<(V, K)> {
        let ds = input.consume().map(|(k, v)| (v, k));
        input.with(ds)
    }
}
