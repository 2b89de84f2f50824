//! Hadoop's Aggregate package (`-reducer aggregate`, `-combiner aggregate`),
//! run in-process instead of as a command.
//!
//! A mapper names the aggregation in each key: `TYPE:id<TAB>value`, where
//! `TYPE` is one of `LongValueSum`, `LongValueMax`, `LongValueMin`,
//! `DoubleValueSum`, `StringValueMax`, `StringValueMin`, `UniqValueCount` or
//! `ValueHistogram` (whose value is `item` or `item<TAB>count`). The reducer
//! writes `id<TAB>report`, as Hadoop's `ValueAggregatorReducer` does; the
//! combiner keeps the typed key and writes the partial results
//! (`ValueAggregatorCombiner`), so a combined and an uncombined job give the
//! same lines.
//!
//! Reports are formatted as Java formats them (`3`, `2.5`, `1.0E10`), and
//! `ValueHistogram` reports `distinct items, min, median, max, mean, standard
//! deviation` of the item counts. Strings compare bytewise. Where Hadoop
//! would throw (a key with no type, an unknown type, a number that does not
//! parse) the task fails with a message naming the key and the value. One
//! deliberate difference: a 64-bit sum that overflows fails the task, where
//! Java's `long` wraps around to a wrong answer.
//!
//! Memory: one key's aggregate at a time (input comes sorted by key);
//! `UniqValueCount` and `ValueHistogram` hold that key's distinct values.

use std::collections::{BTreeMap, BTreeSet};

/// The name that selects the package on a Hadoop command line.
pub const AGGREGATE: &str = "aggregate";

/// Which side of the shuffle the aggregation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateRole {
    /// Partial results under the typed key (`ValueAggregatorCombiner`).
    Combine,
    /// Final reports under the bare id (`ValueAggregatorReducer`).
    Reduce,
}

/// The types a key may name, as Hadoop spells them.
const TYPES: &str = "LongValueSum, LongValueMax, LongValueMin, DoubleValueSum, \
                     StringValueMax, StringValueMin, UniqValueCount, ValueHistogram";

/// One key's running aggregate.
#[derive(Debug)]
enum Aggregator {
    LongSum(i64),
    LongMax(i64),
    LongMin(i64),
    DoubleSum(f64),
    StringMax(Option<Vec<u8>>),
    StringMin(Option<Vec<u8>>),
    Uniq(BTreeSet<Vec<u8>>),
    Histogram(BTreeMap<Vec<u8>, i64>),
}

impl Aggregator {
    fn of(kind: &[u8]) -> Option<Self> {
        Some(match kind {
            b"LongValueSum" => Self::LongSum(0),
            b"LongValueMax" => Self::LongMax(i64::MIN),
            b"LongValueMin" => Self::LongMin(i64::MAX),
            b"DoubleValueSum" => Self::DoubleSum(0.0),
            b"StringValueMax" => Self::StringMax(None),
            b"StringValueMin" => Self::StringMin(None),
            b"UniqValueCount" => Self::Uniq(BTreeSet::new()),
            b"ValueHistogram" => Self::Histogram(BTreeMap::new()),
            _ => return None,
        })
    }

    fn add(&mut self, value: &[u8]) -> Result<(), String> {
        match self {
            Self::LongSum(s) => {
                *s = s
                    .checked_add(parse_long(value)?)
                    .ok_or("the LongValueSum overflows a 64-bit integer")?;
            }
            Self::LongMax(m) => *m = (*m).max(parse_long(value)?),
            Self::LongMin(m) => *m = (*m).min(parse_long(value)?),
            Self::DoubleSum(s) => *s += parse_double(value)?,
            Self::StringMax(m) => {
                if m.as_deref().is_none_or(|cur| value > cur) {
                    *m = Some(value.to_vec());
                }
            }
            Self::StringMin(m) => {
                if m.as_deref().is_none_or(|cur| value < cur) {
                    *m = Some(value.to_vec());
                }
            }
            Self::Uniq(set) => {
                if !set.contains(value) {
                    set.insert(value.to_vec());
                }
            }
            Self::Histogram(items) => {
                // `item<TAB>count`, or a bare item counted once.
                let (item, count) = match memchr::memrchr(b'\t', value) {
                    Some(tab) => (&value[..tab], parse_long(&value[tab + 1..])?),
                    None => (value, 1),
                };
                let slot = match items.get_mut(item) {
                    Some(slot) => slot,
                    None => items.entry(item.to_vec()).or_insert(0),
                };
                *slot = slot
                    .checked_add(count)
                    .ok_or("a ValueHistogram count overflows a 64-bit integer")?;
            }
        }
        Ok(())
    }

