//! The build id of the running program: the GNU build-id note the linker
//! puts in the executable (a hash of its contents), so two processes know
//! whether they run the same build. A cluster's executors must run the
//! scheduler's build: steps are found by name, and an executor of another
//! build of a job would run other closures under the same names.

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

/// This program's build id (hex), read once.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let exe = std::path::Path::new("/proc/self/exe");
        gnu_build_id(exe)
            .or_else(|| content_hash(exe))
            .unwrap_or_else(|| format!("v{}-unknown", env!("CARGO_PKG_VERSION")))
    })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The build id of another program file (its `NT_GNU_BUILD_ID` note), if
/// it has one.
pub fn build_id_of(path: &std::path::Path) -> Option<String> {
    gnu_build_id(path)
}

/// The prefix of a spate scheduler's id; the build id follows, then a
/// random part (`spate-<build>-<random>`).
const SCHEDULER_ID_PREFIX: &str = "spate-";

/// The id a scheduler of this build gives itself (Ballista's `scheduler_id`,
/// served at `/api/state`): executors read the scheduler's build from it.
pub fn scheduler_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{SCHEDULER_ID_PREFIX}{}-{}", build_id(), &random[..8])
}

/// The build of the scheduler whose id is `id`; `None` if it is not a
/// spate scheduler's id.
pub fn build_of_scheduler(id: &str) -> Option<&str> {
    let rest = id.strip_prefix(SCHEDULER_ID_PREFIX)?;
    let (build, _) = rest.rsplit_once('-')?;
    (!build.is_empty()).then_some(build)
}

/// The `NT_GNU_BUILD_ID` note of a 64-bit little-endian ELF file, from its
/// note segments (near the start of the file).
fn gnu_build_id(path: &std::path::Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 64];
    file.read_exact(&mut head).ok()?;
    // ELF magic, 64-bit, little-endian.
    if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let phoff = u64_at(&head, 0x20)?;
    let phentsize = usize::from(u16_at(&head, 0x36)?);
    let phnum = usize::from(u16_at(&head, 0x38)?);
    let mut headers = vec![0u8; phentsize.checked_mul(phnum)?];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut headers).ok()?;
    const PT_NOTE: u32 = 4;
    for ph in headers.chunks(phentsize) {
        if u32_at(ph, 0)? != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(ph, 8)?, u64_at(ph, 32)?);
        if size > 1 << 16 {
            continue;
        }
        let mut notes = vec![0u8; usize::try_from(size).ok()?];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut notes).ok()?;
        if let Some(id) = find_build_id(&notes) {
            return Some(id);
        }
    }
    None
}

/// The build id among ELF notes (each: name size, descriptor size, type,
/// then name and descriptor, each padded to 4 bytes).
fn find_build_id(mut notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let namesz = usize::try_from(u32_at(notes, 0)?).ok()?;
        let descsz = usize::try_from(u32_at(notes, 4)?).ok()?;
        let kind = u32_at(notes, 8)?;
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + pad(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        notes = notes.get(desc_at + pad(descsz)..)?;
    }
    None
}

/// Without a build-id note: a hash of the whole executable (slower, once).
fn content_hash(path: &std::path::Path) -> Option<String> {
    use std::hash::Hasher;
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = rustc_hash::FxHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Some(format!("{:016x}", hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_program_has_a_stable_build_id() {
        let id = build_id();
        assert!(id.len() >= 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        // Read again from the file: the same.
        assert_eq!(
            gnu_build_id(std::path::Path::new("/proc/self/exe"))
                .or_else(|| content_hash(std::path::Path::new("/proc/self/exe")))
                .as_deref(),
            Some(id)
        );
    }

    #[test]
    fn scheduler_ids_carry_the_build() {
        let id = scheduler_id();
        assert_eq!(build_of_scheduler(&id), Some(build_id()));
        assert_eq!(build_of_scheduler("spate-abc-1234"), Some("abc"));
        assert_eq!(build_of_scheduler("scheduler-a"), None);
        assert_eq!(build_of_scheduler("spate--x"), None);
    }

    #[test]
    fn notes_are_parsed_with_their_padding() {
        let mut notes = Vec::new();
        // An ABI tag note first (name "GNU", 16-byte descriptor, type 1).
        notes.extend(4u32.to_le_bytes());
        notes.extend(16u32.to_le_bytes());
        notes.extend(1u32.to_le_bytes());
        notes.extend(b"GNU\0");
        notes.extend([0u8; 16]);
        // Then the build id (type 3, 3 bytes padded to 4).
        notes.extend(4u32.to_le_bytes());
        notes.extend(3u32.to_le_bytes());
        notes.extend(3u32.to_le_bytes());
        notes.extend(b"GNU\0");
        notes.extend([0xab, 0x01, 0xff, 0]);
        assert_eq!(find_build_id(&notes).as_deref(), Some("ab01ff"));
        assert_eq!(find_build_id(&notes[..20]), None);
    }
}
