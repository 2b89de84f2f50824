//! mrjob scripts, run unchanged through mrjob's own task protocol.
//!
//! 1. The script's command line is parsed by mrjob itself (a short Python
//!    helper builds the job object and reads its runner options: input paths,
//!    output dir, passthrough arguments, side files, jobconf, ...).
//! 2. The same helper asks the job object for its steps (`_steps_desc()`,
//!    what mrjob 0.7's own runners do; the `--steps` switch is gone).
//! 3. Each step becomes a [`StreamingStep`] whose tasks run
//!    `python3 JOB.py --step-num=N --mapper|--combiner|--reducer ARGS`
//!    (or the step's command, or a pre-filter piped into it), exactly the
//!    commands mrjob's Hadoop runner gives Hadoop Streaming.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{StreamingJob, StreamingStep, side_name};
use crate::error::{Error, Result};

/// Python shared by the helpers: imports the script as a module (its
/// `if __name__ == '__main__'` block does not run) and finds its one leaf
/// `MRJob` class. `fail(msg)` is defined by the code that follows.
const LOAD_JOB: &str = r#"
import importlib.util, inspect, os, sys
def load_job_class(script):
    from mrjob.job import MRJob
    # As Python does for a script it runs: its real directory (a shipped
    # script is a link in the task's directory).
    sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
    spec = importlib.util.spec_from_file_location("__spate_mrjob__", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__spate_mrjob__"] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit:
        raise
    except BaseException as e:
        fail("loading %s failed: %s: %s" % (script, type(e).__name__, e))
    classes = [v for v in vars(module).values()
               if inspect.isclass(v) and issubclass(v, MRJob) and v is not MRJob
               and v.__module__ == "__spate_mrjob__"]
    leaves = [c for c in classes
              if not any(o is not c and issubclass(o, c) for o in classes)]
    if len(leaves) != 1:
        fail("%s defines %d MRJob classes (%s); spate needs exactly one" % (
            script, len(leaves), ", ".join(c.__name__ for c in leaves)))
    return leaves[0]
"#;

/// Reads the job's options with mrjob's own argument parser, and its steps.
const OPTIONS_HELPER: &str = r#"
import json
script, args = sys.argv[1], sys.argv[2:]
def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(0)
try:
    import mrjob.job
except ImportError as e:
    fail("cannot import mrjob (%s); install it with: pip install mrjob" % e)
sys.argv = [script] + args
cls = load_job_class(script)
# spate's own options given after the script, unless the job defines them.
own, wanted = {}, json.loads(os.environ.get("SPATE_OWN_OPTIONS") or "{}")
if wanted:
    # The job's parser as MRJob.__init__ builds it, without parsing
    # arguments (a job may require some).
    from argparse import ArgumentParser
    probe = cls.__new__(cls)
    probe._passthru_arg_dests, probe._file_arg_dests = set(), set()
    probe.arg_parser = ArgumentParser(add_help=False)
    try:
        probe.configure_args()
    except BaseException as e:
        fail("building the job's options failed: %s: %s" % (type(e).__name__, e))
    defined = set(probe.arg_parser._option_string_actions)
    rest, i = [], 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name == "--":
            rest.extend(args[i:])
            break
        if name in wanted and name not in defined:
            if wanted[name] and not eq:
                if i + 1 >= len(args):
                    fail("%s needs a value" % name)
                value, i = args[i + 1], i + 1
            own[name] = value if wanted[name] else True
        else:
            rest.append(args[i])
        i += 1
    args = rest
    sys.argv = [script] + args
job = cls(args)
kw = job._runner_kwargs()
keys = ["extra_args", "input_paths", "output_dir", "jobconf", "upload_files",
        "upload_dirs", "upload_archives", "partitioner", "sort_values",
        "python_bin", "task_python_bin", "cmdenv", "setup", "hadoop_input_format",
        "hadoop_output_format", "libjars"]
out = {k: kw.get(k) for k in keys}
out["own"] = own
# mrjob 0.7 has no --steps switch: its runners ask the job object directly.
out["steps"] = job._steps_desc()
# Steps whose combiner can run inside the map task: Python mapper and
# combiner, no pre-filters, mrjob's JSON protocols between them.
JSON = {"StandardJSONProtocol", "RapidJSONProtocol", "SimpleJSONProtocol",
        "UltraJSONProtocol"}
def fusable(n, desc):
    m, c = desc.get("mapper") or {}, desc.get("combiner") or {}
    if m.get("type") != "script" or c.get("type") != "script":
        return False
    if m.get("pre_filter") or c.get("pre_filter"):
        return False
    try:
        protocols = [job._pick_protocol_instances(n, "mapper")[1],
                     *job._pick_protocol_instances(n, "combiner")]
    except Exception:
        return False
    return all(type(p).__module__ == "mrjob.protocol" and type(p).__name__ in JSON
               for p in protocols)
out["fusable"] = [fusable(n, d) for n, d in enumerate(out["steps"])]
print(json.dumps(out, default=str))
"#;

/// A map task with its combiner inside (`python3 DRIVER JOB.py STEP ARGS`),
/// as Hadoop runs combiners inside map tasks on the sort buffer: the job's
/// own `map_pairs` output is grouped in memory by encoded key (up to
/// `LIMIT` pairs or `LIMIT_BYTES` estimated bytes at a time), each group sorted by encoded key and handed to
/// the job's own `combine_pairs`; only the combiner's output is encoded.
/// Keys that are `str`/`int` and values that are `str`/`int`/`bool`/`None`
/// encode and decode to themselves under JSON, so they skip the round trip;
/// other keys and values take it, exactly as they would between processes.
const MAP_COMBINE_DRIVER: &str = r#"
def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)
script, step_num, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
sys.argv = [script, "--step-num=%d" % step_num, "--mapper"] + args
job = load_job_class(script)(sys.argv[1:])
read_in = job.pick_protocols(step_num, "mapper")[0]
read_mid, write_mid = job.pick_protocols(step_num, "combiner")
LIMIT = 1 << 21
# Bytes the buffer may hold, estimated from CPython's object sizes (spate
# sets it from --memory-limit: a quarter of one thread's share).
LIMIT_BYTES = int(os.environ.get("SPATE_MAP_BUFFER_BYTES") or (256 << 20))
out = sys.stdout.buffer
import itertools
from mrjob.job import MRJob
from mrjob.step import MRStep
# The job's own combine_pairs runs when it overrides how pairs are combined.
plain_combine = (type(job).combine_pairs is MRJob.combine_pairs
                 and type(job)._combine_or_reduce_pairs is MRJob._combine_or_reduce_pairs)