    /// The final report (`getReport`).
    fn report(&self, out: &mut Vec<u8>) {
        match self {
            Self::LongSum(n) | Self::LongMax(n) | Self::LongMin(n) => {
                out.extend_from_slice(n.to_string().as_bytes())
            }
            Self::DoubleSum(d) => out.extend_from_slice(java_double(*d).as_bytes()),
            Self::StringMax(s) | Self::StringMin(s) => {
                out.extend_from_slice(s.as_deref().unwrap_or_default())
            }
            Self::Uniq(set) => out.extend_from_slice(set.len().to_string().as_bytes()),
            Self::Histogram(items) => histogram_report(items, out),
        }
    }

    /// The partial results a combiner passes on (`getCombinerOutput`).
    fn partials(&self, mut each: impl FnMut(&[u8])) {
        match self {
            Self::Uniq(set) => set.iter().for_each(|v| each(v)),
            Self::Histogram(items) => {
                let mut line = Vec::new();
                for (item, count) in items {
                    line.clear();
                    line.extend_from_slice(item);
                    line.push(b'\t');
                    line.extend_from_slice(count.to_string().as_bytes());
                    each(&line);
                }
            }
            other => {
                let mut line = Vec::new();
                other.report(&mut line);
                each(&line);
            }
        }
    }
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `Long.parseLong`: an optional sign and decimal digits, nothing else.
fn parse_long(value: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("value `{}` is not a 64-bit integer", shown(value)))
}

