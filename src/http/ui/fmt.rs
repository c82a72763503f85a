//! Times and durations as people read them.

use chrono::DateTime;

/// `base` with the query `pairs`, each percent-encoded (`base` alone when there are none).
pub fn url<'a>(base: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs(pairs);
    let q = q.finish();
    if q.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{q}")
    }
}

/// `2026-11-26 09:15:02 UTC`.
pub fn absolute(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// `just now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`, or `in 5 s` for a later time.
pub fn relative(ms: i64, now: i64) -> String {
    let delta = now - ms;
    let span = span(delta.unsigned_abs());
    match delta {
        -999..=999 => "just now".to_string(),
        d if d > 0 => format!("{span} ago"),
        _ => format!("in {span}"),
    }
}

/// The largest unit that fits, rounded down.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `412 ms`, `1.8 s`, `2 min 5 s`, `1 h 2 min`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The first line of `text`, at most `max` characters (with `…` when cut).
pub fn one_line(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or_default().trim();
    let cut = first.chars().count() > max || text.trim().lines().nth(1).is_some();
    let mut out: String = first.chars().take(max).collect();
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_a_person_says_them() {
        assert_eq!(absolute(1_764_148_502_123), "2025-11-26 09:15:02 UTC");
        let now = 10_000_000;
        assert_eq!(relative(now - 300, now), "just now");
        assert_eq!(relative(now - 42_000, now), "42 s ago");
        assert_eq!(relative(now - 5 * 60_000 - 10, now), "5 min ago");
        assert_eq!(relative(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(relative(now + 5_000, now), "in 5 s");
        assert_eq!(duration(412), "412 ms");
        assert_eq!(duration(1_840), "1.8 s");
        assert_eq!(duration(125_000), "2 min 5 s");
        assert_eq!(duration(3_720_000), "1 h 2 min");
        assert_eq!(one_line("boom\nmore", 80), "boom…");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("fine", 80), "fine");
    }
}
