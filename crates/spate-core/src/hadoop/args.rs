//! Hadoop Streaming's command line (`-input`, `-mapper`, `-D k=v`, ...).

use std::path::PathBuf;

use super::{StreamingJob, StreamingStep};
use crate::error::{Error, Result};

/// A parsed `hadoop jar hadoop-streaming.jar ...` style command line.
#[derive(Debug, Clone, Default)]
pub struct StreamingArgs {
    /// The job.
    pub job: StreamingJob,
    /// `-output`: a directory, or `-` for stdout.
    pub output: String,
    /// `--threads N` (spate's own).
    pub threads: Option<usize>,
    /// `--memory-limit SIZE` (spate's own).
    pub memory_limit: Option<String>,
    /// `--cluster HOST:PORT` (spate's own): run on that cluster.
    pub cluster: Option<String>,
    /// `--quiet`: no progress bar.
    pub quiet: bool,
    /// `-verbose`: print the job as configured (inputs, steps and their
    /// commands, properties, files) before it runs.
    pub verbose: bool,
    /// `-help` was given.
    pub help: bool,
}

/// Usage text, in Hadoop Streaming's words.
pub const USAGE: &str = "\
Usage: spate streaming [options]
Options:
  -input <path>                 Input file, directory or glob; repeatable (.gz/.zst decompressed)
  -output <dir>                 Output directory (must not exist), or - for stdout
  -mapper <cmd>                 The mapper command (default: lines pass through)
  -combiner <cmd>|aggregate     The combiner command, run map-side on sorted runs
  -reducer <cmd>|NONE|aggregate The reducer command; NONE makes the job map-only;
                                aggregate is Hadoop's Aggregate package (keys
                                LongValueSum:id, LongValueMax/Min, DoubleValueSum,
                                StringValueMax/Min, UniqValueCount, ValueHistogram)
  -numReduceTasks <n>           Reducers (0: map-only; default: one per thread,
                                on a cluster one per task slot)
  -partitioner <class>          org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner
  -file <path>                  Side file in each task's working directory; repeatable
                                (a task command naming it runs it from there)
  -files <a,b,...>              Side files, comma-separated (path#name renames)
  -cmdenv <k=v>                 Environment variable for tasks; repeatable
  -D <property=value>           Job property; tasks see it as an environment
                                variable with dots turned into underscores
  --threads <n>                 Worker threads (default: all cores)
  --memory-limit <size>         Memory budget for sorting, e.g. 2GiB; spills beyond it
  --cluster <host:port>         Run on the cluster whose scheduler is there (default:
                                $SPATE_CLUSTER, else this machine); commands, -file
                                and -files travel with the job to its executors
  --quiet                       No progress bar
  -verbose                      Print the job as configured before it runs
Properties spate reads:
  stream.map.output.field.separator, stream.num.map.output.key.fields,
  map.output.key.field.separator, mapreduce.partition.keypartitioner.options,
  mapreduce.job.output.key.comparator.class (KeyFieldBasedComparator),
  mapreduce.partition.keycomparator.options, mapreduce.job.reduces,
  mapreduce.map.maxattempts, mapreduce.reduce.maxattempts (default 4)
";

fn split_files(spec: &str, out: &mut Vec<(PathBuf, Option<String>)>) {
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        match item.rsplit_once('#') {
            Some((p, n)) if !n.is_empty() => out.push((PathBuf::from(p), Some(n.to_string()))),
            _ => out.push((PathBuf::from(item), None)),
        }
    }
}

fn property(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(Error::Usage(format!(
            "-D expects property=value, got '{text}'"
        ))),
    }
}

