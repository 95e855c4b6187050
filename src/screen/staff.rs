//! The staff page's data, as one JSON object (pure): times in the box's local time zone, members
//! by first name where the screen knows it (else by shortened tag), and plain words for kinds,
//! outcomes, durations and counts, so the page only lays them out.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::{Now, WallMs, local_time, rfc3339, zone_name};
use crate::egym::Refusal;
use crate::store::status::{StaffData, StatusData, TapRow};
use crate::store::{Admission, EventState, TimeQuality};
use crate::tag;
use crate::visit::Kind;

/// What the staff page's data is made from besides the database: the time, the zone the box
/// keeps its local time in, and the first names the screen knows (tag → name).
#[derive(Debug)]
pub struct StaffContext<'a> {
    pub now: &'a Now,
    pub zone: &'a jiff::tz::TimeZone,
    pub names: &'a HashMap<String, String>,
}

/// The flag staff see on a member's first Wellpass visit.
pub const FIRST_VISIT: &str = "first Wellpass visit: introductory session";

/// What a row's state means, as a code the page and tests match on.
fn outcome(row: &TapRow) -> &'static str {
    match (row.state, row.admission, row.time) {
        (_, Some(Admission::Refused), _) => "admission refused",
        (EventState::Pending, _, TimeQuality::Untrusted) => "held for the clock",
        (EventState::Pending, ..) if row.behind_unknown => "waits for the card's enrolment",
        (EventState::Pending, ..) => "waiting for EGYM",
        (EventState::UnknownTag, ..) => "unknown card",
        (EventState::Delivered, ..) => "delivered",
        (EventState::Rejected, ..) => "rejected",
    }
}

/// What a row's state means, in plain words, with how long it has waited.
fn outcome_says(row: &TapRow, now: WallMs) -> String {
    match (row.state, row.admission, row.time) {
        (_, Some(Admission::Refused), _) => "Wellpass admission refused".into(),
        (EventState::Pending, _, TimeQuality::Untrusted) => "Held until the clock is set".into(),
        (EventState::Pending, ..) if row.behind_unknown => {
            "Waiting for the card's enrolment".into()
        }
        (EventState::Pending, ..) => format!(
            "Waiting for EGYM, {}",
            plain_duration(now.since(row.tapped_at))
        ),
        (EventState::UnknownTag, ..) => "Card not known at EGYM".into(),
        (EventState::Delivered, Some(Admission::RefusedLate), _) => {
            "Sent; Wellpass refused after the member came in".into()
        }
        (EventState::Delivered, Some(Admission::Skipped), _) => {
            "Sent without Wellpass admission".into()
        }
        (EventState::Delivered, ..) => "Sent to EGYM".into(),
        (EventState::Rejected, ..) => "Rejected by EGYM".into(),
    }
}

fn reason(row: &TapRow) -> Option<&'static str> {
    row.admission_reason
        .as_deref()
        .and_then(Refusal::from_error_code)
        .map(Refusal::says)
}

/// "Check-in", "Check-out", "Automatic check-out".
pub fn kind_says(kind: Kind, automatic: bool) -> &'static str {
    match (kind, automatic) {
        (Kind::CheckIn, _) => "Check-in",
        (Kind::CheckOut, false) => "Check-out",
        (Kind::CheckOut, true) => "Automatic check-out",
    }
}

/// A length of time as the desk says it: "under a minute", "11 min", "2 h 5 min", "3 days".
pub fn plain_duration(length: Duration) -> String {
    let minutes = length.as_secs() / 60;
    match minutes {
        0 => "under a minute".into(),
        1..60 => format!("{minutes} min"),
        60..1440 if minutes.is_multiple_of(60) => format!("{} h", minutes / 60),
        60..1440 => format!("{} h {} min", minutes / 60, minutes % 60),
        1440..2880 => "1 day".into(),
        _ => format!("{} days", minutes / 1440),
    }
}

