//! Every spate node round-trips through the codecs (the cluster runner ships
//! plans this way), and the decoded plan computes the same result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use spate_core::codec::{SpateLogicalCodec, SpatePhysicalCodec};
use spate_core::prelude::*;

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn logical_and_physical_plans_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    std::fs::write(&path, "a b a\nc b a\nd\n").unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let ds = ctx
        .read_text(&[&path])
        .unwrap()
        .flat_map(into_words)
        .count_by_value()
        .map(|(w, c)| (w.to_string(), c))
        .reduce_by_key(|a, b| a + b)
        .top_by(3, |(_, c)| *c);
    let expected = sorted(ds.clone().collect().unwrap());

    // Logical plan: encode, decode in the same "process" (same registry), run.
    let plan = ds.logical_plan().unwrap();
    let logical = SpateLogicalCodec::new(ctx.registry().clone());
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &logical).unwrap();
    let task = ctx.session().task_ctx();
    let decoded = logical_plan_from_bytes_with_extension_codec(&bytes, &task, &logical).unwrap();
    assert_eq!(
        format!("{}", decoded.display_indent()),
        format!("{}", plan.display_indent())
    );
    let df = datafusion::dataframe::DataFrame::new(ctx.session().state(), decoded);
    let batches = ctx.block_on(df.collect()).unwrap();
    let codec = spate_core::rows::RowCodec::<(String, u64)>::new().unwrap();
    let got: Vec<(String, u64)> = batches
        .iter()
        .flat_map(|b| codec.decode(b).unwrap())
        .collect();
    assert_eq!(sorted(got), expected);

    // Physical plan: every node (text source, closure ops, DataFusion's own) encodes.
    let physical = ds.clone().physical_plan().unwrap();
    let phys_codec = SpatePhysicalCodec::new(ctx.registry().clone());
    let bytes = physical_plan_to_bytes_with_extension_codec(physical.clone(), &phys_codec).unwrap();
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &task, &phys_codec).unwrap();
    let batches = ctx
        .block_on(datafusion::physical_plan::collect(decoded, task.clone()))
        .unwrap();
    let got: Vec<(String, u64)> = batches
        .iter()
        .flat_map(|b| codec.decode(b).unwrap())
        .collect();
    assert_eq!(sorted(got), expected);

    // A process that did not build the steps (the scheduler) decodes them
    // from their declarations, plans with them and encodes them again
    // unchanged; running one there fails, naming the step.
    let empty = SpatePhysicalCodec::new(Arc::new(spate_core::context::Registry::default()));
    let declared = physical_plan_from_bytes_with_extension_codec(&bytes, &task, &empty).unwrap();
    assert_eq!(declared.schema(), physical.schema());
    let again = physical_plan_to_bytes_with_extension_codec(declared.clone(), &empty).unwrap();
    assert_eq!(again, bytes);
    let err = ctx
        .block_on(datafusion::physical_plan::collect(declared, task))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not defined in this process"), "{err}");
    assert!(err.contains("step '"), "{err}");
}

/// Encodes `ds`'s logical and physical plans, decodes them in the same
/// process and checks that they compute what `ds` does (as a multiset).
fn assert_round_trips<T: Data + Ord + std::fmt::Debug>(ctx: &Context, ds: Dataset<T>) {
    let expected = sorted(ds.clone().collect().unwrap());
    let codec = spate_core::rows::RowCodec::<T>::new().unwrap();
    let decode = |batches: Vec<arrow::record_batch::RecordBatch>| -> Vec<T> {
        sorted(
            batches
                .iter()
                .flat_map(|b| codec.decode(b).unwrap())
                .collect(),
        )
    };
    let task = ctx.session().task_ctx();
    let plan = ds.logical_plan().unwrap();
    let logical = SpateLogicalCodec::new(ctx.registry().clone());
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &logical).unwrap();
    let decoded = logical_plan_from_bytes_with_extension_codec(&bytes, &task, &logical).unwrap();
    let df = datafusion::dataframe::DataFrame::new(ctx.session().state(), decoded);
    assert_eq!(decode(ctx.block_on(df.collect()).unwrap()), expected);

    let physical = ds.physical_plan().unwrap();
    let phys_codec = SpatePhysicalCodec::new(ctx.registry().clone());
    let bytes = physical_plan_to_bytes_with_extension_codec(physical.clone(), &phys_codec).unwrap();
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &task, &phys_codec).unwrap();
    let text = |p: &Arc<dyn datafusion::physical_plan::ExecutionPlan>| {
        datafusion::physical_plan::displayable(p.as_ref())
            .indent(false)
            .to_string()
    };
    assert_eq!(text(&decoded), text(&physical));
    let batches = ctx
        .block_on(datafusion::physical_plan::collect(decoded, task))
        .unwrap();
    assert_eq!(decode(batches), expected);
}