totals = [0, 0, 0]

def records():
    for line in sys.stdin.buffer:
        yield read_in(line.rstrip(b"\r\n"))

def emit_all(pairs):
    n = 0
    for k, v in pairs or ():
        out.write(write_mid(k, v))
        out.write(b"\n")
        n += 1
    totals[1] += n

def combine(groups):
    """Calls the combiner on each key's values in encoded-key order, as
    mrjob's combine_pairs does on sorted input, without a generator per
    value: adjacent keys that compare equal are one group, as with its
    itertools.groupby."""
    keyed = []
    for dk, group in groups.items():
        ek = dk if type(dk) is bytes else write_mid(group[0], None).partition(b"\t")[0]
        keyed.append((ek, group))
    keyed.sort(key=lambda e: e[0])
    totals[2] += 1
    if not plain_combine:
        def pairs():
            for _, (k, values) in keyed:
                for v in values:
                    yield k, v
        emit_all(job.combine_pairs(pairs(), step_num))
        return
    step = job._get_step(step_num, MRStep)
    if step["combiner_init"]:
        emit_all(step["combiner_init"]())
    combiner = step["combiner"]
    i, n = 0, len(keyed)
    while i < n:
        k, values = keyed[i][1]
        j = i + 1
        while j < n and keyed[j][1][0] == k:
            j += 1
        if j == i + 1:
            emit_all(combiner(k, iter(values)))
        else:
            runs = [keyed[x][1][1] for x in range(i, j)]
            emit_all(combiner(k, itertools.chain.from_iterable(runs)))
        i = j
    if step["combiner_final"]:
        emit_all(step["combiner_final"]())

