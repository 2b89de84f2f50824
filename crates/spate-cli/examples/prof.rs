#![allow(missing_docs, clippy::unwrap_used)]
use spate::prelude::*;
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    // raw(&path);
    let ctx = Context::new().unwrap();
    for _ in 0..2 {
        let t = Instant::now();
        let n = ctx
            .read_text(&[&path])
            .unwrap()
            .filter(|_| false)
            .count()
            .unwrap();
        println!("source+decode lines: {:?} {n}", t.elapsed());
        let t = Instant::now();
        let n = ctx
            .read_text(&[&path])
            .unwrap()
            .flat_map(into_words)
            .filter(|_| false)
            .count()
            .unwrap();
        println!("+tokenize: {:?} {n}", t.elapsed());
        let t = Instant::now();
        let n = ctx
            .read_text(&[&path])
            .unwrap()
            .flat_map(into_words)
            .count_by_value()
            .count()
            .unwrap();
        println!("+count: {:?} {n}", t.elapsed());
    }
}
#[allow(dead_code)]
pub fn raw(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let t = Instant::now();
    let mut n = 0usize;
    for line in text.lines() {
        for w in words(line) {
            n += w.len();
        }
    }
    println!("raw words(): {:?} {n}", t.elapsed());
    let t = Instant::now();
    let mut n = 0usize;
    for line in text.lines() {
        for w in into_words(line.to_string()) {
            n += w.len();
        }
    }
    println!("raw into_words(): {:?} {n}", t.elapsed());
}
