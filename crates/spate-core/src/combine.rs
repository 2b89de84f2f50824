//! `CombineFn`: an associative, commutative aggregation in four parts (Beam's
//! `CombineFn`, Spark's `Aggregator`). spate runs `add` map-side, before the
//! shuffle, and `merge` + `extract` after it.

use crate::rows::Data;

/// An aggregation of values of type `V`.
///
/// ```
/// use spate_core::combine::CombineFn;
/// /// The mean of integers.
/// struct Mean;
/// impl CombineFn<i64> for Mean {
///     type Acc = (i64, u64);
///     type Output = f64;
///     fn create(&self) -> (i64, u64) { (0, 0) }
///     fn add(&self, acc: &mut (i64, u64), v: i64) { acc.0 += v; acc.1 += 1; }
///     fn merge(&self, acc: &mut (i64, u64), other: (i64, u64)) { acc.0 += other.0; acc.1 += other.1; }
///     fn extract(&self, acc: (i64, u64)) -> f64 { acc.0 as f64 / acc.1.max(1) as f64 }
/// }
/// ```
pub trait CombineFn<V>: Send + Sync + 'static {
    /// The accumulator; travels through the shuffle, so it must be `Data`.
    type Acc: Data;
    /// The result per key.
    type Output: Data;
    /// A fresh, empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one value.
    fn add(&self, acc: &mut Self::Acc, value: V);
    /// Merges another accumulator into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result.
    fn extract(&self, acc: Self::Acc) -> Self::Output;
}

/// Sum of numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum;

macro_rules! sum_impl {
    ($($t:ty),*) => {$(
        impl CombineFn<$t> for Sum {
            type Acc = $t;
            type Output = $t;
            fn create(&self) -> $t { 0 as $t }
            fn add(&self, acc: &mut $t, v: $t) { *acc += v; }
            fn merge(&self, acc: &mut $t, o: $t) { *acc += o; }
            fn extract(&self, acc: $t) -> $t { acc }
        }
    )*};
}
sum_impl!(i32, i64, u32, u64, f32, f64, usize);

/// Arithmetic mean of numbers, as `f64`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mean;

macro_rules! mean_impl {
    ($($t:ty),*) => {$(
        impl CombineFn<$t> for Mean {
            type Acc = (f64, u64);
            type Output = f64;
            fn create(&self) -> (f64, u64) { (0.0, 0) }
            fn add(&self, acc: &mut (f64, u64), v: $t) { acc.0 += v as f64; acc.1 += 1; }
            fn merge(&self, acc: &mut (f64, u64), o: (f64, u64)) { acc.0 += o.0; acc.1 += o.1; }
            fn extract(&self, acc: (f64, u64)) -> f64 { if acc.1 == 0 { f64::NAN } else { acc.0 / acc.1 as f64 } }
        }
    )*};
}
mean_impl!(i32, i64, u32, u64, f32, f64);

/// A [`CombineFn`] from Spark-style fold functions (`aggregate`,
/// `aggregateByKey`): `seq` folds a value into a partial result that
/// starts at `zero`, `comb` merges two partial results. `zero` must be an
/// identity of both. The accumulator starts empty, so `zero` is cloned
/// once per partial result, not per value.
pub struct FoldFn<U, S, C, T> {
    zero: U,
    seq: S,
    comb: C,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<U, S, C, T> FoldFn<U, S, C, T> {
    /// The fold of `seq` from `zero`, merged by `comb`.
    pub fn new(zero: U, seq: S, comb: C) -> Self {
        Self {
            zero,
            seq,
            comb,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T, U, S, C> CombineFn<T> for FoldFn<U, S, C, T>
where
    T: 'static,
    U: Data + Clone,
    S: Fn(U, T) -> U + Send + Sync + 'static,
    C: Fn(U, U) -> U + Send + Sync + 'static,
{
    type Acc = Option<U>;
    type Output = U;
    fn create(&self) -> Option<U> {
        None
    }
    fn add(&self, acc: &mut Option<U>, value: T) {
        let start = acc.take().unwrap_or_else(|| self.zero.clone());
        *acc = Some((self.seq)(start, value));
    }
    fn merge(&self, acc: &mut Option<U>, other: Option<U>) {
        *acc = match (acc.take(), other) {
            (Some(a), Some(b)) => Some((self.comb)(a, b)),
            (a, b) => a.or(b),
        };
    }
    fn extract(&self, acc: Option<U>) -> U {
        acc.unwrap_or_else(|| self.zero.clone())
    }
}
