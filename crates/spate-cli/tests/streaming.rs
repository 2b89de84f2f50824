//! `spate streaming`: Hadoop Streaming jobs with shell, awk and Python tasks,
//! checked against hand-checked expectations and a serial reference run of
//! the same commands (`cat | mapper | sort | reducer`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streaming")
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn spate() -> Command {
    let mut cmd = Command::cargo_bin("spate").unwrap();
    cmd.arg("streaming");
    cmd
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("expected").join(name)).unwrap()
}

/// The part files of a committed output directory, in order.
fn parts(dir: &Path) -> Vec<String> {
    assert!(dir.join("_SUCCESS").exists(), "no _SUCCESS in {dir:?}");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
        .collect()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Whether the lines are in key order (a key's values come in no set order).
fn is_sorted(text: &str) -> bool {
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(l))
        .collect();
    keys.windows(2).all(|w| w[0] <= w[1])
}

#[test]
fn shell_mapper_and_awk_reducer_with_three_reducers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    spate()
        .args(["-input", &fixture("input"), "-output"])
        .arg(&out)
        .args(["-mapper", &fixture("wc_mapper.sh")])
        .args(["-reducer", &format!("awk -f {}", fixture("wc_reducer.awk"))])
        .args(["-numReduceTasks", "3", "--threads", "2"])
        .assert()
        .success()
        .stderr(predicate::str::contains("Map input records=5"))
        .stderr(predicate::str::contains("Reduce output records=16"));
    let parts = parts(&out);
    assert_eq!(parts.len(), 3, "one part file per reducer");
    let mut keys_seen = BTreeSet::new();
    for part in &parts {
        assert!(is_sorted(part), "each reducer's output is sorted: {part}");
        for line in part.lines() {
            // A key is reduced by exactly one reducer.
            assert!(keys_seen.insert(line.split('\t').next().unwrap().to_string()));
        }
    }
    assert_eq!(
        sorted_lines(&parts.concat()),
        sorted_lines(&expected("wordcount.txt"))
    );
}

