//! Times as people read them: RFC 3339 in UTC, and short ages.

use std::time::Duration;

use super::WallMs;

/// `2026-11-29T18:40:00.123Z` for a moment by the wall clock (UTC).
pub fn rfc3339_ms(at: WallMs) -> String {
    let ms = at.as_millis();
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let seconds = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        ms_of_day % 1000
    )
}

/// `2026-11-29T18:40:00Z`: as [`rfc3339_ms`], whole seconds.
pub fn rfc3339(at: WallMs) -> String {
    let full = rfc3339_ms(at);
    format!("{}Z", &full[..19])
}

/// A length of time for people: `45s`, `2m 5s`, `3h 10m`, `2d 4h`.
pub fn duration_text(length: Duration) -> String {
    match length.as_secs() {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        s => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// A step of the clock: `+1.5s`, `-1h 0m`, `+2d 0h`. A step is measured give or take a few
/// milliseconds, so it is rounded to the smallest unit shown: two days measured 5 ms short is
/// `+2d 0h`, not `+1d 23h`.
pub fn signed_duration(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let abs = ms.abs();
    if abs < 60_000 {
        return format!("{sign}{:.1}s", abs as f64 / 1000.0);
    }
    let unit = if abs < 3_600_000 {
        1_000
    } else if abs < 86_400_000 {
        60_000
    } else {
        3_600_000
    };
    let rounded = (abs + unit / 2) / unit * unit;
    format!(
        "{sign}{}",
        duration_text(Duration::from_millis(rounded.unsigned_abs()))
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        let at = WallMs::from_millis;
        assert_eq!(rfc3339_ms(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(1_796_083_200_000)), "2026-12-01T00:00:00Z");
        assert_eq!(
            rfc3339_ms(at(1_796_083_200_000 - 1)),
            "2026-11-30T23:59:59.999Z"
        );
        assert_eq!(rfc3339(at(951_782_400_000)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let ms = Duration::from_millis;
        assert_eq!(duration_text(ms(45_999)), "45s");
        assert_eq!(duration_text(ms(125_000)), "2m 5s");
        assert_eq!(duration_text(ms(3 * 3_600_000 + 600_000)), "3h 10m");
        assert_eq!(duration_text(ms(2 * 86_400_000 + 4 * 3_600_000)), "2d 4h");
        assert_eq!(signed_duration(1_500), "+1.5s");
        assert_eq!(signed_duration(-3_600_000), "-1h 0m");
        assert_eq!(signed_duration(2 * 86_400_000 - 5), "+2d 0h");
        assert_eq!(signed_duration(-(3_600_000 - 40)), "-1h 0m");
        assert_eq!(signed_duration(125_400), "+2m 5s");
        assert_eq!(signed_duration(2 * 86_400_000), "+2d 0h");
    }
}
