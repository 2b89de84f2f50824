//! `Slots`: where a map task holds its keys' values between the mapper and
//! the combiner.
//!
//! A key's values sit together in a group of `GROUP` slots. The slots are
//! bare (`MaybeUninit`), not `Option`s: an 8-byte value without a spare
//! bit pattern (a count) takes 8 bytes, not 16, so a group of 8 counts is
//! one cache line (groups are aligned to lines), and the buffer of a word
//! count's ~50 000 keys is half the size it was. (A slot takes at least 8
//! bytes: the alignment of a group spreads over its 8 slots.) A value is
//! written into its group as it arrives and read back once, when the
//! combiner folds the group; the task's group table says which slots hold
//! a value (the first `len` of a group), and `Slots` trusts it through
//! [`Slots::take`], the one unsafe promise.

use std::mem::MaybeUninit;

use super::GROUP;

/// One group's slots, aligned to a cache line.
#[repr(C, align(64))]
struct Chunk<V>([MaybeUninit<V>; GROUP]);

/// Groups of value slots; see the module docs.
pub(super) struct Slots<V> {
    chunks: Vec<Chunk<V>>,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<V> Slots<V> {
    /// Bytes a slot takes.
    pub(super) const SLOT_BYTES: usize = std::mem::size_of::<Chunk<V>>() / GROUP;

    /// Slots allocated.
    pub(super) fn len(&self) -> usize {
        self.chunks.len() * GROUP
    }

    /// A new group of empty slots: its index.
    pub(super) fn alloc(&mut self) -> u32 {
        let at = self.chunks.len();
        self.chunks
            .push(Chunk([const { MaybeUninit::uninit() }; GROUP]));
        // `full()`, checked every `ABSORB_RUN` pairs, has the buffer
        // combined at `COMBINE_BUFFER_VALUES` slots: far below u32::MAX
        // groups.
        at as u32
    }

    /// Stores `v` in slot `i` of group `at`. A slot that held a value not
    /// taken yet would leak it (never unsafe): the caller writes past the
    /// group's values only. Bounds-checked on purpose: a combiner whose
    /// keys compare inconsistently could keep more values than a group
    /// holds, and the check stops it there.
    #[inline(always)]
    pub(super) fn put(&mut self, at: u32, i: usize, v: V) {
        self.chunks[at as usize].0[i].write(v);
    }

    /// The first `len` values of group `at`, moved out: what the iterator
    /// does not yield is dropped with it (or leaked, if it is forgotten).
    /// The slots are empty after.
    ///
    /// # Safety
    /// Slots `0..len` of the group hold values (each `put` since the group
    /// was allocated or last taken), and the caller forgets them (it
    /// counts the group empty) before the iterator runs, so none is read
    /// twice, even if a combiner panics.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) unsafe fn take(&mut self, at: u32, len: usize) -> Taken<'_, V> {
        Taken {
            slots: &mut self.chunks[at as usize].0[..len],
            next: 0,
        }
    }

    /// Forgets every group. Values not taken are leaked, never read.
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
    }
}

/// A group's values, moved out one by one ([`Slots::take`]).
pub(super) struct Taken<'a, V> {
    slots: &'a mut [MaybeUninit<V>],
    next: usize,
}

impl<V> Iterator for Taken<'_, V> {
    type Item = V;

    #[inline(always)]
    fn next(&mut self) -> Option<V> {
        let slot = self.slots.get_mut(self.next)?;
        self.next += 1;
        // SAFETY: the slots hold values (`take`'s contract) and `next`
        // passes each once.
        #[allow(unsafe_code)]
        Some(unsafe { slot.assume_init_read() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.slots.len() - self.next;
        (left, Some(left))
    }
}

impl<V> Drop for Taken<'_, V> {
    fn drop(&mut self) {
        for slot in &mut self.slots[self.next..] {
            // SAFETY: the slots from `next` on hold values not yet read.
            #[allow(unsafe_code)]
            unsafe {
                slot.assume_init_drop()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn values_come_out_once_and_the_rest_is_dropped() {
        let alive = Rc::new(());
        let mut slots: Slots<Rc<()>> = Slots::default();
        let (a, b) = (slots.alloc(), slots.alloc());
        assert_eq!(slots.len(), 2 * GROUP);
        for i in 0..5 {
            slots.put(a, i, alive.clone());
            slots.put(b, i, alive.clone());
        }
        assert_eq!(Rc::strong_count(&alive), 11);
        // SAFETY: five values were put in each group, each taken once.
        #[allow(unsafe_code)]
        let taken: Vec<Rc<()>> = unsafe { slots.take(a, 5) }.collect();
        assert_eq!(taken.len(), 5);
        drop(taken);
        assert_eq!(Rc::strong_count(&alive), 6);
        // A combiner that reads two of five values: the other three are dropped.
        #[allow(unsafe_code)]
        let mut it = unsafe { slots.take(b, 5) };
        assert_eq!(it.size_hint(), (5, Some(5)));
        let two: Vec<Rc<()>> = it.by_ref().take(2).collect();
        drop(it);
        assert_eq!(Rc::strong_count(&alive), 3);
        drop(two);
        assert_eq!(Rc::strong_count(&alive), 1);
        slots.clear();
        assert_eq!(slots.len(), 0);
        assert_eq!(Slots::<u64>::SLOT_BYTES, 8);
        assert_eq!(std::mem::align_of::<Chunk<u64>>(), 64);
    }
}