#[test]
fn python_tasks_with_combiner_to_stdout() {
    let mapper = format!("python3 {}", fixture("wc_mapper.py"));
    let reducer = format!("python3 {}", fixture("wc_reducer.py"));
    let assert = spate()
        .args(["-input", &fixture("input/*.txt"), "-output", "-"])
        .args([
            "-mapper",
            &mapper,
            "-combiner",
            &reducer,
            "-reducer",
            &reducer,
        ])
        .args(["-numReduceTasks", "1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("Combine input records=26"));
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    // One reducer: the whole output is in key order.
    assert_eq!(stdout, expected("wordcount.txt"));
}

#[test]
fn map_only_jobs_keep_lines_and_split_order() {
    for how in [["-numReduceTasks", "0"], ["-reducer", "NONE"]] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        spate()
            .args(["-input", &fixture("input/a.txt"), "-output"])
            .arg(&out)
            .args(["-mapper", "tr a-z A-Z"])
            .args(how)
            .assert()
            .success();
        assert_eq!(
            parts(&out).concat(),
            "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.\nTHE DOG DIDN'T CARE; THE FOX DID.\n"
        );
    }
}

#[test]
fn identity_mapper_and_reducer_sort_lines() {
    // `cat` mapper, no -reducer: Hadoop's identity reducer, so the job sorts.
    // Lines without a tab are keys with no value and come back unchanged.
    let out = spate()
        .args(["-input", &fixture("input/b.txt"), "-output", "-"])
        .args(["-mapper", "cat", "-numReduceTasks", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "\nA fox, a dog, and the end\nof the story\n"
    );
}

#[test]
fn reporter_counters_and_status_are_totalled() {
    let out = spate()
        .args(["-input", &fixture("input"), "-output", "-"])
        .args(["-mapper", &fixture("counters_mapper.sh")])
        .args(["-reducer", "NONE"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    // 9 + 7 words on the first file's lines, 7 + 0 + 3 on the second's.
    assert!(stderr.contains("\tWords\n\t\tSeen=26\n"), "{stderr}");
    assert!(stderr.contains("\tLines\n\t\tRead=5\n"), "{stderr}");
    assert!(stderr.contains("status of task_"), "{stderr}");
    assert!(stderr.contains(": read 2 lines"), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 26);
}

#[test]
fn tasks_see_hadoop_variables_properties_and_cmdenv() {
    let out = spate()
        .args(["-input", &fixture("input/a.txt"), "-input"])
        .arg(fixture("input/b.txt"))
        .args(["-output", "-", "-mapper", &fixture("env_mapper.sh")])
        .args([
            "-D",
            "my.custom.setting=hello there",
            "-cmdenv",
            "GREETING=hi",
        ])
        .args(["-numReduceTasks", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut tasks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("task")).collect();
    tasks.sort();
    let a = fixture("input/a.txt");
    let b = fixture("input/b.txt");
    assert_eq!(
        tasks,
        vec![
            format!("task\t0 a.txt {a}").as_str(),
            format!("task\t1 b.txt {b}").as_str()
        ]
    );
    assert_eq!(stdout.matches("prop\thello there\n").count(), 2);
    assert_eq!(stdout.matches("cmdenv\thi\n").count(), 2);
}

#[test]
fn side_files_are_in_the_task_directory() {
    let out = spate()
        .args(["-input", &fixture("input"), "-output", "-"])
        .args(["-mapper", "./lookup_mapper.sh", "-reducer"])
        .arg(format!("awk -f {}", fixture("wc_reducer.awk")))
        .args(["-file", &fixture("lookup_mapper.sh")])
        .args([
            "-files",
            &format!("{}#stopwords.txt", fixture("stopwords.txt")),
        ])
        .args(["-numReduceTasks", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: String = expected("wordcount.txt")
        .lines()
        .filter(|l| !["the", "and", "a", "of"].contains(&l.split('\t').next().unwrap()))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

#[test]
fn failing_task_is_retried_then_fails_the_job_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("in.txt"), "ok line\nthis line will FAIL\n").unwrap();
    let out = tmp.path().join("out");
    spate()
        .args(["-input"])
        .arg(tmp.path().join("in.txt"))
        .arg("-output")
        .arg(&out)
        .args([
            "-mapper",
            &fixture("fail_mapper.sh"),
            "-numReduceTasks",
            "1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("step-1/mapper"))
        .stderr(predicate::str::contains("failed 4 times"))
        .stderr(predicate::str::contains(
            "fail_mapper.sh` exited with code 3",
        ))
        .stderr(predicate::str::contains("bad record: this line will FAIL"))
        .stderr(predicate::str::contains("in.txt bytes 0..28"));
    assert!(!out.exists(), "no output is left after a failed job");
    // With one attempt allowed, it fails at once.
    spate()
        .args(["-input"])
        .arg(tmp.path().join("in.txt"))
        .args(["-output", "-", "-D", "mapreduce.map.maxattempts=1"])
        .args([
            "-mapper",
            &fixture("fail_mapper.sh"),
            "-numReduceTasks",
            "1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("failed 1 time:"));
}

#[test]
fn a_retried_task_passes_on_only_its_successful_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let out = spate()
        .env("FLAKY_DIR", tmp.path())
        .args(["-input", &fixture("input"), "-output", "-"])
        .args([
            "-mapper",
            &fixture("flaky_mapper.sh"),
            "-numReduceTasks",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("partial"), "{stdout}");
    let mut want = std::fs::read_to_string(fixtures().join("input/a.txt")).unwrap();
    want.push_str("A fox, a dog, and the end\n\nof the story\n");
    assert_eq!(sorted_lines(&stdout), sorted_lines(&want));
    // Each task failed once: one marker per task.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}

#[test]
fn key_field_comparator_gives_a_secondary_sort() {
    let out = spate()
        .args(["-input", &fixture("input_keys"), "-output", "-"])
        .args(["-mapper", "cat", "-reducer", "cat", "-numReduceTasks", "1"])
        .args(["-D", "stream.num.map.output.key.fields=2"])
        .args([
            "-D",
            "mapreduce.job.output.key.comparator.class=org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator",
        ])
        .args(["-D", "mapreduce.partition.keycomparator.options=-k2,2nr"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "jones.bob\t100\tberlin\n\
         brown.zed\t42\tlima\n\
         smith.john\t42\tlondon\n\
         jones.amy\t9\trome\n\
         smith.anna\t7\tparis\n\
         smith.john\t3\toslo\n"
    );
}

#[test]
fn key_field_partitioner_sends_a_field_to_one_reducer() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    spate()
        .args(["-input", &fixture("input_keys"), "-output"])
        .arg(&out)
        .args(["-mapper", "cat", "-numReduceTasks", "4"])
        .args([
            "-partitioner",
            "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
        ])
        .args(["-D", "map.output.key.field.separator=."])
        .args(["-D", "mapreduce.partition.keypartitioner.options=-k1,1"])
        .assert()
        .success();
    let parts = parts(&out);
    assert_eq!(parts.len(), 4);
    let mut home: BTreeMap<String, usize> = BTreeMap::new();
    for (i, part) in parts.iter().enumerate() {
        assert!(is_sorted(part));
        for line in part.lines() {
            let surname = line.split('.').next().unwrap().to_string();
            assert_eq!(*home.entry(surname).or_insert(i), i, "{line}");
        }
    }
    assert_eq!(parts.concat().lines().count(), 6);
    assert_eq!(home.len(), 3);
}

#[test]
fn partitioner_options_without_the_partitioner_warn() {
    spate()
        .args([
            "-input",
            &fixture("input_keys"),
            "-output",
            "-",
            "-mapper",
            "cat",
        ])
        .args(["-D", "mapreduce.partition.keypartitioner.options=-k1,1"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: step 1: mapreduce.partition.keypartitioner.options is ignored",
        ));
}

#[test]
fn bad_usage_is_exit_code_two() {
    spate()
        .args(["-input", "/no/such/input", "-output", "-", "-mapper", "cat"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/no/such/input"));
    spate()
        .args(["-input", &fixture("input"), "-output", "-", "-bogus", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("-bogus"));
    spate()
        .args([
            "-input",
            &fixture("input"),
            "-output",
            "-",
            "-numReduceTasks",
            "x",
        ])
        .assert()
        .code(2);
    spate()
        .arg("-help")
        .assert()
        .success()
        .stdout(predicate::str::contains("-numReduceTasks"));
}

/// A deterministic text of `lines` lines of pseudo-random words.
fn corpus(path: &Path, lines: usize) {
    let words = [
        "alpha", "beta", "gamma", "delta", "Epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "don't",
        "café",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut text = String::new();
    for _ in 0..lines {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state % 12) as usize;
        for j in 0..n {
            let w = words[((state >> (j * 5)) % words.len() as u64) as usize];
            text.push_str(w);
            text.push(if j % 3 == 2 { ',' } else { ' ' });
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn large_input_is_split_and_matches_the_native_word_count() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.txt");
    corpus(&input, 200_000);
    let streamed = spate()
        .args(["-input"])
        .arg(&input)
        .args(["-output", "-", "-mapper"])
        .arg(format!(
            "echo reporter:counter:Tasks,Maps,1 >&2; {}",
            fixture("wc_mapper.sh")
        ))
        .args([
            "-combiner",
            &format!("awk -f {}", fixture("wc_reducer.awk")),
        ])
        .args(["-reducer", &format!("awk -f {}", fixture("wc_reducer.awk"))])
        .args(["--threads", "2", "--memory-limit", "64MiB"])
        .output()
        .unwrap();
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    let stderr = String::from_utf8(streamed.stderr).unwrap();
    assert!(stderr.contains("Map input records=200000"), "{stderr}");
    // The file was cut into byte ranges: one map task per core.
    assert!(stderr.contains("\tTasks\n\t\tMaps=2\n"), "{stderr}");
    let native = Command::cargo_bin("spate")
        .unwrap()
        .args(["run", "wordcount", "-i"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(native.status.success());
    // The shell tokenizer drops non-ASCII letters ("café" → "caf"); compare
    // on the words both see the same way.
    let keep = |text: &[u8]| -> Vec<String> {
        sorted_lines(&String::from_utf8_lossy(text))
            .into_iter()
            .filter(|l| l.is_ascii() && !l.starts_with("caf"))
            .collect()
    };
    let got = keep(&streamed.stdout);
    assert_eq!(got, keep(&native.stdout));
    assert!(got.len() >= 20);
}

#[test]
fn reduce_sort_spills_under_a_small_memory_limit() {
    // ~30 MiB of distinct keys in scrambled order through `cat` tasks, under
    // a 16 MiB budget: the sort before the reducers must spill to finish.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("keys.txt");
    let n: u64 = 700_000;
    let mut text = String::with_capacity(n as usize * 40);
    for i in 0..n {
        let k = (i * 7_919) % n;
        text.push_str(&format!("key{k:09}\tvalue {i} padding padding\n"));
    }
    std::fs::write(&input, &text).unwrap();
    let out = tmp.path().join("out");
    spate()
        .args(["-input"])
        .arg(&input)
        .arg("-output")
        .arg(&out)
        .args(["-mapper", "cat", "-reducer", "cat", "-numReduceTasks", "2"])
        .args(["--threads", "2", "--memory-limit", "16MiB"])
        .assert()
        .success();
    let parts = parts(&out);
    let mut total = 0;
    for part in &parts {
        assert!(is_sorted(part));
        total += part.lines().count();
    }
    assert_eq!(total, n as usize);
    assert_eq!(sorted_lines(&parts.concat()), sorted_lines(&text));
}

/// Hadoop Streaming's documentation ("Hadoop Aggregate Package"): a Python
/// mapper shipped with `-file` and named bare in `-mapper`, and the
/// `aggregate` reducer, with and without the `aggregate` combiner.
#[test]
fn shipped_mapper_and_the_aggregate_package_as_hadoop_documents_them() {
    let dir = tempfile::tempdir().unwrap();
    let mapper = dir.path().join("myAggregatorForKeyCount.py");
    // Written as the documentation writes it, and left non-executable: the
    // task must get an executable copy, as Hadoop ships files.
    std::fs::write(
        &mapper,
        "#!/usr/bin/env python3\n\
         import sys\n\
         def generateLongCountToken(id):\n    return \"LongValueSum:\" + id + \"\\t\" + \"1\"\n\
         def main(argv):\n    line = sys.stdin.readline()\n    while line:\n        line = line[:-1]\n        fields = line.split(\"\\t\")\n        print(generateLongCountToken(fields[0]))\n        line = sys.stdin.readline()\n\
         if __name__ == \"__main__\":\n    main(sys.argv)\n",
    )
    .unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        "apple\tred\npear\tgreen\napple\tgreen\nfig\tpurple\napple\n",
    )
    .unwrap();
    let expected = "apple\t3\nfig\t1\npear\t1\n";
    for combiner in [None, Some("aggregate")] {
        let out = dir.path().join(format!("out-{}", combiner.is_some()));
        let mut cmd = spate();
        cmd.args(["-input"]).arg(&input).arg("-output").arg(&out);
        cmd.args([
            "-mapper",
            "myAggregatorForKeyCount.py",
            "-reducer",
            "aggregate",
        ]);
        cmd.args(["-numReduceTasks", "1", "-file"]).arg(&mapper);
        if let Some(c) = combiner {
            cmd.args(["-combiner", c]);
        }
        cmd.assert().success();
        assert_eq!(parts(&out).concat(), expected);
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&mapper).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0, "the user's file keeps its mode");

    // Every aggregator, from an awk mapper; a combined run gives the same lines.
    let mapper = "awk -F'\\t' '{ print \"LongValueSum:n\\t\" $2; print \"LongValueMax:max\\t\" $2; \
                  print \"LongValueMin:min\\t\" $2; print \"DoubleValueSum:half\\t\" $2/2; \
                  print \"StringValueMax:last\\t\" $1; print \"StringValueMin:first\\t\" $1; \
                  print \"UniqValueCount:names\\t\" $1; print \"ValueHistogram:hist\\t\" $1 }'";
    std::fs::write(&input, "b\t4\na\t-2\nc\t9\nb\t1\n").unwrap();
    // In the order of the typed keys, as Hadoop sorts them.
    let expected = "half\t6.0\nmax\t9\nmin\t-2\nn\t12\nlast\tc\nfirst\ta\nnames\t3\n\
                    hist\t3\t1\t1\t2\t1.3333333333333333\t0.4714045207910317\n";
    for combiner in ["NONE", "aggregate"] {
        let mut cmd = spate();
        cmd.args(["-input"])
            .arg(&input)
            .args(["-output", "-", "-mapper", mapper]);
        cmd.args(["-reducer", "aggregate", "-numReduceTasks", "1"]);
        if combiner != "NONE" {
            cmd.args(["-combiner", combiner]);
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "combiner {combiner}"
        );
    }

    // A key that names no aggregation fails the job, naming it.
    spate()
        .args(["-input"])
        .arg(&input)
        .args(["-output", "-", "-mapper", "cat", "-reducer", "aggregate"])
        .args(["-numReduceTasks", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("step 'step-1/reducer' failed"))
        .stderr(predicate::str::contains("key `a` names no aggregation"));
}

/// `-numReduceTasks` far above `--threads` runs every reduce task, but never
/// more processes at once than there are threads.
#[test]
fn many_reduce_tasks_run_at_most_threads_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    std::fs::create_dir(&running).unwrap();
    let input = dir.path().join("in.txt");
    let text: String = (0..2000).map(|i| format!("k{}\t{i}\n", i % 97)).collect();
    std::fs::write(&input, &text).unwrap();
    // Each reduce task marks itself running, notes how many are, passes its
    // input through and unmarks itself.
    let reducer = format!(
        "sh -c 'touch {r}/$$; ls {r} | wc -l >> {r}/../seen; cat; rm {r}/$$'",
        r = running.display()
    );
    let out = spate()
        .args(["--threads", "2", "-input"])
        .arg(&input)
        .args(["-output", "-", "-mapper", "cat", "-reducer", &reducer])
        .args(["-numReduceTasks", "12"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        sorted_lines(&String::from_utf8(out).unwrap()),
        sorted_lines(&text)
    );
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    let counts: Vec<usize> = seen.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 12, "every reduce task ran: {seen}");
    assert!(counts.iter().all(|&n| n <= 2), "at most 2 at once: {seen}");
}

/// Output that never ends a line fails the task, with a message, instead of
/// growing without bound (under a memory limit: a quarter of a thread's share).
#[test]
fn a_line_without_end_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "one line\n").unwrap();
    for attempts in ["1", "2"] {
        spate()
            .args(["--threads", "2", "--memory-limit", "8MiB", "-input"])
            .arg(&input)
            .args(["-output", "-", "-reducer", "NONE"])
            .args(["-D", &format!("mapreduce.map.maxattempts={attempts}")])
            .args([
                "-mapper",
                "sh -c 'cat >/dev/null; head -c 3000000 /dev/zero | tr \"\\0\" x'",
            ])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "a line of more than 1048576 bytes (after 0 complete lines)",
            ));
    }
}

/// A failed job starts no more tasks: reduce tasks waiting for a process
/// slot give up once the job has failed.
#[test]
fn a_failed_job_starts_no_more_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let text: String = (0..500).map(|i| format!("k{i}\t{i}\n")).collect();
    std::fs::write(&input, &text).unwrap();
    let ran = dir.path().join("ran");
    let reducer = format!(
        "sh -c 'echo x >> {}; cat >/dev/null; exit 3'",
        ran.display()
    );
    spate()
        .args(["--threads", "2", "-input"])
        .arg(&input)
        .args(["-output", "-", "-mapper", "cat", "-reducer", &reducer])
        .args([
            "-numReduceTasks",
            "40",
            "-D",
            "mapreduce.reduce.maxattempts=1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exited with code 3"));
    let started = std::fs::read_to_string(&ran).unwrap().lines().count();
    assert!(
        started < 40,
        "{started} of 40 reduce tasks started after the first failed"
    );
}

/// The aggregate combiner joins key and partial with the map output
/// separator, so a job with its own separator combines to the same answer.
#[test]
fn aggregate_with_a_custom_separator_combines_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\na\n").unwrap();
    for combiner in [false, true] {
        let mut cmd = spate();
        cmd.args(["-D", "stream.map.output.field.separator=,", "-input"])
            .arg(&input)
            .args(["-output", "-", "-reducer", "aggregate", "-numReduceTasks", "1"])
            .args(["-mapper", "sed -e 's/^/UniqValueCount:all,/; p; s/^Uniq.*,/LongValueSum:n,/; s/$/ 1/; s/,.* /,/'"]);
        if combiner {
            cmd.args(["-combiner", "aggregate"]);
        }
        cmd.assert().success().stdout("n\t3\nall\t2\n");
    }
}

/// `-verbose` shows each task as it runs: a shipped program from the task
/// directory, `aggregate` in-process, a combiner a map-only step skips.
#[test]
fn verbose_shows_tasks_as_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("tag.sh");
    std::fs::write(&prog, "#!/bin/sh\nsed 's/^/LongValueSum:/; s/$/\t1/'\n").unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\na\n").unwrap();
    spate()
        .args(["-verbose", "-input"])
        .arg(&input)
        .args(["-output", "-", "-mapper", "tag.sh", "-file"])
        .arg(&prog)
        .args(["-reducer", "aggregate", "-numReduceTasks", "1"])
        .assert()
        .success()
        .stdout("a\t2\nb\t1\n")
        .stderr(predicate::str::contains("step 1 mapper: ./tag.sh"))
        .stderr(predicate::str::contains(
            "step 1 reducer: aggregate (Hadoop's Aggregate package, in-process)",
        ));
    spate()
        .args(["-verbose", "-input"])
        .arg(&input)
        .args([
            "-output",
            "-",
            "-mapper",
            "cat",
            "-combiner",
            "uniq",
            "-reducer",
            "NONE",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "the combiner does not run in a map-only step",
        ))
        .stderr(predicate::str::contains(
            "step 1 combiner: (not run: the step is map-only)",
        ));
}