impl StreamingArgs {
    /// Parses the arguments after `spate streaming`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut out = StreamingArgs::default();
        let mut step = StreamingStep::default();
        let mut output = None;
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            // Hadoop spells options with one dash; accept two as well.
            let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
            let Some(name) = name else {
                return Err(Error::Usage(format!(
                    "unexpected argument '{arg}' (see spate streaming -help)"
                )));
            };
            // -Dkey=value
            if let Some(rest) = name.strip_prefix('D')
                && !rest.is_empty()
                && name != "D"
            {
                let (k, v) = property(rest)?;
                out.job.properties.insert(k, v);
                i += 1;
                continue;
            }
            if name == "debug" {
                return Err(Error::Usage(
                    "-debug keeps Hadoop's local job jar, which spate does not make; \
                     -verbose prints the job as configured, and a failing task's error \
                     shows its command, input split and stderr"
                        .into(),
                ));
            }
            let flag = matches!(name, "help" | "h" | "quiet" | "q" | "verbose");
            if flag {
                match name {
                    "help" | "h" => out.help = true,
                    "quiet" | "q" => out.quiet = true,
                    _ => out.verbose = true,
                }
                i += 1;
                continue;
            }
            let value = args.get(i + 1).cloned().ok_or_else(|| {
                Error::Usage(format!(
                    "option {arg} needs a value (see spate streaming -help)"
                ))
            })?;
            match name {
                "input" => out.job.inputs.push(value),
                "output" => output = Some(value),
                "mapper" => step.mapper = Some(value),
                "combiner" => step.combiner = Some(value),
                "reducer" => step.reducer = Some(value),
                "numReduceTasks" => {
                    step.reducers = Some(value.parse().map_err(|_| {
                        Error::Usage(format!("-numReduceTasks expects a number, got '{value}'"))
                    })?)
                }
                "partitioner" => step.partitioner = Some(value),
                "file" => out.job.files.push((PathBuf::from(value), None)),
                "files" => split_files(&value, &mut out.job.files),
                "cmdenv" => {
                    let (k, v) = value.split_once('=').ok_or_else(|| {
                        Error::Usage(format!("-cmdenv expects name=value, got '{value}'"))
                    })?;
                    out.job.cmdenv.push((k.to_string(), v.to_string()));
                }
                "D" => {
                    let (k, v) = property(&value)?;
                    out.job.properties.insert(k, v);
                }
                "threads" => {
                    out.threads = Some(value.parse().map_err(|_| {
                        Error::Usage(format!("--threads expects a number, got '{value}'"))
                    })?)
                }
                "memory-limit" => out.memory_limit = Some(value),
                "cluster" => out.cluster = Some(value),
                "inputformat" | "outputformat" | "inputreader" | "io" | "archives" | "libjars"
                | "cacheArchive" => {
                    return Err(Error::Usage(format!(
                        "option {arg} is not supported: spate reads and writes text lines"
                    )));
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "unknown option {arg} (see spate streaming -help)"
                    )));
                }
            }
            i += 2;
        }
        if out.help {
            return Ok(out);
        }
        if out.job.inputs.is_empty() {
            return Err(Error::Usage(
                "missing -input (see spate streaming -help)".into(),
            ));
        }
        out.output = output
            .ok_or_else(|| Error::Usage("missing -output (see spate streaming -help)".into()))?;
        if step.mapper.is_none() && step.reducer.is_none() {
            return Err(Error::Usage(
                "give a -mapper, a -reducer or both (see spate streaming -help)".into(),
            ));
        }
        out.job.steps.push(step);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<StreamingArgs> {
        StreamingArgs::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn hadoop_style() {
        let a = parse(&[
            "-D",
            "stream.num.map.output.key.fields=2",
            "-Dmy.prop=x=y",
            "-input",
            "a",
            "-input",
            "b*",
            "-output",
            "out",
            "-mapper",
            "cat",
            "-reducer",
            "wc -l",
            "-numReduceTasks",
            "3",
            "-files",
            "x.txt,y.txt#z",
            "-cmdenv",
            "K=V",
        ])
        .unwrap();
        assert_eq!(a.job.inputs, vec!["a", "b*"]);
        assert_eq!(a.output, "out");
        assert_eq!(a.job.steps[0].reducers, Some(3));
        assert_eq!(a.job.steps[0].reducer.as_deref(), Some("wc -l"));
        assert_eq!(a.job.properties["my.prop"], "x=y");
        assert_eq!(a.job.properties["stream.num.map.output.key.fields"], "2");
        assert_eq!(a.job.files[1], (PathBuf::from("y.txt"), Some("z".into())));
        assert_eq!(a.job.cmdenv, vec![("K".into(), "V".into())]);
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse(&["-input", "a", "-mapper", "cat"]).unwrap_err();
        assert!(e.to_string().contains("-output"), "{e}");
        let e = parse(&["-input", "a", "-output", "o", "-bogus", "x"]).unwrap_err();
        assert!(e.to_string().contains("-bogus"), "{e}");
        let e = parse(&["-input"]).unwrap_err();
        assert!(e.to_string().contains("needs a value"), "{e}");
        assert!(parse(&["-help"]).unwrap().help);
    }
}
