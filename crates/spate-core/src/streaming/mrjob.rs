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

use serde::Deserialize;
use serde_json::Value;

use super::{StreamingJob, StreamingStep};
use crate::error::{Error, Result};

/// Reads the job's options with mrjob's own argument parser.
const OPTIONS_HELPER: &str = r#"
import inspect, json, sys
script, args = sys.argv[1], sys.argv[2:]
def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(0)
try:
    from mrjob.job import MRJob
except ImportError as e:
    fail("cannot import mrjob (%s); install it with: pip install mrjob" % e)
sys.argv = [script] + args
import importlib.util, os
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
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
leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
if len(leaves) != 1:
    fail("%s defines %d MRJob classes (%s); spate needs exactly one" % (
        script, len(leaves), ", ".join(c.__name__ for c in leaves)))
job = leaves[0](args)
kw = job._runner_kwargs()
keys = ["extra_args", "input_paths", "output_dir", "jobconf", "upload_files",
        "upload_dirs", "upload_archives", "partitioner", "sort_values",
        "python_bin", "task_python_bin", "cmdenv", "setup", "hadoop_input_format",
        "libjars"]
out = {k: kw.get(k) for k in keys}
# mrjob 0.7 has no --steps switch: its runners ask the job object directly.
out["steps"] = job._steps_desc()
print(json.dumps(out, default=str))
"#;

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
    libjars: Option<Vec<String>>,
    #[serde(default)]
    steps: Vec<Value>,
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
    let output = Command::new(python).args(args).output().map_err(|e| {
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
        let bootstrap = self.python.clone().unwrap_or_else(|| "python3".into());

        let mut helper_args: Vec<&str> = vec!["-c", OPTIONS_HELPER, &script_str];
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
        for (what, set) in [
            (
                "upload_archives (--archives)",
                options
                    .upload_archives
                    .as_ref()
                    .is_some_and(|a| !a.is_empty()),
            ),
            (
                "setup commands (--setup)",
                options.setup.as_ref().is_some_and(|s| !s.is_empty()),
            ),
            (
                "a Hadoop input format",
                options.hadoop_input_format.is_some(),
            ),
            (
                "libjars",
                options.libjars.as_ref().is_some_and(|l| !l.is_empty()),
            ),
        ] {
            if set {
                return Err(Error::Usage(format!(
                    "this job uses {what}, which spate does not run"
                )));
            }
        }
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
                        shell_quote(&script_str),
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
        job.files = files;
        let sort_values = options.sort_values.unwrap_or(false);
        for (n, desc) in steps.iter().enumerate() {
            let kind = desc.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "streaming" {
                return Err(Error::Usage(format!(
                    "step {} is a {kind} step; spate runs streaming steps (mapper, combiner, reducer)",
                    n + 1
                )));
            }
            let mut step = StreamingStep {
                mapper: task(n, "mapper", desc)?,
                combiner: task(n, "combiner", desc)?,
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
        Ok(MrjobPlan {
            job,
            output_dir: options.output_dir.map(PathBuf::from),
            reads_stdin,
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