def run():
    groups = {}
    get = groups.get
    type_, str_, int_, bool_ = type, str, int, bool
    n = size = 0
    for k, v in job.map_pairs(records(), step_num):
        tk = type_(k)
        if tk is str_ or tk is int_:
            dk = k
            tv = type_(v)
            if tv is str_:
                vsize = 56 + len(v)
            elif tv is int_ or tv is bool_ or v is None:
                vsize = 36
            else:
                line = write_mid(k, v)
                v = read_mid(line)[1]
                vsize = 56 + 4 * len(line)
        else:
            line = write_mid(k, v)
            dk = line.partition(b"\t")[0]
            k, v = read_mid(line)
            vsize = 56 + 4 * len(line)
        group = get(dk)
        if group is None:
            group = groups[dk] = (k, [])
            size += 240 + (8 if type_(dk) is int_ else len(dk))
        group[1].append(v)
        size += vsize
        n += 1
        if n >= LIMIT or size >= LIMIT_BYTES:
            totals[0] += n
            combine(groups)
            groups.clear()
            n = size = 0
    totals[0] += n
    if groups:
        combine(groups)

run()
out.flush()
# Hadoop's counters: the mapper emitted totals[0] pairs (spate counts the
# totals[1] lines it received as map output; this adds the difference).
sys.stderr.write(
    "reporter:counter:Map-Reduce Framework,Combine input records,%d\n"
    "reporter:counter:Map-Reduce Framework,Combine output records,%d\n"
    "reporter:counter:Map-Reduce Framework,Map output records,%d\n"
    "reporter:counter:spate,In-map combine buffer flushes,%d\n"
    % (totals[0], totals[1], totals[0] - totals[1], totals[2]))
"#;

/// `spate mrjob`'s own options, which may also follow the script (name →
/// takes a value); a job that defines an option of the same name keeps it.
const OWN_OPTIONS: &str = r#"{"--threads": true, "--memory-limit": true, "--separate-combiner": false, "--cluster": true}"#;

/// The map-task wrapper of a step that reads whole input files
/// (`mapper_raw`): mrjob's manifest protocol. Each input line is
/// `offset<TAB>path`, as Hadoop's NLineInputFormat hands it to mrjob's
/// manifest wrapper; for each, the mapper runs once — one task per file, as
/// on Hadoop — with the local path (a `.gz`/`.bz2` file decompressed into
/// the task directory first) and the URI as its last two arguments. spate
/// gives every file its own one-line manifest, so a task runs one file.
const MANIFEST_WRAPPER: &str = r#"#!/bin/sh
n=0
while IFS= read -r line; do
  uri=${line#*	}
  n=$((n + 1))
  case $uri in
    *.gz) path=./input-$n-$(basename "${uri%.gz}"); gzip -dc -- "$uri" > "$path" || exit 1 ;;
    *.bz2) path=./input-$n-$(basename "${uri%.bz2}"); bzip2 -dc -- "$uri" > "$path" || exit 1 ;;
    *) path=$uri ;;
  esac
  "$@" "$path" "$uri" < /dev/null
  rc=$?
  if [ "$path" != "$uri" ]; then rm -f -- "$path"; fi
  if [ $rc -ne 0 ]; then
    echo "while reading input from $uri" >&2
    exit $rc
  fi
done
"#;

/// The manifest wrapper's file name.
const MANIFEST_FILE: &str = "spate_manifest_mapper.sh";

/// mrjob's jobconf for `SORT_VALUES = True`.
const SORT_VALUES_JOBCONF: [(&str, &str); 2] = [
    ("mapreduce.partition.keypartitioner.options", "-k1,1"),
    ("stream.num.map.output.key.fields", "2"),
];
const SORT_VALUES_PARTITIONER: &str = "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner";