/// The nodes of the Spark vocabulary (positions, spreading, set
/// operations, cross and outer joins, cogroups, global folds) round-trip.
#[test]
fn vocabulary_plans_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let text: String = (0..500)
        .map(|i| format!("w{} x{}\n", i % 37, i % 11))
        .collect();
    std::fs::write(&path, text).unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let words = || {
        ctx.read_text(&[&path])
            .unwrap()
            .flat_map(into_words)
            .map(|w| w.to_string())
    };
    let pairs = || words().map(|w| (w.len() as u64, w));
    assert_round_trips(&ctx, words().sample(false, 0.5, 3).zip_with_index());
    assert_round_trips(&ctx, words().repartition(3));
    assert_round_trips(&ctx, pairs().partition_by(3, |k| *k as usize));
    assert_round_trips(
        &ctx,
        words().subtract(words().filter(|w| w.starts_with('x'))),
    );
    assert_round_trips(&ctx, words().intersection(words().sample(true, 0.3, 1)));
    let some = ctx
        .read_text(&[&path])
        .unwrap()
        .filter(|l| l.starts_with("w1 "));
    assert_round_trips(&ctx, words().distinct().cartesian(some));
    assert_round_trips(&ctx, pairs().cogroup(pairs().map_values(|w| w.len())));
    assert_round_trips(
        &ctx,
        pairs().full_outer_join(pairs().filter(|(k, _)| *k > 2)),
    );
    assert_round_trips(&ctx, pairs().right_join(pairs().filter(|(k, _)| *k > 2)));
    assert_round_trips(
        &ctx,
        pairs().aggregate_by_key(0u64, |n, _| n + 1, |a, b| a + b),
    );
    assert_round_trips(&ctx, words().map(|w| w.len() as u64).combine_globally(Sum));
    assert_round_trips(&ctx, ctx.whole_text_files(&[&path]).unwrap());
    // A sort of an aggregate's output compacts it first (`CompactExec`).
    let counts = words().count_by_value().sort_by_key(true);
    let plan =
        datafusion::physical_plan::displayable(counts.clone().physical_plan().unwrap().as_ref())
            .indent(false)
            .to_string();
    assert!(plan.contains("CompactExec"), "{plan}");
    assert_round_trips(&ctx, counts);
}

/// A file writer on a cluster writes by task attempt: the rule wraps it,
/// the wrapper round-trips through the codec, and each execution (attempt)
/// writes its own directory and, once its files are closed, its marker.
#[test]
fn file_writers_write_by_attempt_and_round_trip() {
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use spate_core::cluster_writes::{AttemptWriteExec, WritesByAttempt};

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let session = datafusion::prelude::SessionContext::new();
    let df = ctx_block_on(session.sql(&format!(
        "COPY (SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS t(n, s)) TO '{}/' \
         STORED AS CSV",
        out.display()
    )))
    .unwrap();
    let plan = ctx_block_on(df.create_physical_plan()).unwrap();
    let rule = WritesByAttempt;
    let wrapped = rule
        .optimize(plan, session.state().config_options())
        .unwrap();
    assert!(wrapped.downcast_ref::<AttemptWriteExec>().is_some());
    // Applied again, the rule changes nothing.
    let again = rule
        .optimize(wrapped.clone(), session.state().config_options())
        .unwrap();
    assert!(
        again.children()[0]
            .downcast_ref::<AttemptWriteExec>()
            .is_none()
    );

    let codec = SpatePhysicalCodec::new(Arc::new(spate_core::context::Registry::default()));
    let bytes = physical_plan_to_bytes_with_extension_codec(wrapped, &codec).unwrap();
    let task = session.task_ctx();
    let decoded = physical_plan_from_bytes_with_extension_codec(&bytes, &task, &codec).unwrap();
    assert!(decoded.downcast_ref::<AttemptWriteExec>().is_some());
    for _ in 0..2 {
        let batches = ctx_block_on(datafusion::physical_plan::collect(
            decoded.clone(),
            task.clone(),
        ))
        .unwrap();
        let count = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap()
            .value(0);
        assert_eq!(count, 3);
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for pair in names.chunks(2) {
        // attempt-ID/ with the rows, and attempt-ID.done beside it
        assert!(pair[0].starts_with("attempt-"), "{names:?}");
        assert_eq!(pair[1], format!("{}.done", pair[0]));
        assert_eq!(
            std::fs::read_to_string(out.join(&pair[1])).unwrap(),
            "3",
            "the marker holds the attempt's rows"
        );
        let files: Vec<_> = std::fs::read_dir(out.join(&pair[0])).unwrap().collect();
        assert!(!files.is_empty());
    }
}

fn ctx_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
