//! File formats and compressions: the one list of each that readers, writers
//! and statements share.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A file format spate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values.
    Csv,
    /// JSON lines (one object per line).
    Json,
    /// Arrow IPC files.
    Arrow,
    /// Text lines, Hadoop's `TextOutputFormat`: one line per row, top-level
    /// columns joined by a tab (so `(key, value)` rows become
    /// `key<TAB>value`); strings as they are, other values in their display
    /// form.
    Text,
}

impl FileFormat {
    /// The format a `STORED AS` name means.
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name.trim().to_ascii_uppercase().as_str() {
            "PARQUET" => Self::Parquet,
            "CSV" => Self::Csv,
            "JSON" | "NDJSON" | "JSONFILE" => Self::Json,
            "ARROW" | "IPC" => Self::Arrow,
            "TEXT" | "TEXTFILE" => Self::Text,
            other => {
                return Err(format!(
                    "spate writes PARQUET, CSV, JSON, ARROW and TEXT files, not {other}"
                ));
            }
        })
    }

    /// The name tables are `STORED AS`.
    pub fn table_type(self) -> &'static str {
        match self {
            Self::Parquet => "PARQUET",
            Self::Csv => "CSV",
            Self::Json => "JSON",
            Self::Arrow => "ARROW",
            Self::Text => "TEXT",
        }
    }

    /// DataFusion's name for the format (none for text, which spate writes).
    pub fn engine_name(self) -> Option<&'static str> {
        match self {
            Self::Parquet => Some("parquet"),
            Self::Csv => Some("csv"),
            Self::Json => Some("json"),
            Self::Arrow => Some("arrow"),
            Self::Text => None,
        }
    }

    /// The extension of part files spate's own writer makes (`part-00000`
    /// for text, as Hadoop names them; `part-00000.jsonl` for JSON lines).
    pub fn part_extension(self) -> &'static str {
        match self {
            Self::Text => "",
            Self::Json => "jsonl",
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Arrow => "arrow",
        }
    }
}

/// The compressions a file name's last suffix stands for: `(suffix, codec)`,
/// the codec named as DataFusion's readers and writers take it.
const COMPRESSED_SUFFIXES: [(&str, &str); 5] = [
    (".gz", "gzip"),
    (".zst", "zstd"),
    (".zstd", "zstd"),
    (".bz2", "bzip2"),
    (".xz", "xz"),
];

/// The compression a file name ends in (`out.csv.gz`): its suffix and codec.
pub fn compressed_suffix(name: &str) -> Option<(&'static str, &'static str)> {
    let lower = name.to_ascii_lowercase();
    COMPRESSED_SUFFIXES
        .into_iter()
        .find(|(suffix, _)| lower.ends_with(suffix))
}

/// How spate's text reader decompresses a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// Plain text.
    None,
    /// gzip (`.gz`), possibly several members.
    Gzip,
    /// Zstandard (`.zst`, `.zstd`).
    Zstd,
}

impl Compression {
    /// The compression a path's suffix announces, from the one suffix table.
    /// `Err(suffix)` for a compression the text reader does not decode
    /// (`.bz2`, `.xz`), which must not be read as plain text.
    pub fn from_path(path: &Path) -> Result<Self, &'static str> {
        let name = path.file_name().map(|n| n.to_string_lossy());
        match name.as_deref().and_then(compressed_suffix) {
            None => Ok(Compression::None),
            Some((_, "gzip")) => Ok(Compression::Gzip),
            Some((_, "zstd")) => Ok(Compression::Zstd),
            Some((suffix, _)) => Err(suffix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_suffix_table_for_readers_and_writers() {
        assert_eq!(compressed_suffix("OUT.CSV.GZ"), Some((".gz", "gzip")));
        assert_eq!(compressed_suffix("a.parquet"), None);
        assert_eq!(
            Compression::from_path(Path::new("a.txt.zst")),
            Ok(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_path(Path::new("a.txt.zstd")),
            Ok(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_path(Path::new("a.txt")),
            Ok(Compression::None)
        );
        assert_eq!(Compression::from_path(Path::new("a.txt.bz2")), Err(".bz2"));
        assert_eq!(FileFormat::parse("textfile"), Ok(FileFormat::Text));
        assert!(FileFormat::parse("orc").unwrap_err().contains("not ORC"));
    }
}