#[derive(Debug, Deserialize, Default)]
struct RunnerOptions {
    error: Option<String>,
    #[serde(default)]
    extra_args: Vec<Value>,
    #[serde(default)]
    input_paths: Vec<String>,
    output_dir: Option<String>,
    #[serde(default)]
    jobconf: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    upload_files: Option<Vec<String>>,
    #[serde(default)]
    upload_dirs: Option<Vec<String>>,
    #[serde(default)]
    upload_archives: Option<Vec<String>>,
    partitioner: Option<String>,
    sort_values: Option<bool>,
    python_bin: Option<Vec<String>>,
    task_python_bin: Option<Vec<String>>,
    cmdenv: Option<BTreeMap<String, Value>>,
    setup: Option<Vec<Value>>,
    hadoop_input_format: Option<String>,
    hadoop_output_format: Option<String>,
    libjars: Option<Vec<String>>,
    #[serde(default)]
    own: BTreeMap<String, Value>,
    #[serde(default)]
    steps: Vec<Value>,
    #[serde(default)]
    fusable: Vec<bool>,
}

/// An mrjob script and its command line.
#[derive(Debug, Clone)]
pub struct MrjobScript {
    /// The script (`mr_word_count.py`).
    pub script: PathBuf,
    /// The arguments as the user would give them to the script.
    pub args: Vec<String>,
    /// The interpreter (`None`: the job's `--python-bin`, else `python3`).
    pub python: Option<String>,
    /// Run each combiner as its own `--combiner` process fed sorted runs
    /// (Hadoop Streaming's way) instead of inside the map task.
    pub separate_combiner: bool,
}

/// The job an mrjob script describes, ready to run.
#[derive(Debug, Clone)]
pub struct MrjobPlan {
    /// The streaming job running the script's steps.
    pub job: StreamingJob,
    /// The output directory (`-o`), if any; otherwise output goes to stdout.
    pub output_dir: Option<PathBuf>,
    /// Whether the input is standard input (no input paths, or `-`).
    pub reads_stdin: bool,
    /// Holds the map-task driver script while the job runs.
    pub driver_dir: Option<Arc<tempfile::TempDir>>,
    /// `--threads` given after the script.
    pub threads: Option<usize>,
    /// `--memory-limit` given after the script.
    pub memory_limit: Option<String>,
    /// `--cluster` given after the script.
    pub cluster: Option<String>,
}

/// Quotes `s` for `sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The map-task driver's file name (shown in commands and errors).
const DRIVER_FILE: &str = "spate_map_combine.py";

/// Writes the map-task driver into a fresh temporary directory.
fn write_driver() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("spate-mrjob-")
        .tempdir()
        .map_err(|e| Error::Usage(format!("cannot create a temporary directory: {e}")))?;
    let path = dir.path().join(DRIVER_FILE);
    std::fs::write(&path, format!("{LOAD_JOB}{MAP_COMBINE_DRIVER}"))
        .map_err(|e| Error::Usage(format!("cannot write {}: {e}", path.display())))?;
    let wrapper = dir.path().join(MANIFEST_FILE);
    std::fs::write(&wrapper, MANIFEST_WRAPPER)
        .map_err(|e| Error::Usage(format!("cannot write {}: {e}", wrapper.display())))?;
    Ok(dir)
}

/// Writes the input manifest of a raw-mapper step: one `0<TAB>path` line
/// per input file (directories and globs expanded; absolute paths), each in
/// a manifest file of its own, so that each input file is its own split and
/// map task — run in parallel and retried alone, as NLineInputFormat with
/// one line per split does on Hadoop.
fn write_manifest(dir: &Path, inputs: &[String], reads_stdin: bool) -> Result<Vec<String>> {
    if reads_stdin || inputs.is_empty() {
        return Err(Error::Usage(
            "this job reads whole input files (mapper_raw), so it needs input paths, \
             not standard input"
                .into(),
        ));
    }
    if let Some(url) = inputs.iter().find(|i| i.contains("://")) {
        return Err(Error::Usage(format!(
            "this job reads whole input files (mapper_raw); spate hands it local files \
             only, not {url}"
        )));
    }
    let files = spate_io::source::expand_inputs(inputs)?;
    let mut manifests = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let path = std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone());
        let manifest = dir.join(format!("input-manifest-{i:05}.txt"));
        std::fs::write(&manifest, format!("0\t{}\n", path.display()))
            .map_err(|e| Error::Storage(format!("cannot write {}: {e}", manifest.display())))?;
        manifests.push(manifest.to_string_lossy().into_owned());
    }
    Ok(manifests)
}

