//! The project's reference points, shared by the benchmarks: the real-text
//! corpora and the hand-tuned word count of `../shared/reference/` (used
//! from there, never copied), the answers of word-count runs, and timing a
//! process with its peak memory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `../shared/reference/`, beside the repository.
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference")
}

/// A real-text corpus (`tiny`, `100m` or `1g`), made once by the
/// reference's script under the target directory.
pub fn corpus(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus");
    let path = dir.join(format!("corpus_{name}.txt"));
    if !path.exists() {
        let status = Command::new("bash")
            .arg(reference_dir().join("corpus/make_corpus.sh"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "make_corpus.sh failed");
    }
    path
}

/// The reference word count, built once outside the project (as the
/// reference's README says).
pub fn reference_wc() -> PathBuf {
    let target = Path::new(&std::env::var("HOME").unwrap()).join(".cache/reference-wordcount");
    let exe = target.join("release/reference-wordcount");
    if !exe.exists() {
        let status = Command::new("cargo")
            .args(["build", "--release", "--manifest-path"])
            .arg(reference_dir().join("wordcount/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .unwrap();
        assert!(status.success(), "building the reference word count failed");
    }
    exe
}

/// The lines of a file or of a directory's part files, sorted.
pub fn answer(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    lines.sort_unstable();
    lines
}

/// One run of a process: its wall time and peak resident memory in KiB
/// (measured by `/usr/bin/time` when it is installed), or why it failed.
pub fn run_process(command: Command) -> Result<(Duration, Option<u64>), String> {
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(rss_file.path());
        c.arg(command.get_program()).args(command.get_args());
        for (k, v) in command.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    } else {
        command
    };
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot start: {e}"))?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("exited with {}: {last}", out.status));
    }
    let rss = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.lines().last()?.trim().parse().ok());
    Ok((elapsed, rss))
}
