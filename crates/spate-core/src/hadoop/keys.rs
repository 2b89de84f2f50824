//! Hadoop Streaming's keys: where the key of an output line ends, and the
//! `-k` options of `KeyFieldBasedPartitioner` and `KeyFieldBasedComparator`.
//!
//! A comparator spec becomes one *byte-comparable* column: each `-k` field is
//! encoded so that comparing the encodings byte by byte orders lines exactly as
//! the spec orders them (numbers as order-preserving floats, text escaped and
//! terminated so a prefix sorts first, `r` as the bitwise complement). The
//! engine then sorts that column with its ordinary external sort.

use crate::error::{Error, Result};

/// How a task's output line splits into key and value, and how keys are
/// partitioned and compared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeySpec {
    /// Separator between key and value (`stream.map.output.field.separator`).
    pub separator: Vec<u8>,
    /// The key is the text before the `key_fields`-th separator
    /// (`stream.num.map.output.key.fields`).
    pub key_fields: usize,
    /// Separator between fields of the key for `-k` options
    /// (`map.output.key.field.separator`).
    pub field_separator: Vec<u8>,
    /// Partition on these parts of the key (`KeyFieldBasedPartitioner`).
    pub partition: Option<Vec<KeyField>>,
    /// Sort by these parts of the key (`KeyFieldBasedComparator`).
    pub compare: Option<Vec<KeyField>>,
}

impl Default for KeySpec {
    fn default() -> Self {
        Self {
            separator: b"\t".to_vec(),
            key_fields: 1,
            field_separator: b"\t".to_vec(),
            partition: None,
            compare: None,
        }
    }
}

/// One `-k start[,end]` option: fields (and characters) are 1-based; an
/// `end_char` of 0 means the end of the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyField {
    /// First field.
    pub start_field: usize,
    /// First byte within the first field (1-based).
    pub start_char: usize,
    /// Last field (`None`: the last field of the key).
    pub end_field: Option<usize>,
    /// Last byte within the last field (0: the whole field).
    pub end_char: usize,
    /// Compare as numbers (`n`).
    pub numeric: bool,
    /// Reverse the order (`r`).
    pub reverse: bool,
}

impl KeySpec {
    /// Splits a line into key and value; a line with fewer separators than
    /// key fields is all key, with no value.
    pub fn split<'a>(&self, line: &'a [u8]) -> (&'a [u8], Option<&'a [u8]>) {
        let sep = &self.separator;
        if sep.is_empty() {
            return (line, None);
        }
        let mut from = 0;
        let mut seen = 0;
        while let Some(i) = find(&line[from..], sep) {
            seen += 1;
            let at = from + i;
            if seen == self.key_fields.max(1) {
                return (&line[..at], Some(&line[at + sep.len()..]));
            }
            from = at + sep.len();
        }
        (line, None)
    }

    /// The bytes a partitioner hashes for `key` (`None`: the whole key).
    pub fn partition_bytes(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(fields) = &self.partition else {
            return false;
        };
        for f in fields {
            out.extend_from_slice(self.span(key, f));
            out.push(0);
        }
        true
    }

    /// The byte-comparable sort key of `key` under the comparator options.
    pub fn sort_bytes(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(fields) = &self.compare else {
            return false;
        };
        for f in fields {
            let start = out.len();
            let span = self.span(key, f);
            if f.numeric {
                out.extend_from_slice(&numeric_key(span));
            } else {
                escape_into(span, out);
            }
            if f.reverse {
                for b in &mut out[start..] {
                    *b = !*b;
                }
            }
        }
        // Lines equal under every option still sort by their whole key.
        escape_into(key, out);
        true
    }

    fn span<'a>(&self, key: &'a [u8], f: &KeyField) -> &'a [u8] {
        let fields = field_bounds(key, &self.field_separator);
        let Some(&(s0, e0)) = fields.get(f.start_field.saturating_sub(1)) else {
            return &[];
        };
        let begin = (s0 + f.start_char.saturating_sub(1)).min(e0);
        let last = f.end_field.unwrap_or(fields.len()).max(f.start_field);
        let (s1, e1) = fields
            .get(last.saturating_sub(1))
            .copied()
            .unwrap_or((key.len(), key.len()));
        let end = if f.end_char == 0 {
            e1
        } else {
            (s1 + f.end_char).min(e1)
        };
        if end <= begin { &[] } else { &key[begin..end] }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return memchr_byte(needle[0], hay);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn memchr_byte(b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == b)
}

fn field_bounds(key: &[u8], sep: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    if sep.is_empty() {
        return vec![(0, key.len())];
    }
    while let Some(i) = find(&key[from..], sep) {
        out.push((from, from + i));
        from += i + sep.len();
    }
    out.push((from, key.len()));
    out
}

