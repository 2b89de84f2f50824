//! `spate mrjob`: mrjob scripts written for these tests, run unchanged, each
//! compared with mrjob's own runner (`-r inline`, or `-r local` for command
//! steps, which inline cannot run) and with the hand-checked expectations in
//! `tests/fixtures/mrjob/expected/` (see the README there). Needs
//! `pip install mrjob==0.7.4` (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use predicates::prelude::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mrjob")
}

/// `spate mrjob` run from the fixtures directory, as a user would.
fn spate() -> Command {
    let mut cmd = Command::cargo_bin("spate").unwrap();
    cmd.current_dir(dir()).args(["mrjob", "--threads", "2"]);
    cmd
}

/// mrjob's own runner, from the fixtures directory.
fn mrjob(script: &str, runner: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .current_dir(dir())
        .args([script, "-r", runner, "--no-conf"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mrjob -r {runner} {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(dir().join("expected").join(name)).unwrap()
}

fn ok(out: Output) -> (String, String) {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// Runs `script args input/` with spate (combiners inside map tasks, and as
/// separate processes) and with mrjob's `runner`; all must give the expected
/// output (as sorted lines). Returns spate's stderr (default mode).
fn same_as_mrjob(script: &str, args: &[&str], runner: &str, expect: &str) -> String {
    let want = expected(expect);
    let (separate, _) = ok(spate()
        .arg("--separate-combiner")
        .arg(script)
        .args(args)
        .arg("input/")
        .output()
        .unwrap());
    assert_eq!(
        sorted(&separate),
        want,
        "{script}: spate --separate-combiner"
    );
    let (spate_out, stderr) = ok(spate()
        .arg(script)
        .args(args)
        .arg("input/")
        .output()
        .unwrap());
    assert_eq!(sorted(&spate_out), want, "{script}: spate vs expected");
    let theirs = mrjob(script, runner, &[args, &["input/"]].concat());
    assert_eq!(
        sorted(&theirs),
        want,
        "{script}: mrjob -r {runner} vs expected"
    );
    stderr
}

#[test]
fn word_frequency_with_combiner() {
    let stderr = same_as_mrjob("mr_word_freq.py", &[], "inline", "mr_word_freq.txt");
    assert!(stderr.contains("Combine input records=247"), "{stderr}");
    assert!(stderr.contains("Reduce output records=144"), "{stderr}");
}

#[test]
fn keys_and_values_json_changes_reach_the_combiner_decoded() {
    let stderr = same_as_mrjob("mr_complex_keys.py", &[], "inline", "mr_complex_keys.txt");
    // The combiner ran inside the map tasks (the driver reports its counts).
    assert!(stderr.contains("Combine input records=741"), "{stderr}");
    assert!(stderr.contains("Map output records=741"), "{stderr}");
}

#[test]
fn two_steps_most_used_word() {
    same_as_mrjob(
        "mr_most_used_word.py",
        &[],
        "inline",
        "mr_most_used_word.txt",
    );
    assert_eq!(expected("mr_most_used_word.txt"), "\"and\"\t23\n");
}

#[test]
fn map_only_job() {
    same_as_mrjob("mr_map_only.py", &[], "inline", "mr_map_only.txt");
}

#[test]
fn no_combiner_with_passthrough_option_and_hooks() {
    same_as_mrjob(
        "mr_no_combiner.py",
        &["--min-count", "3"],
        "inline",
        "mr_no_combiner.txt",
    );
    // The default --min-count keeps every word.
    let (out, _) = ok(spate()
        .args(["mr_no_combiner.py", "input/"])
        .output()
        .unwrap());
    assert_eq!(sorted(&out), expected("mr_word_freq.txt"));
}

#[test]
fn counters_and_status_are_reported() {
    let stderr = same_as_mrjob("mr_counters.py", &[], "inline", "mr_counters.txt");
    // mrjob's own totals, from its runner (kept in the fixtures).
    let json: serde_json::Value =
        serde_json::from_str(&expected("mr_counters.counters.json")).unwrap();
    for (group, counters) in json[0].as_object().unwrap() {
        let mut block = format!("\t{group}\n");
        for (name, n) in counters.as_object().unwrap() {
            block.push_str(&format!("\t\t{name}={n}\n"));
        }
        assert!(stderr.contains(&block), "{block} not in {stderr}");
    }
    assert!(stderr.contains(": reducing "), "{stderr}");
}

#[test]
fn side_files_declared_by_the_job() {
    same_as_mrjob("mr_side_file.py", &[], "inline", "mr_side_file.txt");
}

#[test]
fn jobconf_from_the_job_and_the_command_line() {
    same_as_mrjob("mr_jobconf.py", &[], "inline", "mr_jobconf.txt");
    same_as_mrjob(
        "mr_jobconf.py",
        &["-D", "my.custom.setting=world"],
        "inline",
        "mr_jobconf.world.txt",
    );
}

#[test]
fn sort_values_orders_each_keys_values() {
    same_as_mrjob("mr_sort_values.py", &[], "inline", "mr_sort_values.txt");
}

#[test]
fn command_steps_and_pre_filters() {
    same_as_mrjob("mr_pre_filter.py", &[], "local", "mr_pre_filter.txt");
    // mrjob's local runner feeds command steps raw file bytes, so a CRLF
    // line keeps its CR; spate reads lines as Hadoop does (CR LF stripped).
    let (out, _) = ok(spate()
        .args(["mr_cmd_steps.py", "input/"])
        .output()
        .unwrap());
    let theirs = mrjob("mr_cmd_steps.py", "local", &["input/"]);
    let want = expected("mr_cmd_steps.txt");
    assert_eq!(sorted(&theirs), want);
    assert_eq!(sorted(&out), sorted(&want.replace("\r\t", "\t")));
}

#[test]
fn output_directory_and_standard_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    spate()
        .args(["mr_word_freq.py", "input/a.txt", "input/b.txt", "-o"])
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains("wrote 144 lines"));
    assert!(out.join("_SUCCESS").exists());
    let mut all = String::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            let part = std::fs::read_to_string(&path).unwrap();
            // Each reducer's output is in key order.
            assert_eq!(part, sorted(&part));
            all.push_str(&part);
        }
    }
    assert_eq!(sorted(&all), expected("mr_word_freq.txt"));

    // No input paths: standard input, as mrjob does.
    let input = std::fs::read(dir().join("input/a.txt")).unwrap();
    let (out, _) = ok(spate()
        .arg("mr_word_freq.py")
        .write_stdin(input.clone())
        .output()
        .unwrap());
    let theirs = std::process::Command::new("python3")
        .current_dir(dir())
        .args(["mr_word_freq.py", "-r", "inline", "--no-conf"])
        .stdin(std::fs::File::open(dir().join("input/a.txt")).unwrap())
        .output()
        .unwrap();
    assert!(theirs.status.success());
    assert_eq!(
        sorted(&out),
        sorted(&String::from_utf8(theirs.stdout).unwrap())
    );
}