/// How often: "once", "twice", "3 times".
pub fn times(n: u64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// The staff page's data: who is in the club, readers, the outbox, the last taps, unknown cards
/// with every rendering, refused admissions, today's Wellpass admissions, the clock.
pub fn staff_json(status: &StatusData, staff: &StaffData, ctx: &StaffContext<'_>) -> String {
    let now = ctx.now;
    let at = |t: WallMs| local_time(t, now.wall, ctx.zone);
    // A member by first name where the screen knows it, else by shortened tag.
    let who = |tag: &str| match ctx.names.get(tag) {
        Some(name) => json!({ "name": name, "says": name, "named": true }),
        None => json!({ "says": tag::short(tag), "named": false }),
    };
    let e = &status.events;
    let delivery = match (
        &status.pause_reason,
        e.pending > 0 && status.last_error_at > status.last_delivery_at,
    ) {
        (Some(_), _) => "paused",
        (None, true) => "retrying",
        (None, false) => "ok",
    };
    let taps: Vec<Value> = staff
        .taps
        .iter()
        .map(|row| {
            json!({
                "time": rfc3339(row.tapped_at),
                "at": if row.time == TimeQuality::Untrusted {
                    "time not known yet".to_string()
                } else {
                    at(row.tapped_at)
                },
                "reader": row.reader,
                "tag": tag::short(&row.tag),
                "who": who(&row.tag),
                "kind": row.kind.as_str(),
                "kind_says": kind_says(row.kind, row.automatic),
                "outcome": outcome(row),
                "says": outcome_says(row, now.wall),
                "automatic": row.automatic,
                "reason": reason(row),
                "first_visit": row.first_admission.then_some(FIRST_VISIT),
            })
        })
        .collect();
    // One entry per card, with how many taps wait on it: the one EGYM does not know, and those
    // behind it.
    let mut unknown: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (row, waiting) in &staff.unknown {
        if let Some(i) = seen.iter().position(|t| *t == row.tag) {
            let taps = unknown[i]["taps"].as_u64().unwrap_or(0) + 1 + waiting;
            unknown[i]["taps"] = json!(taps);
            unknown[i]["tapped"] = json!(format!("tapped {}", times(taps)));
            continue;
        }
        seen.push(&row.tag);
        let renderings: Vec<Value> = tag::RawId::from_hex(&row.raw_id)
            .map(|raw| {
                tag::renderings(&raw)
                    .into_iter()
                    .map(|r| json!({ "name": r.name, "value": r.value }))
                    .collect()
            })
            .unwrap_or_default();
        unknown.push(json!({
            "tag": tag::short(&row.tag),
            "rfid": row.tag,
            "reader": row.reader,
            "since": rfc3339(row.tapped_at),
            "since_at": at(row.tapped_at),
            "taps": 1 + waiting,
            "tapped": format!("tapped {}", times(1 + waiting)),
            "renderings": renderings,
        }));
    }
    let refused: Vec<Value> = staff
        .refused
        .iter()
        .map(|row| {
            json!({
                "time": rfc3339(row.tapped_at),
                "at": at(row.tapped_at),
                "reader": row.reader,
                "tag": tag::short(&row.tag),
                "who": who(&row.tag),
                "reason": reason(row).unwrap_or("refused"),
                "late": row.admission == Some(Admission::RefusedLate),
            })
        })
        .collect();
    let inside: Vec<Value> = staff
        .inside
        .iter()
        .map(|member| {
            json!({
                "who": who(&member.tag),
                "since": member.since.map(at).unwrap_or_else(|| "time not known yet".into()),
                "for": member.since.map(|since| plain_duration(now.wall.since(since))),
                "first_visit": member.first_admission.then_some(FIRST_VISIT),
                "unknown_card": seen.contains(&member.tag.as_str()),
            })
        })
        .collect();
    let clock = &status.clock;
    let oldest = status.oldest_pending.map(|t| now.steady.since(t));
    json!({
        "now": rfc3339(now.wall),
        "now_at": at(now.wall),
        "zone": zone_name(ctx.zone, now.wall),
        "inside": {
            "count": status.open_visits,
            "members": inside,
            "listed_all": staff.inside.len() as u64 >= status.open_visits,
        },
        "wellpass_today": {
            "members": staff.wellpass_today.members,
            "admissions": staff.wellpass_today.admissions,
        },
        "readers": status.readers.iter().map(|r| json!({
            "name": r.name,
            "connected": r.connected,
            "last_read": r.last_read_at.map(rfc3339),
            "last_read_at": r.last_read_at.map(at),
        })).collect::<Vec<_>>(),
        "outbox": {
            "pending": e.pending,
            "waiting_for_enrolment": e.waiting_for_enrolment,
            "unknown_tag": e.unknown_tag,
            "rejected": e.rejected,
            "delivered": e.delivered,
            "oldest_pending_age_s": oldest.map(|age| age.as_secs()),
            "oldest_says": oldest.map(|age| format!("oldest waiting {}", plain_duration(age))),
            "delivery": delivery,
            "pause_reason": status.pause_reason,
            "last_error": status.last_error,
        },
        "clock": {
            "trusted": clock.trusted,
            "detail": clock.detail,
            "taps_waiting": clock.held,
            "approximate": clock.approximate,
        },
        "lost": status.lost,
        "taps": taps,
        "unknown": unknown,
        "refused": refused,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{SteadyMs, WallTime};
    use crate::store::EventCounts;
    use crate::store::status::{AdmissionsOfDay, ClockData, InsideRow};

    fn utc(text: &str) -> WallMs {
        WallMs::from_millis(text.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    }

    fn row(id: i64, tag: &str, kind: Kind, at: &str, state: EventState) -> TapRow {
        TapRow {
            id,
            reader: "entrance".into(),
            tag: tag.into(),
            raw_id: tag.trim_start_matches("0x").into(),
            kind,
            tapped_at: utc(at),
            state,
            time: TimeQuality::Trusted,
            admission: None,
            admission_reason: None,
            automatic: false,
            behind_unknown: false,
            first_admission: false,
        }
    }

    fn status(open_visits: u64) -> StatusData {
        StatusData {
            events: EventCounts::default(),
            oldest_pending: None,
            last_delivery_at: None,
            last_error: None,
            last_error_at: None,
            paused_since: None,
            pause_reason: None,
            open_visits,
            automatic_checkouts: 0,
            lost: 0,
            readers: vec![],
            rejections: vec![],
            admissions: vec![],
            unknown_cards: vec![],
            clock: ClockData::default(),
            parts: vec![],
        }
    }

    #[test]
    fn durations_and_counts_are_said_in_plain_words() {
        let secs = Duration::from_secs;
        for (length, says) in [
            (secs(59), "under a minute"),
            (secs(60), "1 min"),
            (secs(11 * 60 + 59), "11 min"),
            (secs(3600), "1 h"),
            (secs(2 * 3600 + 5 * 60), "2 h 5 min"),
            (secs(86_400 + 3600), "1 day"),
            (secs(3 * 86_400), "3 days"),
        ] {
            assert_eq!(plain_duration(length), says, "{length:?}");
        }
        assert_eq!(
            [1, 2, 3].map(times),
            ["once".to_string(), "twice".into(), "3 times".into()]
        );
        assert_eq!(kind_says(Kind::CheckIn, false), "Check-in");
        assert_eq!(kind_says(Kind::CheckOut, true), "Automatic check-out");
    }

    #[test]
    fn the_staff_page_says_who_when_in_local_time_and_what_happened_in_plain_words() {
        let zone = jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let now = Now {
            wall: utc("2026-11-28T18:40:00Z"),
            wall_is: WallTime::Trusted,
            steady: SteadyMs::from_millis(10_000_000),
        };
        let names = HashMap::from([("0x0C000621A5".to_string(), "Alex".to_string())]);
        let mut first_visit = row(
            1,
            "0x0C000621A5",
            Kind::CheckIn,
            "2026-11-28T17:02:00Z",
            EventState::Delivered,
        );
        first_visit.admission = Some(Admission::Admitted);
        first_visit.first_admission = true;
        let staff = StaffData {
            taps: vec![
                row(
                    3,
                    "0x4B00423C15",
                    Kind::CheckIn,
                    "2026-11-28T18:29:00Z",
                    EventState::Pending,
                ),
                row(
                    2,
                    "0x0A0B0C0D0E",
                    Kind::CheckIn,
                    "2026-11-27T20:00:00Z",
                    EventState::UnknownTag,
                ),
                first_visit,
            ],
            unknown: vec![(
                row(
                    2,
                    "0x0A0B0C0D0E",
                    Kind::CheckIn,
                    "2026-11-27T20:00:00Z",
                    EventState::UnknownTag,
                ),
                1,
            )],
            refused: vec![],
            inside: vec![
                InsideRow {
                    tag: "0x0C000621A5".into(),
                    since: Some(utc("2026-11-28T17:02:00Z")),
                    first_admission: true,
                },
                InsideRow {
                    tag: "0x4B00423C15".into(),
                    since: Some(utc("2026-11-28T18:29:00Z")),
                    first_admission: false,
                },
            ],
            wellpass_today: AdmissionsOfDay {
                members: 1,
                admissions: 1,
            },
        };
        let ctx = StaffContext {
            now: &now,
            zone: &zone,
            names: &names,
        };
        let data: Value = serde_json::from_str(&staff_json(&status(2), &staff, &ctx)).unwrap();
        assert_eq!(data["zone"], "CET");
        assert_eq!(data["now_at"], "19:40:00");
        let inside = &data["inside"];
        assert_eq!(inside["count"], 2);
        assert_eq!(inside["members"][0]["who"]["says"], "Alex");
        assert_eq!(inside["members"][0]["since"], "18:02:00");
        assert_eq!(inside["members"][0]["for"], "1 h 38 min");
        assert_eq!(inside["members"][0]["first_visit"], FIRST_VISIT);
        assert_eq!(inside["members"][1]["who"]["says"], "0x…3C15");
        assert_eq!(inside["members"][1]["who"]["named"], false);
        let taps = &data["taps"];
        assert_eq!(taps[0]["says"], "Waiting for EGYM, 11 min");
        assert_eq!(taps[0]["kind_says"], "Check-in");
        assert_eq!(taps[1]["at"], "Fri 27 Nov 21:00");
        assert_eq!(taps[1]["says"], "Card not known at EGYM");
        assert_eq!(taps[2]["who"]["says"], "Alex");
        assert_eq!(taps[2]["first_visit"], FIRST_VISIT);
        assert_eq!(data["unknown"][0]["tapped"], "tapped twice");
        assert_eq!(data["wellpass_today"]["members"], 1);
        // Nothing but the first name: no full tag of a member, no surname.
        let text = data.to_string();
        assert!(!text.contains("0x0C000621A5"), "{text}");
    }
}
