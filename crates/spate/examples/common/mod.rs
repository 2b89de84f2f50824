//! Argument handling shared by the examples: `INPUT... [-o OUTPUT]`; with no
//! input, a small generated text is used.

use std::path::PathBuf;

#[allow(dead_code, reason = "not every example writes output")]
pub struct Args {
    pub inputs: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn args() -> Args {
    let mut inputs = Vec::new();
    let mut output = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "-o" || a == "--output" {
            output = it.next().map(PathBuf::from);
        } else {
            inputs.push(PathBuf::from(a));
        }
    }
    let mut tmp = None;
    if inputs.is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sample.txt");
        spate::jobs::corpus::write_file(&path, 1 << 20, 42).expect("sample text");
        inputs.push(path);
        tmp = Some(dir);
    }
    Args {
        inputs,
        output,
        _tmp: tmp,
    }
}
