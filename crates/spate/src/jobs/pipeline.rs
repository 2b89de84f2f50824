//! Word count as a Beam-style composite transform.
//! (Also compiled into `examples/*_pipeline.rs`.)

use spate::prelude::*;

/// Lines → `(word, count)`: extract words, count each (Beam's `CountWords`).
#[derive(Debug, Clone, Copy)]
pub struct CountWords;

impl PTransform<PCollection<String>> for CountWords {
    type Out = PCollection<(Word, u64)>;
    fn expand(self, lines: PCollection<String>) -> PCollection<(Word, u64)> {
        lines
            .apply(
                "ExtractWords",
                FlatMapLines::new(|line, out| words(line).for_each(|w| out.push(w))),
            )
            .apply("CountPerElement", Count::per_element())
    }
}
