//! Beam-PAssert-style assertions for tests, in-process and fast.
//!
//! ```
//! use spate::prelude::*;
//! use spate::testing::assert_that;
//! let ctx = Context::builder().threads(2).build()?;
//! let counts = ctx.from_vec(vec![1u32, 2, 2]).count_by_value();
//! assert_that(&counts).contains_in_any_order([(1, 1), (2, 2)]);
//! # Ok::<(), spate::Error>(())
//! ```
#![expect(
    clippy::panic,
    reason = "assertions fail tests by panicking, like assert!"
)]

use std::fmt::Debug;

use spate_core::Data;
use spate_core::dataset::Dataset;
use spate_core::pipeline::PCollection;

/// Something assertions can run: a `Dataset` or a `PCollection`.
pub trait Collected<T> {
    /// Runs the job and returns its elements.
    fn elements(&self) -> Vec<T>;
}

impl<T: Data> Collected<T> for Dataset<T> {
    fn elements(&self) -> Vec<T> {
        match self.clone().collect() {
            Ok(rows) => rows,
            Err(e) => panic!("the job under test failed: {e}"),
        }
    }
}

impl<T: Data> Collected<T> for PCollection<T> {
    fn elements(&self) -> Vec<T> {
        self.dataset().elements()
    }
}

/// Starts an assertion on the elements of `collection`.
pub fn assert_that<T: Data + Debug + PartialEq, C: Collected<T>>(collection: &C) -> Assertion<T> {
    Assertion {
        actual: collection.elements(),
    }
}

/// The elements a job produced, to assert on.
#[derive(Debug)]
pub struct Assertion<T> {
    actual: Vec<T>,
}

impl<T: Debug + PartialEq> Assertion<T> {
    /// The same elements as `expected`, in any order (a multiset comparison).
    pub fn contains_in_any_order(self, expected: impl IntoIterator<Item = T>) -> Self {
        let expected: Vec<T> = expected.into_iter().collect();
        let mut unmatched: Vec<Option<&T>> = self.actual.iter().map(Some).collect();
        let mut missing = Vec::new();
        for e in &expected {
            match unmatched.iter_mut().find(|a| a.is_some_and(|a| a == e)) {
                Some(slot) => *slot = None,
                None => missing.push(e),
            }
        }
        let extra: Vec<&T> = unmatched.into_iter().flatten().collect();
        if !missing.is_empty() || !extra.is_empty() {
            panic!(
                "collection differs from the expected elements (in any order)\n  missing: {missing:?}\n  unexpected: {extra:?}\n  actual ({} elements): {:?}",
                self.actual.len(),
                truncate(&self.actual)
            );
        }
        self
    }

    /// Exactly `expected`, in this order (for sorted or single-partition output).
    pub fn equals(self, expected: impl IntoIterator<Item = T>) -> Self {
        let expected: Vec<T> = expected.into_iter().collect();
        if self.actual != expected {
            panic!(
                "collection differs\n  expected: {:?}\n  actual:   {:?}",
                truncate(&expected),
                truncate(&self.actual)
            );
        }
        self
    }

    /// No elements at all.
    pub fn is_empty(self) -> Self {
        if !self.actual.is_empty() {
            panic!(
                "expected an empty collection, got {:?}",
                truncate(&self.actual)
            );
        }
        self
    }

    /// `check` holds for the elements (in the order the job produced them).
    pub fn satisfies(self, check: impl FnOnce(&[T]) -> bool) -> Self {
        if !check(&self.actual) {
            panic!(
                "collection does not satisfy the check: {:?}",
                truncate(&self.actual)
            );
        }
        self
    }

    /// The elements, for further checks.
    pub fn into_elements(self) -> Vec<T> {
        self.actual
    }
}

fn truncate<T>(v: &[T]) -> &[T] {
    &v[..v.len().min(50)]
}
