//! Event time and durations: milliseconds since the Unix epoch, as `i64`.

use std::time::Duration;

use spate_core::error::{Error, Result};

/// An instant of event or processing time: milliseconds since the epoch.
pub type Millis = i64;

/// The least timestamp: a watermark that has not started.
pub const MIN_TIMESTAMP: Millis = i64::MIN / 4;

/// The greatest timestamp: the watermark of a source that has ended (and
/// the end of the global window).
pub const MAX_TIMESTAMP: Millis = i64::MAX / 4;

/// A duration in milliseconds, saturating far beyond any real one.
pub fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(MAX_TIMESTAMP)
}

/// Processing time now.
pub fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// Parses a duration as the CLI takes it: `250ms`, `60s`, `5m`, `2h`,
/// `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::Usage(format!(
            "bad duration '{text}': give a number and a unit, as 250ms, 60s, 5m, 2h or 1d"
        ))
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hours" => 3600.0,
        "d" | "days" => 86400.0,
        _ => return Err(bad()),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(n * scale))
}

/// A timestamp for people: `2026-12-05T01:02:03.004Z` (UTC).
pub fn format_timestamp(ms: Millis) -> String {
    if ms <= MIN_TIMESTAMP {
        return "-inf".into();
    }
    if ms >= MAX_TIMESTAMP {
        return "+inf".into();
    }
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_the_cli_takes_them() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn timestamps_print_in_utc() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_764_896_523_004),
            "2025-12-05T01:02:03.004Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_timestamp(MAX_TIMESTAMP), "+inf");
    }
}
