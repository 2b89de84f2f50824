//! Expanding input paths (files, directories, globs) into files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An input file found by [`expand_inputs`], with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// The file.
    pub path: PathBuf,
    /// Its size on disk in bytes.
    pub len: u64,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::store::is_hidden_name)
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn push_file(path: PathBuf, out: &mut Vec<InputFile>) -> Result<()> {
    let meta = std::fs::metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
    out.push(InputFile {
        path,
        len: meta.len(),
    });
    Ok(())
}

/// Lists the files of a directory as Hadoop does: not recursive into hidden
/// entries (names starting with `.` or `_`, such as `_SUCCESS`), sorted by
/// name. `ancestors` are the directories being listed above this one (by
/// device and inode): a symbolic link back to one of them is an error, not
/// an endless walk.
fn push_dir(dir: &Path, ancestors: &mut Vec<(u64, u64)>, out: &mut Vec<InputFile>) -> Result<()> {
    let id = dir_id(dir)?;
    if ancestors.contains(&id) {
        return Err(symlink_loop(dir));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("listing", dir, e))?;
    entries.sort();
    ancestors.push(id);
    for path in entries {
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            push_dir(&path, ancestors, out)?;
        } else {
            push_file(path, out)?;
        }
    }
    ancestors.pop();
    Ok(())
}

/// A directory's identity (device, inode), through symbolic links.
fn dir_id(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("listing", dir, e))?;
    Ok((meta.dev(), meta.ino()))
}

fn symlink_loop(dir: &Path) -> Error {
    Error::io(
        "listing",
        dir,
        std::io::Error::other(
            "a symbolic link leads back to a directory that contains it \
             (remove the link or name the files to read)",
        ),
    )
}

/// A glob's `**` follows symbolic links without noticing loops: through a
/// link back to an ancestor, `d/**/f` matches `d/loop/f`, `d/loop/loop/f`,
/// ... (until the kernel's link limit), the same file many times over. A
/// match whose directories repeat one another is refused like a directory
/// walk that meets the loop.
fn check_no_loop(matched: &Path) -> Result<()> {
    let mut seen = Vec::new();
    let mut prefix = PathBuf::new();
    let mut parts = matched.components().peekable();
    while let Some(part) = parts.next() {
        prefix.push(part);
        if parts.peek().is_none() && !prefix.is_dir() {
            break;
        }
        let id = dir_id(&prefix)?;
        if seen.contains(&id) {
            return Err(symlink_loop(&prefix));
        }
        seen.push(id);
    }
    Ok(())
}

/// Whether a glob match reaches a hidden name (`_SUCCESS`, a job's
/// `.out.spate-staging-*` directory) through a wildcard: a hidden name is
/// read only where the pattern spells it out, as Hadoop's glob does.
fn hidden_by_wildcard(pattern: &str, matched: &Path) -> bool {
    let pattern_parts: Vec<&str> = Path::new(pattern)
        .components()
        .map(|c| c.as_os_str().to_str().unwrap_or(""))
        .collect();
    let matched_parts: Vec<String> = matched
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let hidden_char = |p: &str| p.starts_with('.') || p.starts_with('_');
    matched_parts.iter().enumerate().any(|(i, part)| {
        if !crate::store::is_hidden_name(part) || part == "." || part == ".." {
            return false;
        }
        if pattern_parts.len() == matched_parts.len() {
            // One pattern part per path part: the part that matched must
            // itself start with the hidden character.
            !hidden_char(pattern_parts[i])
        } else {
            // `**` matched several parts: only names the pattern spells
            // out are asked for.
            !pattern_parts.contains(&part.as_str())
        }
    })
}

/// Expands local input paths (files, directories, glob patterns) into
/// files, in a deterministic order. Any path that matches nothing is an
/// error: a job never silently reads less than it was given. Hidden files
/// and directories are left out of directory listings and glob matches
/// unless named. Object-store URLs need [`list_inputs`].
pub fn expand_inputs<P: AsRef<Path>>(inputs: &[P]) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    for input in inputs {
        let input = input.as_ref();
        if super::is_url(&input.to_string_lossy()) {
            return Err(Error::BadInput(format!(
                "{}: only local files are read here, not object-store URLs",
                input.display()
            )));
        }
        expand_local(input, &mut out)?;
    }
    Ok(out)
}

