//! Times as people read them: RFC 3339 in UTC, short ages, and the box's local time (the time
//! zone `closing-time` is read in), for the staff page.

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

/// A moment in the box's local time, as the staff page shows it: `19:40:02` on the day of `now`,
/// `Sat 28 Nov 19:40` on another.
pub fn local_time(at: WallMs, now: WallMs, zone: &jiff::tz::TimeZone) -> String {
    let (Some(at), Some(now)) = (local(at, zone), local(now, zone)) else {
        return rfc3339(at);
    };
    if at.date() == now.date() {
        format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
    } else {
        let weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            [usize::from(at.weekday().to_monday_zero_offset().unsigned_abs())];
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][usize::from(at.month().unsigned_abs())
            .saturating_sub(1)
            .min(11)];
        format!(
            "{weekday} {} {month} {:02}:{:02}",
            at.day(),
            at.hour(),
            at.minute()
        )
    }
}

/// The zone as the staff page names it: its IANA name and the abbreviation in use at `now`
/// (`Europe/Berlin (CET)`), or the abbreviation alone for a zone without a name (`UTC`).
pub fn zone_name(zone: &jiff::tz::TimeZone, now: WallMs) -> String {
    let abbreviation = jiff::Timestamp::from_millisecond(now.as_millis())
        .map(|t| zone.to_offset_info(t).abbreviation().to_string())
        .unwrap_or_default();
    match zone.iana_name() {
        Some(name) if !abbreviation.is_empty() && name != abbreviation => {
            format!("{name} ({abbreviation})")
        }
        Some(name) => name.to_string(),
        None if !abbreviation.is_empty() => abbreviation,
        None => "UTC".to_string(),
    }
}

/// The local day `at` falls on, as the moments it starts and ends (23 or 25 hours long on the
/// days clocks change).
pub fn local_day(at: WallMs, zone: &jiff::tz::TimeZone) -> Option<(WallMs, WallMs)> {
    let date = local(at, zone)?.date();
    let start = date.to_zoned_datetime(zone.clone()).ok()?;
    let end = date.tomorrow().ok()?.to_zoned_datetime(zone.clone()).ok()?;
    Some((
        WallMs::from_millis(start.timestamp().as_millisecond()),
        WallMs::from_millis(end.timestamp().as_millisecond()),
    ))
}

fn local(at: WallMs, zone: &jiff::tz::TimeZone) -> Option<jiff::civil::DateTime> {
    let at = jiff::Timestamp::from_millisecond(at.as_millis()).ok()?;
    Some(zone.to_datetime(at))
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

    fn berlin() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn utc(text: &str) -> WallMs {
        WallMs::from_millis(text.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    }

    #[test]
    fn local_times_read_as_the_desk_reads_them() {
        let now = utc("2026-11-28T18:40:02Z");
        assert_eq!(local_time(now, now, &berlin()), "19:40:02");
        // Earlier the same local day; the day before.
        assert_eq!(
            local_time(utc("2026-11-27T23:05:00Z"), now, &berlin()),
            "00:05:00"
        );
        assert_eq!(
            local_time(utc("2026-11-27T22:59:00Z"), now, &berlin()),
            "Fri 27 Nov 23:59"
        );
        assert_eq!(zone_name(&berlin(), now), "CET");
        assert_eq!(zone_name(&jiff::tz::TimeZone::UTC, now), "UTC");
    }

    #[test]
    fn a_local_day_is_as_long_as_the_clocks_make_it() {
        let (start, end) = local_day(utc("2026-11-28T18:40:02Z"), &berlin()).unwrap();
        assert_eq!(
            (start, end),
            (utc("2026-11-27T23:00:00Z"), utc("2026-11-28T23:00:00Z"))
        );
        // The last Sunday of March has 23 hours in Berlin.
        let (start, end) = local_day(utc("2026-03-29T12:00:00Z"), &berlin()).unwrap();
        assert_eq!(end.as_millis() - start.as_millis(), 23 * 3_600_000);
    }
}
