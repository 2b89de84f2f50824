//! Splitting SQL text into statements on `;`, outside quotes and comments.

/// One statement of a script: its text (without the `;`) and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The statement's text, trimmed.
    pub text: &'a str,
    /// Line (1-based) of the statement's first character in the script.
    pub line: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Single,
    Double,
    LineComment,
    BlockComment,
}

/// Byte offsets of the `;`s that end statements, and the state at the end.
fn scan(text: &str) -> (Vec<usize>, State) {
    let bytes = text.as_bytes();
    let mut ends = Vec::new();
    let mut state = State::Code;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            State::Code => match (b, next) {
                (b'\'', _) => state = State::Single,
                (b'"', _) => state = State::Double,
                (b'-', Some(b'-')) => {
                    state = State::LineComment;
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = State::BlockComment;
                    i += 1;
                }
                (b';', _) => ends.push(i),
                _ => {}
            },
            // A doubled quote inside a string is an escaped quote: leaving
            // and re-entering the string on the next byte handles it.
            State::Single if b == b'\'' => state = State::Code,
            State::Double if b == b'"' => state = State::Code,
            State::LineComment if b == b'\n' => state = State::Code,
            State::BlockComment if b == b'*' && next == Some(b'/') => {
                state = State::Code;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    (ends, state)
}

/// Whether `text` holds only comments and blanks.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
        && !text.contains("/*")
}

/// The statements of a script; the last may lack its `;`.
pub fn split(text: &str) -> Vec<Piece<'_>> {
    let (ends, _) = scan(text);
    let mut out = Vec::new();
    let mut start = 0;
    for end in ends.into_iter().chain(std::iter::once(text.len())) {
        let raw = &text[start..end];
        let trimmed = raw.trim();
        if !trimmed.is_empty() && !is_blank(trimmed) {
            let lead = raw.len() - raw.trim_start().len();
            let line = text[..start + lead].matches('\n').count() + 1;
            out.push(Piece {
                text: trimmed,
                line,
            });
        }
        start = (end + 1).min(text.len());
    }
    out
}

/// Whether an interactive buffer is ready to run: it ends with a `;`
/// outside quotes and comments (blanks and comments may follow).
pub fn is_complete(text: &str) -> bool {
    let (ends, state) = scan(text);
    if state == State::Single || state == State::Double || state == State::BlockComment {
        return false;
    }
    match ends.last() {
        Some(&end) => is_blank(&text[end + 1..]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let script = "SELECT ';' AS a; -- a comment; still\nSELECT \"x;y\"\n/* ; */ FROM t;\n\nSELECT 'it''s; fine'";
        let texts: Vec<&str> = split(script).iter().map(|p| p.text).collect();
        assert_eq!(
            texts,
            vec![
                "SELECT ';' AS a",
                "-- a comment; still\nSELECT \"x;y\"\n/* ; */ FROM t",
                "SELECT 'it''s; fine'"
            ]
        );
        assert_eq!(split(script)[2].line, 5);
        assert!(split("  ;; -- nothing\n").is_empty());
    }

    #[test]
    fn completeness() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- done\n"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1 /* ; */"));
        assert!(is_complete("SELECT 1;\n  "));
    }
}
