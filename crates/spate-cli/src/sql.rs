//! `spate sql`: the interactive shell and the script runner (glue over
//! `spate::sql`).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use spate::Context;
use spate::error::{Error, Result};
use spate::sql::{Format, Outcome, SqlSession, catalog, split};

use crate::EngineArgs;

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// Run these statements and exit (repeatable; each may hold several, separated by `;`).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the statements in a file and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// How results are printed: table, csv or json (one object per line).
    #[arg(long, default_value = "table", value_name = "FORMAT")]
    format: String,
    /// Run queries on the cluster whose scheduler is at ADDR (HOST:PORT, as
    /// `spate cluster up` prints it; default: $SPATE_CLUSTER). The catalog
    /// stays here; table files must be readable at the same paths from the
    /// scheduler and every executor (a shared filesystem).
    #[arg(long, value_name = "ADDR")]
    cluster: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

const HELP: &str = "\
Statements end with ';' and may span lines.
  SELECT ... FROM t;                         query (DataFusion SQL)
  CREATE EXTERNAL TABLE t [(col TYPE, ...)] STORED AS PARQUET|CSV|JSON|ARROW|TEXT
      [PARTITIONED BY (col, ...)] LOCATION 'path/' [OPTIONS ('format.has_header' 'true')];
  CREATE TABLE t [STORED AS PARQUET|CSV|JSON|ARROW|TEXT] [PARTITIONED BY (col, ...)]
      [LOCATION 'path/'] [WITH (compression = 'zstd', ...)] AS SELECT ...;
  INSERT INTO t SELECT ... | VALUES (...);
  COPY (SELECT ...) | t TO 'path/' | 'file.csv.gz' [STORED AS ...] [PARTITIONED BY (col)]
      [OPTIONS (compression 'gzip', ...)];
  CREATE [OR REPLACE] VIEW v AS SELECT ...;   DROP TABLE|VIEW [IF EXISTS] t;
  SHOW TABLES;   DESCRIBE t;   EXPLAIN SELECT ...;
Paths may be s3://, gs://, az://, http(s):// URLs. New outputs appear complete
(with _SUCCESS) or not at all; a failed INSERT leaves the table as it was.
Tables are kept in the catalog under $SPATE_HOME (default ~/.spate).
Shell commands:
  \\d          list the catalog's tables with their columns
  \\d NAME     describe a table
  \\?          this help
  \\q          quit (or Ctrl-D)";

/// Runs `spate sql`.
pub fn sql(
    args: &SqlArgs,
    context: impl Fn(&EngineArgs, Option<&str>) -> Result<Context>,
) -> Result<()> {
    let format: Format = args.format.parse()?;
    let ctx = context(&args.engine, args.cluster.as_deref())?;
    let home = catalog::home();
    let mut session = SqlSession::open(&ctx, &home)?;
    for w in session.warnings() {
        eprintln!("spate: warning: {w}");
    }
    let mut script = String::new();
    for c in &args.commands {
        script.push_str(c);
        script.push_str(";\n");
    }
    if let Some(f) = &args.file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::Usage(format!("cannot read {}: {e}", f.display())))?;
        script.push_str(&text);
    }
    if script.is_empty() {
        if std::io::stdin().is_terminal() {
            return shell(&mut session, format, &home);
        }
        std::io::stdin()
            .read_to_string(&mut script)
            .map_err(|e| Error::Usage(format!("reading standard input: {e}")))?;
    }
    let source = match &args.file {
        Some(f) if args.commands.is_empty() => Some(f.display().to_string()),
        _ => None,
    };
    run_script(&mut session, &script, format, source.as_deref())
}

/// Runs every statement, stopping at the first that fails (the error
/// names it and its line).
fn run_script(
    session: &mut SqlSession<'_>,
    script: &str,
    format: Format,
    source: Option<&str>,
) -> Result<()> {
    let pieces = split::split(script);
    let total = pieces.len();
    for (i, piece) in pieces.iter().enumerate() {
        let located = |e: Error| -> Error {
            let place = match source {
                Some(file) => format!("{file}: statement {} (line {}): ", i + 1, piece.line),
                None if total > 1 => format!("statement {} (line {}): ", i + 1, piece.line),
                None => String::new(),
            };
            match e {
                _ if place.is_empty() => e,
                Error::Usage(m) => Error::Usage(format!("{place}{m}")),
                Error::Plan(m) => Error::Plan(format!("{place}{m}")),
                Error::Execution(inner) => {
                    Error::Execution(datafusion_context(place.trim_end_matches(": "), inner))
                }
                other => other,
            }
        };
        if run_one(session, piece.text, format, false).map_err(located)? == Stdout::Closed {
            // `spate sql ... | head`: the reader has what it wanted.
            break;
        }
    }
    Ok(())
}

