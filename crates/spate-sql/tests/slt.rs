//! Golden SQL tests in the sqllogictest (`.slt`) format, run through
//! `SqlSession` (so the catalog, CREATE TABLE AS and INSERT are covered);
//! the runner and the format are in `common/slt.rs`.
//!
//! `SPATE_SLT_REWRITE=1 cargo test -p spate-sql --test slt` rewrites the
//! expected rows of every query with what spate returns now (review the
//! diff before committing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "common/slt.rs"]
mod slt;

use spate_core::context::Context;

fn run(name: &str) {
    let ctx = Context::builder().threads(2).build().unwrap();
    let rewrite = std::env::var_os("SPATE_SLT_REWRITE").is_some();
    let failures = slt::run_file(&ctx, name, rewrite, "local");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn basics() {
    run("basics.slt");
}

#[test]
fn catalog_and_writes() {
    run("catalog.slt");
}

#[test]
fn copy_and_formats() {
    run("write.slt");
}