/// `Double.parseDouble`: surrounding whitespace and a `d`/`f` suffix allowed.
fn parse_double(value: &[u8]) -> Result<f64, String> {
    let bad = || format!("value `{}` is not a number", shown(value));
    let text = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    let text = text
        .strip_suffix(['d', 'D', 'f', 'F'])
        .filter(|t| !t.is_empty() && !t.ends_with(['e', 'E']))
        .unwrap_or(text);
    match text {
        "NaN" | "+NaN" | "-NaN" => Ok(f64::NAN),
        "Infinity" | "+Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        t if t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            t.parse::<f64>().map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// `Double.toString`: the shortest digits that round-trip, in plain
/// notation from 10^-3 up to 10^7 (always with a fraction digit) and in
/// `d.dddEn` notation outside it.
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let a = d.abs();
    if (1e-3..1e7).contains(&a) {
        let s = format!("{d}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let s = format!("{d:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exp}")
        } else {
            format!("{mantissa}.0E{exp}")
        }
    }
}

/// `ValueHistogram.getReport`: the number of distinct items, then the
/// minimum, median, maximum, mean and standard deviation of their counts.
fn histogram_report(items: &BTreeMap<Vec<u8>, i64>, out: &mut Vec<u8>) {
    let mut counts: Vec<i64> = items.values().copied().collect();
    counts.sort_unstable();
    out.extend_from_slice(counts.len().to_string().as_bytes());
    if counts.is_empty() {
        return;
    }
    let n = counts.len();
    let total: i64 = counts.iter().fold(0i64, |a, c| a.wrapping_add(*c));
    let mean = total as f64 / n as f64;
    let var = counts
        .iter()
        .map(|&c| {
            let d = c as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n as f64;
    let fields = [
        counts[0].to_string(),
        counts[n / 2].to_string(),
        counts[n - 1].to_string(),
        java_double(mean),
        java_double(var.sqrt()),
    ];
    for f in fields {
        out.push(b'\t');
        out.extend_from_slice(f.as_bytes());
    }
}

/// Aggregates key/value pairs that arrive grouped by key, one key at a time,
/// writing output lines to a buffer.
#[derive(Debug)]
pub struct AggregateTask {
    role: AggregateRole,
    /// Between a combiner's typed key and its partial result: the map
    /// output separator, so the lines split back as the mapper's did.
    separator: Vec<u8>,
    key: Vec<u8>,
    current: Option<Aggregator>,
    /// Output lines not yet taken.
    pub out: Vec<u8>,
}

impl AggregateTask {
    /// A task on `role`'s side of the shuffle; a combiner joins key and
    /// partial result with `separator` (the reducer writes `id<TAB>report`,
    /// as Hadoop's text output does).
    pub fn new(role: AggregateRole, separator: &[u8]) -> Self {
        Self {
            role,
            separator: separator.to_vec(),
            key: Vec::new(),
            current: None,
            out: Vec::new(),
        }
    }

    /// Adds one pair (a line with no separator has an empty value, as in
    /// Hadoop). A new key ends the previous key's group.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        if self.current.is_none() || key != self.key.as_slice() {
            self.end_group();
            let kind = match memchr::memchr(b':', key) {
                Some(colon) => &key[..colon],
                None => {
                    return Err(format!(
                        "aggregate: key `{}` names no aggregation (keys look like \
                         `LongValueSum:id`; types: {TYPES})",
                        shown(key)
                    ));
                }
            };
            let agg = Aggregator::of(kind).ok_or_else(|| {
                format!(
                    "aggregate: key `{}` names an unknown aggregation `{}` (types: {TYPES})",
                    shown(key),
                    shown(kind)
                )
            })?;
            self.key.clear();
            self.key.extend_from_slice(key);
            self.current = Some(agg);
        }
        if let Some(agg) = self.current.as_mut() {
            agg.add(value.unwrap_or_default())
                .map_err(|e| format!("aggregate: key `{}`: {e}", shown(key)))?;
        }
        Ok(())
    }

    /// Ends the last group (call once the input is done).
    pub fn end_group(&mut self) {
        let Some(agg) = self.current.take() else {
            return;
        };
        match self.role {
            AggregateRole::Reduce => {
                let id = match memchr::memchr(b':', &self.key) {
                    Some(colon) => &self.key[colon + 1..],
                    None => &self.key[..],
                };
                self.out.extend_from_slice(id);
                self.out.push(b'\t');
                agg.report(&mut self.out);
                self.out.push(b'\n');
            }
            AggregateRole::Combine => {
                let (key, sep, out) = (&self.key, &self.separator, &mut self.out);
                agg.partials(|partial| {
                    out.extend_from_slice(key);
                    out.extend_from_slice(sep);
                    out.extend_from_slice(partial);
                    out.push(b'\n');
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(role: AggregateRole, pairs: &[(&str, &str)]) -> Result<String, String> {
        let mut task = AggregateTask::new(role, b"\t");
        for (k, v) in pairs {
            task.push(k.as_bytes(), Some(v.as_bytes()))?;
        }
        task.end_group();
        Ok(String::from_utf8(task.out).unwrap())
    }

    #[test]
    fn doubles_print_as_java_prints_them() {
        for (d, s) in [
            (3.0, "3.0"),
            (2.5, "2.5"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1234567.0, "1234567.0"),
            (1e7, "1.0E7"),
            (1.5e10, "1.5E10"),
            (-2.0, "-2.0"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(java_double(d), s);
        }
    }

    #[test]
    fn every_type_reports_as_hadoop_does() {
        use AggregateRole::Reduce;
        let pairs = [
            ("DoubleValueSum:d", "1.5"),
            ("DoubleValueSum:d", "1"),
            ("LongValueMax:mx", "-3"),
            ("LongValueMax:mx", "7"),
            ("LongValueMin:mn", "4"),
            ("LongValueMin:mn", "-9"),
            ("LongValueSum:s", "2"),
            ("LongValueSum:s", "40"),
            ("StringValueMax:smax", "pear"),
            ("StringValueMax:smax", "apple"),
            ("StringValueMin:smin", "pear"),
            ("StringValueMin:smin", "apple"),
            ("UniqValueCount:u", "a"),
            ("UniqValueCount:u", "b"),
            ("UniqValueCount:u", "a"),
            ("ValueHistogram:h", "x"),
            ("ValueHistogram:h", "y\t3"),
            ("ValueHistogram:h", "x"),
            ("ValueHistogram:h", "z\t10"),
        ];
        assert_eq!(
            run(Reduce, &pairs).unwrap(),
            "d\t2.5\nmx\t7\nmn\t-9\ns\t42\nsmax\tpear\nsmin\tapple\nu\t2\n\
             h\t3\t2\t3\t10\t5.0\t3.559026084010437\n"
        );
    }

    #[test]
    fn combining_first_gives_the_same_report() {
        let pairs = [
            ("UniqValueCount:u", "b"),
            ("UniqValueCount:u", "a"),
            ("UniqValueCount:u", "b"),
            ("ValueHistogram:h", "x"),
            ("ValueHistogram:h", "x"),
            ("ValueHistogram:h", "y"),
        ];
        let combined = run(AggregateRole::Combine, &pairs).unwrap();
        assert_eq!(
            combined,
            "UniqValueCount:u\ta\nUniqValueCount:u\tb\nValueHistogram:h\tx\t2\nValueHistogram:h\ty\t1\n"
        );
        let partials: Vec<(&str, &str)> = combined
            .lines()
            .map(|l| l.split_once('\t').unwrap())
            .collect();
        assert_eq!(
            run(AggregateRole::Reduce, &partials).unwrap(),
            run(AggregateRole::Reduce, &pairs).unwrap()
        );
    }

    #[test]
    fn bad_keys_and_values_are_errors_naming_them() {
        let err = run(AggregateRole::Reduce, &[("word", "1")]).unwrap_err();
        assert!(err.contains("key `word` names no aggregation"), "{err}");
        let err = run(AggregateRole::Reduce, &[("LongValueAvg:w", "1")]).unwrap_err();
        assert!(err.contains("unknown aggregation `LongValueAvg`"), "{err}");
        let err = run(AggregateRole::Reduce, &[("LongValueSum:w", "1.5")]).unwrap_err();
        assert!(
            err.contains("key `LongValueSum:w`: value `1.5` is not a 64-bit integer"),
            "{err}"
        );
        let max = i64::MAX.to_string();
        let err = run(
            AggregateRole::Reduce,
            &[("LongValueSum:w", &max), ("LongValueSum:w", "1")],
        )
        .unwrap_err();
        assert!(err.contains("overflows"), "{err}");
    }
}