fn datafusion_context(
    place: &str,
    inner: spate::sql::session::DataFusionError,
) -> spate::sql::session::DataFusionError {
    spate::sql::session::DataFusionError::Context(place.to_string(), Box::new(inner))
}

/// Whether standard output still has a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdout {
    Open,
    /// The reader went away (a closed pipe): not an error, nothing more to print.
    Closed,
}

/// Runs one statement and prints its result; timing goes to stderr.
fn run_one(
    session: &mut SqlSession<'_>,
    text: &str,
    format: Format,
    timing: bool,
) -> Result<Stdout> {
    let start = Instant::now();
    let outcome = session.run(text)?;
    if print_outcome(&outcome, format)? == Stdout::Closed {
        return Ok(Stdout::Closed);
    }
    if timing || format == Format::Table {
        let what = match &outcome {
            Outcome::Rows { batches, .. } => {
                let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                format!("{n} row{}", if n == 1 { "" } else { "s" })
            }
            Outcome::Done(msg) => msg.clone(),
        };
        eprintln!("{what} in {:.3}s", start.elapsed().as_secs_f64());
    }
    Ok(Stdout::Open)
}

fn print_outcome(outcome: &Outcome, format: Format) -> Result<Stdout> {
    // A statement with no result columns (`SET`) prints nothing.
    if let Outcome::Rows { schema, batches } = outcome
        && !schema.fields().is_empty()
    {
        let stdout = std::io::stdout();
        let mut out = PipeWatch {
            inner: std::io::BufWriter::new(stdout.lock()),
            closed: false,
        };
        let written = spate::sql::format::write(format, schema, batches, &mut out).and_then(|()| {
            out.flush()
                .map_err(|e| Error::Internal(format!("writing to stdout: {e}")))
        });
        if out.closed {
            return Ok(Stdout::Closed);
        }
        written?;
    }
    Ok(Stdout::Open)
}

/// A writer that notes when its reader has gone (`EPIPE`), whatever error
/// the formatter then makes of it.
struct PipeWatch<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> PipeWatch<W> {
    fn note<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        r
    }
}

impl<W: Write> Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// The interactive shell: line editing, history in `$SPATE_HOME/history`,
/// statements until `;`.
fn shell(session: &mut SqlSession<'_>, format: Format, home: &std::path::Path) -> Result<()> {
    let mut editor =
        DefaultEditor::new().map_err(|e| Error::Usage(format!("cannot start the shell: {e}")))?;
    let history = home.join("history");
    let _ = editor.load_history(&history);
    eprintln!(
        "spate sql {} — statements end with ';', \\? for help, \\q to quit",
        env!("CARGO_PKG_VERSION")
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "spate> "
        } else {
            "   ..> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && trimmed.starts_with('\\') {
                    let _ = editor.add_history_entry(trimmed);
                    if !meta(session, trimmed, format) {
                        break;
                    }
                    continue;
                }
                if buffer.is_empty() && matches!(trimmed, "quit" | "exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !split::is_complete(&buffer) {
                    continue;
                }
                let _ = editor.add_history_entry(buffer.trim_end());
                for piece in split::split(&buffer) {
                    if let Err(e) = run_one(session, piece.text, format, true).map(|_| ()) {
                        eprintln!("error: {e}");
                        break;
                    }
                }
                buffer.clear();
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Usage(format!("reading input: {e}"))),
        }
    }
    let _ = editor.save_history(&history);
    Ok(())
}

/// A backslash command; false to quit.
fn meta(session: &mut SqlSession<'_>, command: &str, format: Format) -> bool {
    let mut parts = command.split_whitespace();
    let result = match (parts.next(), parts.next()) {
        (Some("\\q"), _) => return false,
        (Some("\\?" | "\\h" | "\\help"), _) => {
            eprintln!("{HELP}");
            Ok(())
        }
        (Some("\\d" | "\\dt"), None) => session
            .tables()
            .and_then(|o| print_outcome(&o, format))
            .map(|_| ()),
        (Some("\\d"), Some(name)) => {
            run_one(session, &format!("DESCRIBE {name}"), format, false).map(|_| ())
        }
        _ => Err(Error::Usage(format!(
            "unknown command {command} (\\? for help)"
        ))),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
    }
    true
}
