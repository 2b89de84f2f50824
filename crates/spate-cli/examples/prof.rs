#![allow(missing_docs, clippy::unwrap_used)]
use spate::prelude::*;
use std::time::{Duration, Instant};
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let runs: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let ctx = Context::new().unwrap();
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        let n = ctx
            .read_text(&[&path])
            .unwrap()
            .flat_map(into_words)
            .count_by_value()
            .count()
            .unwrap();
        best = best.min(t.elapsed());
        assert!(n > 0);
    }
    println!("count best: {best:?}");
}