/// Text as bytes that compare like the text and end in a terminator, so that a
/// prefix sorts before its extensions: 0x00 is written 0x00 0xFF, the end 0x00 0x00.
fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The leading number of `text` (as `sort -n` reads it: blanks, an optional
/// minus, digits, a decimal point, digits; anything else counts as 0), encoded
/// so that byte order is numeric order.
fn numeric_key(text: &[u8]) -> [u8; 8] {
    let s = std::str::from_utf8(text).unwrap_or("");
    let s = s.trim_start();
    let mut end = 0;
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'-') {
        end = 1;
    }
    let mut dot = false;
    while end < bytes.len() {
        match bytes[end] {
            b'0'..=b'9' => end += 1,
            b'.' if !dot => {
                dot = true;
                end += 1;
            }
            _ => break,
        }
    }
    let value: f64 = s[..end].parse().unwrap_or(0.0);
    let bits = value.to_bits();
    let ordered = if value.is_sign_negative() {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Parses `-k` style options (`-k1,1 -k2,2nr`, `-nr`) as Hadoop's
/// `KeyFieldBasedComparator`/`KeyFieldBasedPartitioner` take them.
pub fn parse_key_fields(options: &str) -> Result<Vec<KeyField>> {
    let bad = |what: &str| {
        Error::Usage(format!(
            "bad key field options '{options}': {what} (expected e.g. '-k1,1 -k2,2nr')"
        ))
    };
    let mut global_numeric = false;
    let mut global_reverse = false;
    let mut fields = Vec::new();
    let mut words = options.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if let Some(spec) = word.strip_prefix("-k") {
            let spec = if spec.is_empty() {
                words.next().ok_or_else(|| bad("-k needs a position"))?
            } else {
                spec
            };
            fields.push(parse_k(spec).ok_or_else(|| bad(&format!("cannot read '-k{spec}'")))?);
        } else if let Some(flags) = word.strip_prefix('-') {
            for c in flags.chars() {
                match c {
                    'n' => global_numeric = true,
                    'r' => global_reverse = true,
                    _ => return Err(bad(&format!("unknown option '-{c}'"))),
                }
            }
        } else {
            return Err(bad(&format!("unexpected '{word}'")));
        }
    }
    if fields.is_empty() {
        fields.push(KeyField {
            start_field: 1,
            start_char: 1,
            end_field: None,
            end_char: 0,
            numeric: false,
            reverse: false,
        });
    }
    for f in &mut fields {
        // Global flags apply to fields that carry no flags of their own.
        if !f.numeric && !f.reverse {
            f.numeric = global_numeric;
            f.reverse = global_reverse;
        }
    }
    Ok(fields)
}

fn parse_k(spec: &str) -> Option<KeyField> {
    let (start, end) = match spec.split_once(',') {
        Some((s, e)) => (s, Some(e)),
        None => (spec, None),
    };
    let (start_field, start_char, mut numeric, mut reverse) = parse_pos(start)?;
    let (end_field, end_char) = match end {
        Some(e) => {
            let (f, c, n, r) = parse_pos(e)?;
            numeric |= n;
            reverse |= r;
            (Some(f), c)
        }
        None => (None, 0),
    };
    if start_field == 0 {
        return None;
    }
    Some(KeyField {
        start_field,
        start_char: start_char.max(1),
        end_field,
        end_char,
        numeric,
        reverse,
    })
}

/// `F[.C][flags]` → (field, char, numeric, reverse); char 0 when absent.
fn parse_pos(pos: &str) -> Option<(usize, usize, bool, bool)> {
    let digits_end = pos
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(pos.len());
    let (num, flags) = pos.split_at(digits_end);
    let (field, ch) = match num.split_once('.') {
        Some((f, c)) => (f.parse().ok()?, c.parse().ok()?),
        None => (num.parse().ok()?, 0),
    };
    let mut numeric = false;
    let mut reverse = false;
    for c in flags.chars() {
        match c {
            'n' => numeric = true,
            'r' => reverse = true,
            _ => return None,
        }
    }
    Some((field, ch, numeric, reverse))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(compare: &str) -> KeySpec {
        KeySpec {
            key_fields: 2,
            compare: Some(parse_key_fields(compare).unwrap()),
            partition: Some(parse_key_fields("-k1,1").unwrap()),
            ..KeySpec::default()
        }
    }

    #[test]
    fn split_on_nth_separator() {
        let s = KeySpec::default();
        assert_eq!(s.split(b"a\tb\tc"), (&b"a"[..], Some(&b"b\tc"[..])));
        assert_eq!(s.split(b"abc"), (&b"abc"[..], None));
        let two = KeySpec {
            key_fields: 2,
            ..KeySpec::default()
        };
        assert_eq!(two.split(b"a\tb\tc"), (&b"a\tb"[..], Some(&b"c"[..])));
        assert_eq!(two.split(b"a\tb"), (&b"a\tb"[..], None));
        let comma = KeySpec {
            separator: b"::".to_vec(),
            ..KeySpec::default()
        };
        assert_eq!(comma.split(b"k::v::w"), (&b"k"[..], Some(&b"v::w"[..])));
    }

    #[test]
    fn comparator_orders_like_sort() {
        let s = spec("-k1,1 -k2,2nr");
        let mut keys: Vec<&[u8]> = vec![
            b"bob\t3", b"al\t10", b"bob\t20", b"al\t9", b"al\t-1", b"a\t5", b"bob\tx",
        ];
        keys.sort_by_key(|k| {
            let mut out = Vec::new();
            s.sort_bytes(k, &mut out);
            out
        });
        let want: Vec<&[u8]> = vec![
            b"a\t5", b"al\t10", b"al\t9", b"al\t-1", b"bob\t20", b"bob\t3", b"bob\tx",
        ];
        assert_eq!(keys, want);
    }

    #[test]
    fn partition_on_first_field() {
        let s = spec("-k1,1");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        s.partition_bytes(b"al\t1", &mut a);
        s.partition_bytes(b"al\t2", &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn options_parse() {
        let f = parse_key_fields("-k2.2,3n -r").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0],
            KeyField {
                start_field: 2,
                start_char: 2,
                end_field: Some(3),
                end_char: 0,
                numeric: true,
                reverse: false
            }
        );
        let g = parse_key_fields("-nr").unwrap();
        assert!(g[0].numeric && g[0].reverse);
        assert!(parse_key_fields("-k0").is_err());
        assert!(parse_key_fields("-kx").is_err());
    }
}