/// Expands input paths and object-store URLs (`s3://bucket/dir/`,
/// `gs://bucket/logs/*.gz`; see [`is_url`](super::is_url)) into files, in
/// the order given, each expanded as [`expand_inputs`] does. A URL's store
/// is the one registered in `runtime` for its bucket, or else one set up
/// from the environment (see [`crate::store`]) and registered there.
pub async fn list_inputs<P: AsRef<Path>>(
    inputs: &[P],
    runtime: &datafusion::execution::runtime_env::RuntimeEnv,
) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    for input in inputs {
        let input = input.as_ref();
        let text = input.to_string_lossy();
        if super::is_url(&text) {
            out.extend(super::objects::list_url(&text, runtime).await?);
        } else if let Some(local) = text.strip_prefix("file://") {
            expand_local(Path::new(local), &mut out)?;
        } else {
            expand_local(input, &mut out)?;
        }
    }
    Ok(out)
}

fn expand_local(input: &Path, out: &mut Vec<InputFile>) -> Result<()> {
    let mut ancestors = Vec::new();
    let text = input.to_string_lossy();
    if input.exists() {
        if input.is_dir() {
            push_dir(input, &mut ancestors, out)?;
        } else {
            push_file(input.to_path_buf(), out)?;
        }
    } else if has_glob_chars(&text) {
        let paths = glob::glob(&text).map_err(|e| Error::BadPattern {
            pattern: text.to_string(),
            message: e.to_string(),
        })?;
        let mut matched: Vec<PathBuf> = Vec::new();
        for p in paths {
            let p = p.map_err(|e| Error::io("listing", e.path().to_path_buf(), e.into()))?;
            if !hidden_by_wildcard(&text, &p) {
                check_no_loop(&p)?;
                matched.push(p);
            }
        }
        matched.sort();
        if matched.is_empty() {
            return Err(Error::InputNotFound {
                path: input.to_path_buf(),
            });
        }
        for p in matched {
            if p.is_dir() {
                push_dir(&p, &mut ancestors, out)?;
            } else {
                push_file(p, out)?;
            }
        }
    } else {
        return Err(Error::InputNotFound {
            path: input.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_skip_hidden_names_and_symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join(".out2.spate-staging-1")).unwrap();
        std::fs::write(out.join("part-00000"), "a\n").unwrap();
        std::fs::write(out.join("_SUCCESS"), "").unwrap();
        std::fs::write(out.join(".out2.spate-staging-1/part-00000"), "x\n").unwrap();
        std::fs::write(dir.path().join(".hidden.txt"), "h\n").unwrap();
        let names = |pattern: String| -> Vec<String> {
            expand_inputs(&[pattern])
                .unwrap()
                .into_iter()
                .map(|f| {
                    f.path
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect()
        };
        let root = dir.path().display();
        assert_eq!(names(format!("{root}/out/*")), ["out/part-00000"]);
        assert_eq!(names(format!("{root}/*/*")), ["out/part-00000"]);
        assert_eq!(names(format!("{root}/**/part-*")), ["out/part-00000"]);
        assert_eq!(names(format!("{root}/*")), ["out/part-00000"]);
        // Named, a hidden file is read.
        assert_eq!(names(format!("{root}/out/_SUC*")), ["out/_SUCCESS"]);
        assert_eq!(names(format!("{root}/.hid*")), [".hidden.txt"]);

        // A link back to an ancestor: an error naming the place, no overflow.
        std::os::unix::fs::symlink(dir.path(), out.join("loop")).unwrap();
        let err = expand_inputs(&[dir.path()]).unwrap_err().to_string();
        assert!(
            err.contains("loop") && err.contains("symbolic link"),
            "{err}"
        );
        // `**` follows the link: refused too, not the same file read again
        // at out/loop/out/part-00000, out/loop/out/loop/out/part-00000, ...
        let err = expand_inputs(&[format!("{root}/**/part-*")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loop") && err.contains("symbolic link"),
            "{err}"
        );
        // A link that is no loop is followed.
        std::fs::remove_file(out.join("loop")).unwrap();
        std::os::unix::fs::symlink(&out, dir.path().join("again")).unwrap();
        assert_eq!(
            names(format!("{root}/**/part-*")),
            ["again/part-00000", "out/part-00000"]
        );
    }

    #[test]
    fn missing_inputs_are_errors() {
        let err = expand_inputs(&["/no/such/file"]).unwrap_err();
        assert!(matches!(err, Error::InputNotFound { .. }));
        let err = expand_inputs(&["/no/such/*.txt"]).unwrap_err();
        assert!(matches!(err, Error::InputNotFound { .. }));
    }
}