impl MrjobScript {
    /// Prints the job's own help as mrjob does (`JOB.py --help`), with the
    /// interpreter the job would run under; returns its exit code.
    pub fn help(&self) -> Result<i32> {
        let python = self.python.clone().unwrap_or_else(|| "python3".into());
        let status = Command::new(&python)
            .arg(&self.script)
            .args(&self.args)
            .status()
            .map_err(|e| Error::Usage(format!("cannot run {python}: {e}")))?;
        Ok(status.code().unwrap_or(1))
    }

    /// Whether the script's arguments ask for help (`-h`, `--help`).
    pub fn asks_for_help(&self) -> bool {
        self.args
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == "-h" || a == "--help")
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Splits mrjob's `path#name` upload syntax.
fn upload(spec: &str, base: &Path) -> (PathBuf, Option<String>) {
    let (path, name) = match spec.rsplit_once('#') {
        Some((p, n)) if !n.is_empty() => (p, Some(n.to_string())),
        Some((p, _)) => (p, None),
        None => (spec, None),
    };
    let path = Path::new(path);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    (path, name)
}

fn run_python(python: &str, args: &[&str], what: &str) -> Result<String> {
    let output = Command::new(python)
        .args(args)
        .env("SPATE_OWN_OPTIONS", OWN_OPTIONS)
        .output()
        .map_err(|e| {
            Error::Usage(format!(
                "cannot run {python} for {what}: {e} (set the interpreter with --python-bin)"
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Usage(format!(
            "{what} failed ({}):\n  {}",
            output.status,
            tail.join("\n  ")
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Error::Usage(format!("{what} printed invalid UTF-8")))
}

impl MrjobScript {
    /// Asks mrjob for the job's options and steps and builds the job.
    pub fn plan(&self) -> Result<MrjobPlan> {
        if !self.script.is_file() {
            return Err(Error::Usage(format!(
                "mrjob script {} not found",
                self.script.display()
            )));
        }
        let script = std::fs::canonicalize(&self.script)
            .map_err(|e| Error::Usage(format!("mrjob script {}: {e}", self.script.display())))?;
        let script_str = script.to_string_lossy().into_owned();
        // The name tasks run it by, in their working directory.
        let script_name = script
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job.py".into());
        let bootstrap = self.python.clone().unwrap_or_else(|| "python3".into());

        let helper = format!("{LOAD_JOB}{OPTIONS_HELPER}");
        let mut helper_args: Vec<&str> = vec!["-c", &helper, &script_str];
        helper_args.extend(self.args.iter().map(String::as_str));
        let text = run_python(&bootstrap, &helper_args, "reading the job's options")?;
        let options: RunnerOptions = serde_json::from_str(text.trim()).map_err(|e| {
            Error::Usage(format!(
                "reading the job's options: {e} (the helper printed: {})",
                text.trim()
            ))
        })?;
        if let Some(e) = options.error {
            return Err(Error::Usage(e));
        }
        let listed =
            |v: &Option<Vec<String>>| v.as_ref().filter(|l| !l.is_empty()).map(|l| l.join(", "));
        for (what, value) in [
            ("archives (--archives)", listed(&options.upload_archives)),
            (
                "setup commands (--setup)",
                options
                    .setup
                    .as_ref()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.iter().filter_map(as_text).collect::<Vec<_>>().join("; ")),
            ),
            (
                "a Hadoop input format (HADOOP_INPUT_FORMAT / --hadoop-input-format)",
                options.hadoop_input_format.clone(),
            ),
            (
                "a Hadoop output format (HADOOP_OUTPUT_FORMAT / --hadoop-output-format)",
                options.hadoop_output_format.clone(),
            ),
            ("libjars (LIBJARS / --libjars)", listed(&options.libjars)),
        ] {
            if let Some(value) = value {
                return Err(Error::Usage(format!(
                    "this job uses {what}: {value}; spate does not run Java classes or \
                     setup scripts, so it refuses the job rather than run it differently"
                )));
            }
        }
        let threads = match options.own.get("--threads") {
            Some(v) => {
                let text = as_text(v).unwrap_or_default();
                Some(
                    text.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            Error::Usage(format!("--threads {text}: expected a positive number"))
                        })?,
                )
            }
            None => None,
        };
        let memory_limit = options.own.get("--memory-limit").and_then(as_text);
        let cluster = options.own.get("--cluster").and_then(as_text);
        let separate_combiner =
            self.separate_combiner || options.own.contains_key("--separate-combiner");
        let python = match (&self.python, &options.task_python_bin, &options.python_bin) {
            (Some(p), _, _) => shell_quote(p),
            (None, Some(p), _) | (None, None, Some(p)) if !p.is_empty() => p
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            _ => "python3".to_string(),
        };

        // Side files: the job's FILES/--files, and file-valued passthrough args.
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let mut files: Vec<(PathBuf, Option<String>)> = Vec::new();
        for spec in options.upload_files.iter().flatten() {
            files.push(upload(spec, &cwd));
        }
        for spec in options.upload_dirs.iter().flatten() {
            files.push(upload(spec, &cwd));
        }
        let mut extra: Vec<String> = Vec::new();
        for arg in &options.extra_args {
            match arg {
                Value::Object(map) => {
                    let path = map.get("path").and_then(as_text).unwrap_or_default();
                    let (path, _) = upload(&path, &cwd);
                    let name = map
                        .get("name")
                        .and_then(as_text)
                        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()));
                    let name = name.unwrap_or_default();
                    files.push((path, Some(name.clone())));
                    extra.push(shell_quote(&name));
                }
                other => {
                    if let Some(t) = as_text(other) {
                        extra.push(shell_quote(&t));
                    }
                }
            }
        }

        let steps = &options.steps;
        if steps.is_empty() {
            return Err(Error::Usage(format!("{script_str} defines no steps")));
        }
        let task = |step_num: usize, kind: &str, desc: &Value| -> Result<Option<String>> {
            let Some(desc) = desc.get(kind).filter(|d| !d.is_null()) else {
                return Ok(None);
            };
            let cmd = match desc.get("type").and_then(Value::as_str) {
                Some("script") => {
                    let mut parts = vec![
                        python.clone(),
                        shell_quote(&script_name),
                        format!("--step-num={step_num}"),
                        format!("--{kind}"),
                    ];
                    parts.extend(extra.iter().cloned());
                    parts.join(" ")
                }
                Some("command") => desc
                    .get("command")
                    .and_then(|c| match c {
                        Value::Array(a) => Some(
                            a.iter()
                                .filter_map(as_text)
                                .map(|s| shell_quote(&s))
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                        other => as_text(other),
                    })
                    .ok_or_else(|| {
                        Error::Usage(format!("step {}: {kind} command is missing", step_num + 1))
                    })?,
                other => {
                    return Err(Error::Usage(format!(
                        "step {}: {kind} of type {other:?} is not supported",
                        step_num + 1
                    )));
                }
            };
            Ok(Some(match desc.get("pre_filter").and_then(as_text) {
                Some(filter) => format!("{filter} | {cmd}"),
                None => cmd,
            }))
        };

        let mut driver_dir: Option<Arc<tempfile::TempDir>> = None;
        let mut driver = || -> Result<Arc<tempfile::TempDir>> {
            if let Some(d) = &driver_dir {
                return Ok(d.clone());
            }
            let d = Arc::new(write_driver()?);
            driver_dir = Some(d.clone());
            Ok(d)
        };
        let map_combine = |step_num: usize| -> String {
            let mut parts = vec![
                python.clone(),
                DRIVER_FILE.to_string(),
                shell_quote(&script_name),
                step_num.to_string(),
            ];
            parts.extend(extra.iter().cloned());
            parts.join(" ")
        };

        let mut job = StreamingJob::default();
        let mut reads_stdin = options.input_paths.is_empty();
        for p in &options.input_paths {
            if p == "-" {
                reads_stdin = true;
            } else {
                job.inputs.push(p.clone());
            }
        }
        for (k, v) in options.jobconf.iter().flatten() {
            if let Some(v) = as_text(v) {
                job.properties.insert(k.clone(), v);
            }
        }
        for (k, v) in options.cmdenv.iter().flatten() {
            if let Some(v) = as_text(v) {
                job.cmdenv.push((k.clone(), v));
            }
        }
        // Tasks run the script (and spate's helpers) as side files in
        // their working directory, by name: a cluster's executors get them
        // with the job.
        let same_file =
            |p: &Path| std::fs::canonicalize(p).ok().as_deref() == Some(script.as_path());
        let named_like_script = files
            .iter()
            .find(|(p, n)| side_name(p, n.as_deref()).as_deref() == Some(script_name.as_str()))
            .map(|(p, _)| p.clone());
        match named_like_script {
            Some(p) if same_file(&p) => {}
            Some(p) => {
                return Err(Error::Usage(format!(
                    "the side file {} is named {script_name} in the task directory, as the \
                     job's script is: rename one (path#name)",
                    p.display()
                )));
            }
            None => files.push((script.clone(), Some(script_name.clone()))),
        }
        job.files = files;
        let sort_values = options.sort_values.unwrap_or(false);
        for (n, desc) in steps.iter().enumerate() {
            let kind = desc.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "streaming" {
                return Err(Error::Usage(format!(
                    "step {} is a {kind} step ({}); spate runs mrjob's streaming steps \
                     (mapper, combiner, reducer, raw mapper) and refuses the job before \
                     starting it",
                    n + 1,
                    match kind {
                        "jar" => "JarStep: a Java program",
                        "spark" | "spark_jar" | "spark_script" => "a Spark step",
                        _ => "a kind mrjob 0.7 may add",
                    }
                )));
            }
            let manifest = desc.get("input_manifest").and_then(Value::as_bool) == Some(true);
            let fused = !separate_combiner && !manifest && options.fusable.get(n) == Some(&true);
            let mapper = if fused {
                driver()?;
                Some(map_combine(n))
            } else {
                task(n, "mapper", desc)?
            };
            let mapper = match mapper {
                Some(cmd) if manifest => {
                    if n != 0 {
                        return Err(Error::Usage(format!(
                            "step {}: only the first step may read whole input files (mapper_raw)",
                            n + 1
                        )));
                    }
                    let dir = driver()?;
                    if desc
                        .get("mapper")
                        .and_then(|m| m.get("pre_filter"))
                        .is_some_and(|f| !f.is_null())
                    {
                        return Err(Error::Usage(format!(
                            "step {}: a raw mapper (mapper_raw) reads files, not lines, so it \
                             cannot have a mapper_pre_filter; drop the pre-filter",
                            n + 1
                        )));
                    }
                    job.inputs = write_manifest(dir.path(), &job.inputs, reads_stdin)?;
                    reads_stdin = false;
                    Some(format!("sh {MANIFEST_FILE} {cmd}"))
                }
                other => other,
            };
            let mut step = StreamingStep {
                mapper,
                combiner: if fused {
                    None
                } else {
                    task(n, "combiner", desc)?
                },
                reducer: task(n, "reducer", desc)?,
                partitioner: options.partitioner.clone(),
                ..StreamingStep::default()
            };
            if step.reducer.is_none() {
                step.reducers = Some(0);
                // A map-only step with no mapper passes lines through.
                step.combiner = None;
            }
            if sort_values {
                for (k, v) in SORT_VALUES_JOBCONF {
                    step.properties
                        .entry(k.to_string())
                        .or_insert_with(|| v.to_string());
                }
                step.partitioner
                    .get_or_insert_with(|| SORT_VALUES_PARTITIONER.to_string());
            }
            if let Some(Value::Object(conf)) = desc.get("jobconf") {
                for (k, v) in conf {
                    if let Some(v) = as_text(v) {
                        step.properties.insert(k.clone(), v);
                    }
                }
            }
            job.steps.push(step);
        }
        if let Some(dir) = &driver_dir {
            for name in [DRIVER_FILE, MANIFEST_FILE] {
                job.files
                    .push((dir.path().join(name), Some(name.to_string())));
            }
        }
        Ok(MrjobPlan {
            job,
            output_dir: options.output_dir.map(PathBuf::from),
            reads_stdin,
            driver_dir,
            threads,
            memory_limit,
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc.py"), "abc.py");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn uploads() {
        let base = Path::new("/base");
        assert_eq!(
            upload("x/y.txt#z.txt", base),
            (PathBuf::from("/base/x/y.txt"), Some("z.txt".to_string()))
        );
        assert_eq!(upload("/abs/f", base), (PathBuf::from("/abs/f"), None));
    }
}
