//! Another build of a program, for the tests of the cluster's build check.

use std::path::{Path, PathBuf};

/// A copy of `program` in `dir` with another build id (one byte of its
/// build-id note changed): to a cluster, another build of the same
/// program. `build_id_of` reads a program's build id. The copy and its id.
pub fn another_build(
    program: &Path,
    dir: &Path,
    build_id_of: fn(&Path) -> Option<String>,
) -> (PathBuf, String) {
    let id = build_id_of(program).expect("the program has a build id");
    let id_bytes: Vec<u8> = (0..id.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&id[i..i + 2], 16).unwrap())
        .collect();
    let mut bytes = std::fs::read(program).unwrap();
    let at = bytes
        .windows(id_bytes.len())
        .position(|w| w == id_bytes.as_slice())
        .unwrap();
    bytes[at + id_bytes.len() - 1] ^= 0xff;
    let name = program.file_name().unwrap().to_string_lossy();
    let copy = dir.join(format!("{name}-rebuilt"));
    std::fs::write(&copy, bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let other = build_id_of(&copy).unwrap();
    assert_ne!(other, id);
    (copy, other)
}
