//! Word count as a job binary that runs on a cluster: the same program is
//! the driver and every executor, so its Rust closures exist wherever its
//! tasks run.
//!
//! ```sh
//! cargo build --release -p spate --example cluster_wordcount
//! JOB=target/release/examples/cluster_wordcount
//! $JOB cluster up --executors 2 --detach -- books/ counts/    # executors hold the job's steps
//! SPATE_CLUSTER=127.0.0.1:PORT $JOB books/ counts/            # the driver
//! $JOB books/ counts-local/                                   # the same job, locally
//! ```

use std::process::ExitCode;

use spate::prelude::*;

fn main() -> ExitCode {
    spate::cluster::main(|ctx, args| {
        let [input, output] = args else {
            return Err(Error::Usage(
                "usage: cluster_wordcount INPUT OUTPUT (run it as its executors too: \
                 cluster_wordcount cluster executor --scheduler ADDR -- INPUT OUTPUT)"
                    .into(),
            ));
        };
        let written = ctx
            .read_text(&[input])?
            .flat_map(into_words)
            .count_by_value()
            .map(|(word, n)| (word.to_string(), n))
            .write_text(output)?;
        if !ctx.is_declaring() {
            eprintln!("wrote {} words to {output}", written.rows);
        }
        Ok(())
    })
}
