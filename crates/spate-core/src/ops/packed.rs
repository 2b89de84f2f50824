//! `PackedTable`: an open-addressing hash table of packed text keys.
//!
//! The combiner's lookups of short words miss the cache (see
//! [`KeyTable`](super::table::KeyTable)). A SwissTable (hashbrown) reads a
//! group of control bytes and then the bucket, and its address is not known
//! before the lookup. Here a bucket is the key and its accumulator side by
//! side (16 bytes for a `u64` key and count, 32 for a `u128` key), found by
//! linear probing from the key's multiplicative hash, the table at most
//! half full: a lookup reads the home bucket's line (and the next one when
//! its probe or a wide bucket crosses into it), and
//! [`prefetch`](PackedTable::prefetch) can ask for that line ahead of time,
//! so a run of lookups overlaps its misses instead of waiting on each.
//!
//! Keys are packed text (see `table.rs`): an integer that is never all
//! zeros, which marks an empty bucket, and never all ones, which marks a
//! bucket whose accumulator is out in a user's merge function.

use std::mem::MaybeUninit;

/// Buckets of a table's first allocation.
const FIRST: usize = 64;
/// Fibonacci hashing's multiplier (2^64 / φ).
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;

/// A packed key: `u64` (text of up to 7 bytes) or `u128` (up to 15).
pub(crate) trait Packed: Copy + Eq {
    /// An empty bucket.
    const EMPTY: Self;
    /// A bucket whose accumulator was moved out for a merge that has not
    /// put one back (it panicked): skipped by lookups, never dropped.
    const TAKEN: Self;
    /// A hash whose top bits are well mixed.
    fn hash(self) -> u64;
}

impl Packed for u64 {
    const EMPTY: u64 = 0;
    const TAKEN: u64 = u64::MAX;
    #[inline(always)]
    fn hash(self) -> u64 {
        self.wrapping_mul(PHI)
    }
}

impl Packed for u128 {
    const EMPTY: u128 = 0;
    const TAKEN: u128 = u128::MAX;
    #[inline(always)]
    fn hash(self) -> u64 {
        ((self as u64).wrapping_mul(PHI) ^ (self >> 64) as u64).wrapping_mul(PHI)
    }
}

struct Bucket<P, A> {
    key: P,
    /// Initialized exactly when `key` is neither `EMPTY` nor `TAKEN`.
    acc: MaybeUninit<A>,
}

impl<P: Packed, A> Bucket<P, A> {
    fn empty() -> Self {
        Bucket {
            key: P::EMPTY,
            acc: MaybeUninit::uninit(),
        }
    }
    fn full(&self) -> bool {
        self.key != P::EMPTY && self.key != P::TAKEN
    }
}

/// Packed keys (never all zeros or all ones) to accumulators.
pub(crate) struct PackedTable<P: Packed, A> {
    buckets: Vec<Bucket<P, A>>,
    /// Buckets in use: full, or taken (a key lost to a panicking merge,
    /// until the table grows or is drained).
    len: usize,
    /// `64 - log2(buckets.len())`: a hash's top bits index the buckets.
    shift: u32,
}

impl<P: Packed, A> Default for PackedTable<P, A> {
    fn default() -> Self {
        PackedTable {
            buckets: Vec::new(),
            len: 0,
            shift: 64,
        }
    }
}

impl<P: Packed, A> PackedTable<P, A> {
    #[inline(always)]
    fn home(&self, key: P) -> usize {
        // `shift` is 64 only while there are no buckets (never probed then).
        (key.hash() >> (self.shift & 63)) as usize
    }

    /// The index of `key`'s bucket, or of the empty bucket it would take.
    #[inline(always)]
    fn find(&self, key: P) -> usize {
        let mask = self.buckets.len() - 1;
        let mut i = self.home(key);
        loop {
            let k = self.buckets[i].key;
            if k == key || k == P::EMPTY {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the processor for the cache line of `key`'s home bucket.
    #[inline(always)]
    pub(crate) fn prefetch(&self, key: P) {
        if let Some(b) = self.buckets.get(self.home(key)) {
            prefetch_line(b);
        }
    }

    /// Makes room for one more key (at most half the buckets in use).
    #[inline(always)]
    fn reserve_one(&mut self) {
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
    }

    #[cold]
    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(FIRST);
        let old = std::mem::replace(
            &mut self.buckets,
            std::iter::repeat_with(Bucket::empty).take(size).collect(),
        );
        self.shift = 64 - size.trailing_zeros();
        self.len = 0;
        for b in old {
            if b.full() {
                let i = self.find(b.key);
                self.buckets[i] = b;
                self.len += 1;
            }
        }
        // Taken buckets (values lost to a panic) are left behind.
    }

    /// The accumulator of `key`, made by `init` if `key` is new.
    #[inline(always)]
    pub(crate) fn slot(&mut self, key: P, init: impl FnOnce() -> A) -> &mut A {
        debug_assert!(key != P::EMPTY && key != P::TAKEN);
        self.reserve_one();
        let i = self.find(key);
        let b = &mut self.buckets[i];
        if b.key == P::EMPTY {
            b.acc.write(init());
            b.key = key;
            self.len += 1;
        }
        #[allow(unsafe_code)]
        // SAFETY: the bucket holds `key`, so its accumulator is initialized.
        unsafe {
            b.acc.assume_init_mut()
        }
    }

    /// Stores `v` for a new `key`, else replaces its value `old` with `f(old, v)`.
    #[inline(always)]
    pub(crate) fn merge(&mut self, key: P, v: A, f: impl FnOnce(A, A) -> A) {
        debug_assert!(key != P::EMPTY && key != P::TAKEN);
        self.reserve_one();
        let i = self.find(key);
        let b = &mut self.buckets[i];
        if b.key == P::EMPTY {
            b.acc.write(v);
            b.key = key;
            self.len += 1;
            return;
        }
        // Marked taken while `f` (user code) holds the value: if it
        // panics, the bucket is never read or dropped again.
        b.key = P::TAKEN;
        #[allow(unsafe_code)]
        // SAFETY: the bucket held `key`, so its accumulator is initialized;
        // it is read once, and the bucket is marked taken until it is
        // written again.
        let old = unsafe { b.acc.assume_init_read() };
        b.acc.write(f(old, v));
        b.key = key;
    }

    /// Number of keys (and of keys lost to a panicking merge, until the
    /// table grows or is drained).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the buckets allocated.
    pub(crate) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket<P, A>>()
    }

    /// Takes every key and accumulator out; the table keeps its buckets.
    pub(crate) fn drain(&mut self) -> Drain<'_, P, A> {
        Drain {
            buckets: self.buckets.iter_mut(),
            len: &mut self.len,
        }
    }
}