#[test]
fn a_failing_task_fails_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    spate()
        .args(["mr_fail.py", "input_fail/", "-o"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("step-1/mapper"))
        .stderr(predicate::str::contains(
            "--step-num=0 --mapper` exited with code 1",
        ))
        .stderr(predicate::str::contains("ValueError: bad record"));
    assert!(!out.exists());
}

#[test]
fn bad_scripts_are_usage_errors() {
    spate()
        .args(["no_such_job.py", "input/"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no_such_job.py not found"));
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("mr_two.py");
    std::fs::write(
        &script,
        "from mrjob.job import MRJob\nclass A(MRJob):\n    pass\nclass B(MRJob):\n    pass\n",
    )
    .unwrap();
    spate()
        .arg(&script)
        .arg("input/")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("2 MRJob classes (A, B)"));
    spate()
        .args([
            "--python-bin",
            "/no/such/python",
            "mr_word_freq.py",
            "input/",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/no/such/python"));
}

/// `mapper_raw` (mrjob's manifest protocol): each input file whole, one map
/// task per file, with its local path and URI; compressed files decompressed.
#[test]
fn raw_mapper_reads_each_file_whole_in_its_own_task() {
    let want = expected("mr_raw.txt");
    let (out, _) = ok(spate().args(["mr_raw.py", "input/"]).output().unwrap());
    assert_eq!(sorted(&out), want);
    let theirs = mrjob("mr_raw.py", "inline", &["input/a.txt", "input/b.txt"]);
    assert_eq!(sorted(&theirs), want);

    let tmp = tempfile::tempdir().unwrap();
    let gz = tmp.path().join("a.txt.gz");
    let zipped = std::process::Command::new("gzip")
        .arg("-c")
        .arg(dir().join("input/a.txt"))
        .output()
        .unwrap();
    assert!(zipped.status.success());
    std::fs::write(&gz, zipped.stdout).unwrap();
    let (out, _) = ok(spate().arg("mr_raw.py").arg(&gz).output().unwrap());
    assert_eq!(
        sorted(&out),
        "\"a.txt.gz\"\t[23, 168]\n\"files per map task\"\t[1]\n"
    );

    // Standard input cannot be read whole, file by file.
    spate()
        .arg("mr_raw.py")
        .write_stdin("x\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs input paths"));
}

/// Steps and options mrjob can declare but spate cannot run are refused
/// before anything starts, naming the step and the option.
#[test]
fn jobs_spate_cannot_run_are_refused_before_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let out_dir = tmp.path().join("out");
    let output_format = script(
        "mr_output_format.py",
        "from mrjob.job import MRJob\nclass J(MRJob):\n    \
         HADOOP_OUTPUT_FORMAT = 'org.apache.hadoop.mapred.SequenceFileOutputFormat'\n    \
         def mapper(self, _, line):\n        yield line, 1\n",
    );
    spate()
        .arg(&output_format)
        .args(["input/", "-o"])
        .arg(&out_dir)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "HADOOP_OUTPUT_FORMAT / --hadoop-output-format): org.apache.hadoop.mapred.SequenceFileOutputFormat",
        ));
    for (name, attribute, value, message) in [
        (
            "mr_input_format.py",
            "HADOOP_INPUT_FORMAT",
            "'org.apache.hadoop.mapred.lib.NLineInputFormat'",
            "HADOOP_INPUT_FORMAT / --hadoop-input-format): \
             org.apache.hadoop.mapred.lib.NLineInputFormat",
        ),
        (
            "mr_libjars.py",
            "LIBJARS",
            "['extra.jar']",
            "libjars (LIBJARS / --libjars): ",
        ),
    ] {
        let job = script(
            name,
            &format!(
                "from mrjob.job import MRJob\nclass J(MRJob):\n    \
                 {attribute} = {value}\n    \
                 def mapper(self, _, line):\n        yield line, 1\n"
            ),
        );
        spate()
            .arg(&job)
            .args(["input/", "-o"])
            .arg(&out_dir)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    let jar = script(
        "mr_jar.py",
        "from mrjob.job import MRJob\nfrom mrjob.step import JarStep, MRStep\nclass J(MRJob):\n    \
         def steps(self):\n        return [MRStep(mapper=self.m), JarStep(jar='x.jar')]\n    \
         def m(self, _, line):\n        yield line, 1\n",
    );
    spate()
        .arg(&jar)
        .args(["input/", "-o"])
        .arg(&out_dir)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("step 2 is a jar step (JarStep"));
    let spark = script(
        "mr_spark.py",
        "from mrjob.job import MRJob\nclass J(MRJob):\n    \
         def spark(self, input_path, output_path):\n        pass\n",
    );
    spate()
        .arg(&spark)
        .arg("input/")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "step 1 is a spark step (a Spark step)",
        ));
    assert!(!out_dir.exists(), "nothing ran");
}

