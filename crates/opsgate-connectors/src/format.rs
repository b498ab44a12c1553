//! Compact text for tool outputs: numbers with four significant digits, durations in the
//! Prometheus style (`1h30m`), times in UTC. Every byte here is read by a model, so the forms are
//! short but unambiguous.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A number with four significant digits, without trailing zeros; exponent form outside the
/// range where that would still be short.
pub(crate) fn number(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs();
    if !(1e-4..1e9).contains(&magnitude) {
        let text = format!("{value:.3e}");
        // `1.500e-5` → `1.5e-5`.
        return match text.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa)),
            None => text,
        };
    }
    let decimals = (3 - magnitude.log10().floor() as i32).clamp(0, 10) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text }
}

/// Parses a Prometheus-style duration: `90s`, `5m`, `1h30m`, `7d`, `2w`, `1y`, `500ms`. A bare
/// number is seconds, as in the Prometheus HTTP API.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds > 0.0 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(format!("duration {text:?} must be positive"))
        };
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("duration {text:?} is not like 90s, 5m, 1h30m, 7d"));
        }
        let amount: u128 = rest[..digits].parse().map_err(|_| format!("duration {text:?} is too long"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            other => return Err(format!("duration {text:?} has unknown unit {other:?}; use ms, s, m, h, d, w or y")),
        };
        rest = &rest[unit_len..];
        total_ms = amount
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    if total_ms == 0 {
        return Err(format!("duration {text:?} must be positive"));
    }
    let total_ms = u64::try_from(total_ms).map_err(|_| format!("duration {text:?} is too long"))?;
    Ok(Duration::from_millis(total_ms))
}

/// A whole number of seconds as PromQL accepts it in a range selector: the largest unit that
/// divides it (`300` → `5m`), so the query reads like one a person would write.
pub(crate) fn promql_duration(seconds: u64) -> String {
    let seconds = seconds.max(1);
    if seconds.is_multiple_of(86_400) {
        format!("{}d", seconds / 86_400)
    } else if seconds.is_multiple_of(3_600) {
        format!("{}h", seconds / 3_600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// A duration for people: `1h20m`, `45s`, `3d4h`; two units at most, rounded down.
pub(crate) fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes, secs) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) if secs == 0 => format!("{minutes}m"),
        (0, 0, _) => format!("{minutes}m{secs}s"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h{minutes}m"),
        (_, 0, _) => format!("{days}d"),
        (_, _, _) => format!("{days}d{hours}h"),
    }
}

/// Unix seconds (as Prometheus returns them) to a UTC time; `None` outside chrono's range.
pub(crate) fn unix_time(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    Utc.timestamp_opt(whole as i64, nanos).single()
}

/// RFC 3339 to the second, for structured output.
pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A time for a table cell: `05-01 14:02:11` (UTC; the year is in the structured form).
pub(crate) fn short_time(time: DateTime<Utc>) -> String {
    time.format("%m-%d %H:%M:%S").to_string()
}

/// A past time relative to `now`: `14:02:11Z (12m ago)`, with the date when it is a day or more
/// ago. What an agent needs to line an alert up with a deploy.
pub(crate) fn time_ago(time: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let age = (now - time).to_std().unwrap_or_default();
    let clock = if age < Duration::from_secs(86_400) {
        time.format("%H:%M:%SZ").to_string()
    } else {
        time.format("%Y-%m-%d %H:%MZ").to_string()
    };
    format!("{clock} ({} ago)", human_duration(age))
}

/// A time relative to `now`, past or future: `14:02:11Z (12m ago)`, `16:02:11Z (in 2h)`, with
/// the date when it is a day or more away. What an agent needs to see when a silence ends.
#[cfg_attr(not(feature = "alertmanager"), allow(dead_code))]
pub(crate) fn relative_time(time: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if time <= now {
        return time_ago(time, now);
    }
    let until = (time - now).to_std().unwrap_or_default();
    let clock = if until < Duration::from_secs(86_400) {
        time.format("%H:%M:%SZ").to_string()
    } else {
        time.format("%Y-%m-%d %H:%MZ").to_string()
    };
    format!("{clock} (in {})", human_duration(until))
}