/// The keys and accumulators of a [`PackedTable`], taken out as they are
/// read (and all of them when dropped).
pub(crate) struct Drain<'a, P: Packed, A> {
    buckets: std::slice::IterMut<'a, Bucket<P, A>>,
    /// The table's count, lowered as buckets are emptied (so a drain that
    /// is forgotten leaves the table consistent).
    len: &'a mut usize,
}

impl<P: Packed, A> Iterator for Drain<'_, P, A> {
    type Item = (P, A);
    fn next(&mut self) -> Option<(P, A)> {
        for b in self.buckets.by_ref() {
            let key = std::mem::replace(&mut b.key, P::EMPTY);
            if key == P::EMPTY {
                continue;
            }
            *self.len -= 1;
            if key != P::TAKEN {
                #[allow(unsafe_code)]
                // SAFETY: the bucket held a key, so its accumulator is
                // initialized; the bucket is now empty, so it is read once.
                return Some((key, unsafe { b.acc.assume_init_read() }));
            }
        }
        None
    }
}

impl<P: Packed, A> Drop for Drain<'_, P, A> {
    fn drop(&mut self) {
        self.for_each(drop);
    }
}

impl<P: Packed, A> Drop for PackedTable<P, A> {
    fn drop(&mut self) {
        self.drain().for_each(drop);
    }
}

#[inline(always)]
fn prefetch_line<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        #[allow(unsafe_code)]
        // SAFETY: SSE is part of x86_64; a prefetch is a hint that reads
        // nothing and cannot fault, and `p` is a valid reference anyway.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::rc::Rc;

    #[test]
    fn agrees_with_a_hash_map_and_drops_every_value_once() {
        let live = Rc::new(());
        let mut t: PackedTable<u128, (u64, Rc<()>)> = PackedTable::default();
        let mut want: HashMap<u128, u64> = HashMap::new();
        let mut x = 1u64;
        for round in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // ~16 000 keys, differing in either half.
            let key = u128::from(x >> 57) << 64 | u128::from(x >> 50 & 127) | 1 << 120;
            t.prefetch(key);
            if round % 2 == 0 {
                t.slot(key, || (0, live.clone())).0 += 1;
            } else {
                t.merge(key, (1, live.clone()), |a, b| (a.0 + b.0, a.1));
            }
            *want.entry(key).or_default() += 1;
        }
        assert_eq!(t.len(), want.len());
        assert!(t.len() * 2 * std::mem::size_of::<Bucket<u128, (u64, Rc<()>)>>() <= t.bytes());
        assert_eq!(Rc::strong_count(&live), 1 + want.len());
        let mut got: HashMap<u128, u64> = HashMap::new();
        let mut d = t.drain();
        // Half read.
        for (k, (n, _)) in d.by_ref().take(want.len() / 2) {
            got.insert(k, n);
        }
        std::mem::forget(d);
        // A forgotten drain leaves the rest in the table, counted.
        assert_eq!(t.len(), want.len() - want.len() / 2);
        assert_eq!(Rc::strong_count(&live), 1 + t.len());
        drop(t.drain());
        assert_eq!(Rc::strong_count(&live), 1);
        assert_eq!(t.len(), 0);
        assert!(t.drain().next().is_none());
        for (k, n) in &got {
            assert_eq!(want.get(k), Some(n));
        }
        // The buckets are reused; dropping the table drops what it holds.
        *t.slot(5, || (0, live.clone())) = (7, live.clone());
        assert_eq!(Rc::strong_count(&live), 2);
        drop(t);
        assert_eq!(Rc::strong_count(&live), 1);
    }

    #[test]
    fn a_panicking_merge_loses_its_value_and_nothing_else() {
        let live = Rc::new(());
        let mut t: PackedTable<u64, Rc<()>> = PackedTable::default();
        for k in 1..=100u64 {
            t.merge(k, live.clone(), |a, _| a);
        }
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.merge(50, live.clone(), |_, _| {
                std::panic::resume_unwind(Box::new("user code"))
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(Rc::strong_count(&live), 100);
        assert_eq!(t.len(), 100, "the lost key's bucket stays in use");
        // Keys after the taken bucket are still found, and the lost key is
        // new again; the table still grows.
        for k in 1..=1000u64 {
            t.slot(k, || live.clone());
        }
        assert_eq!(Rc::strong_count(&live), 1001);
        let mut keys: Vec<u64> = t.drain().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, (1..=1000).collect::<Vec<_>>());
        assert_eq!(Rc::strong_count(&live), 1);
    }
}
