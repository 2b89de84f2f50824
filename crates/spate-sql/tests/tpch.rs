//! TPC-H SF 0.1 locally: the 22 queries match DuckDB's answers
//! (`common/tpch.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "common/tpch.rs"]
mod tpch;

use spate_core::context::Context;

#[test]
fn all_22_queries_match_the_answers() {
    let ctx = Context::builder().threads(2).build().unwrap();
    let failures = tpch::run_all(&ctx, &tpch::data());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
