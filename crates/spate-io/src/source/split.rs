//! Planning byte-range splits of input files over readers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Compression, InputFile};
use crate::error::{Error, Result};

/// Files smaller than this are never split.
const MIN_SPLIT_BYTES: u64 = 1 << 20;

/// One byte range of one input file: a unit of reading.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileRange {
    /// The file.
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte whose line this range owns (`u64::MAX`: to the end).
    pub end: u64,
    /// How the file is compressed.
    pub compression: Compression,
    /// The file's size in bytes when the read was planned.
    #[serde(default)]
    pub size: u64,
}

/// Plans how to read `files` with `partitions` readers: uncompressed files are
/// cut into byte ranges of about equal size; compressed files go whole to the
/// least loaded reader. Empty partitions are dropped, but at least one remains.
pub fn plan_splits(files: &[InputFile], partitions: usize) -> Result<Vec<Vec<FileRange>>> {
    let partitions = partitions.max(1);
    let compressions = files
        .iter()
        .map(|f| {
            Compression::from_path(&f.path).map_err(|suffix| Error::UnsupportedCompression {
                path: f.path.clone(),
                suffix,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let splittable: u64 = files
        .iter()
        .zip(&compressions)
        .filter(|(_, c)| **c == Compression::None)
        .map(|(f, _)| f.len)
        .sum();
    let target = splittable.div_ceil(partitions as u64).max(MIN_SPLIT_BYTES);
    let mut ranges: Vec<(u64, FileRange)> = Vec::new();
    for (f, &compression) in files.iter().zip(&compressions) {
        if compression != Compression::None || f.len <= target {
            ranges.push((
                f.len,
                FileRange {
                    path: f.path.clone(),
                    start: 0,
                    end: u64::MAX,
                    compression,
                    size: f.len,
                },
            ));
            continue;
        }
        let pieces = f.len.div_ceil(target);
        let step = f.len.div_ceil(pieces);
        let mut start = 0;
        while start < f.len {
            let end = (start + step).min(f.len);
            let end_mark = if end == f.len { u64::MAX } else { end };
            ranges.push((
                end - start,
                FileRange {
                    path: f.path.clone(),
                    start,
                    end: end_mark,
                    compression,
                    size: f.len,
                },
            ));
            start = end;
        }
    }
    // Greedy: biggest ranges first, each to the least loaded reader. Ranges of a
    // reader are then put back in file order so output order is deterministic.
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by(|&a, &b| ranges[b].0.cmp(&ranges[a].0).then(a.cmp(&b)));
    let mut load = vec![0u64; partitions];
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); partitions];
    for i in order {
        let (p, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(p, l)| (**l, *p))
            .unwrap_or((0, &0));
        load[p] += ranges[i].0.max(1);
        assigned[p].push(i);
    }
    let mut out: Vec<Vec<FileRange>> = assigned
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|mut a| {
            a.sort_unstable();
            a.into_iter().map(|i| ranges[i].1.clone()).collect()
        })
        .collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    Ok(out)
}

/// Partitions for reading `files` whole, one row each (see
/// [`LineOptions::whole_files`](super::LineOptions)): no file is split;
/// files go to the least loaded partition, biggest first.
pub fn plan_whole_files(files: &[InputFile], partitions: usize) -> Result<Vec<Vec<FileRange>>> {
    let partitions = partitions.max(1);
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| files[b].len.cmp(&files[a].len).then(a.cmp(&b)));
    let mut load = vec![0u64; partitions];
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); partitions];
    for i in order {
        let f = &files[i];
        Compression::from_path(&f.path).map_err(|suffix| Error::UnsupportedCompression {
            path: f.path.clone(),
            suffix,
        })?;
        let (p, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(p, l)| (**l, *p))
            .unwrap_or((0, &0));
        load[p] += f.len.max(1);
        assigned[p].push(i);
    }
    let mut out: Vec<Vec<FileRange>> = Vec::new();
    for mut a in assigned.into_iter().filter(|a| !a.is_empty()) {
        a.sort_unstable();
        let mut ranges = Vec::new();
        for i in a {
            let f = &files[i];
            let compression = Compression::from_path(&f.path).map_err(|suffix| {
                Error::UnsupportedCompression {
                    path: f.path.clone(),
                    suffix,
                }
            })?;
            ranges.push(FileRange {
                path: f.path.clone(),
                start: 0,
                end: u64::MAX,
                compression,
                size: f.len,
            });
        }
        out.push(ranges);
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::expand_inputs;

    #[test]
    fn compressions_the_reader_cannot_decode_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt.bz2");
        std::fs::write(&path, b"BZh9").unwrap();
        let files = expand_inputs(&[&path]).unwrap();
        let err = plan_splits(&files, 2).unwrap_err().to_string();
        assert!(
            err.contains("a.txt.bz2: .bz2 files are not read as text"),
            "{err}"
        );
    }
}