/// spate's own options may follow the script; the job's `--help` is mrjob's.
#[test]
fn spate_options_after_the_script_and_the_jobs_help() {
    let want = expected("mr_word_freq.txt");
    let (out, _) = ok(Command::cargo_bin("spate")
        .unwrap()
        .current_dir(dir())
        .args(["mrjob", "mr_word_freq.py", "--threads", "3", "input/"])
        .args(["--memory-limit=64MiB", "--separate-combiner"])
        .output()
        .unwrap());
    assert_eq!(sorted(&out), want);
    spate()
        .args(["mr_word_freq.py", "--threads", "0", "input/"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--threads 0: expected a positive number",
        ));
    // A job that defines an option of the same name keeps it.
    let tmp = tempfile::tempdir().unwrap();
    let own = tmp.path().join("mr_threads.py");
    std::fs::write(
        &own,
        "from mrjob.job import MRJob\nclass J(MRJob):\n    \
         def configure_args(self):\n        super().configure_args()\n        \
         self.add_passthru_arg('--threads', type=int)\n    \
         def mapper(self, _, line):\n        yield 'threads', self.options.threads\n    \
         def reducer(self, k, vs):\n        yield k, max(vs)\n\
         if __name__ == '__main__':\n    J.run()\n",
    )
    .unwrap();
    let (out, _) = ok(spate()
        .arg(&own)
        .args(["--threads", "7", "input/"])
        .output()
        .unwrap());
    assert_eq!(out, "\"threads\"\t7\n");
    spate()
        .args(["mr_no_combiner.py", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--min-count"))
        .stdout(predicate::str::contains("spate mrjob runs this job"));
}

/// The in-map combine buffer is bounded by bytes, from `--memory-limit`:
/// under a small budget it flushes often, and the answer is the same.
#[test]
fn in_map_combine_buffer_follows_the_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("words.txt");
    // Words the job's `[a-z']+` keeps: digits spelled as letters.
    let word = |i: usize| -> String {
        let digits = i.to_string();
        let letters: String = digits.bytes().map(|d| (b'a' + d - b'0') as char).collect();
        format!("w{letters}")
    };
    let text: String = (0..30_000)
        .map(|i| format!("{w} {w} common\n", w = word(i)))
        .collect();
    std::fs::write(&input, text).unwrap();
    let flushes = |limit: Option<&str>| -> (u64, String) {
        let mut cmd = spate();
        if let Some(l) = limit {
            cmd.args(["--memory-limit", l]);
        }
        let (out, stderr) = ok(cmd.arg("mr_word_freq.py").arg(&input).output().unwrap());
        let n = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("In-map combine buffer flushes="))
            .unwrap_or_else(|| panic!("no flush counter in {stderr}"))
            .parse()
            .unwrap();
        (n, sorted(&out))
    };
    let (roomy, want) = flushes(None);
    let (tight, got) = flushes(Some("8MiB"));
    assert_eq!(got, want);
    assert!(want.contains("\"common\"\t30000\n") && want.contains("\"wcjjjj\"\t2\n"));
    assert!(
        roomy <= 2,
        "one flush per map task without a limit: {roomy}"
    );
    assert!(tight > 4, "a 1 MiB buffer flushes often: {tight}");
}
