//! The staff page's data, as one JSON object (pure).

use serde_json::{Value, json};

use crate::clock::{Now, rfc3339};
use crate::egym::Refusal;
use crate::store::status::{StaffData, StatusData, TapRow};
use crate::store::{Admission, EventState, TimeQuality};
use crate::tag;

/// What a row's state means to staff.
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

fn reason(row: &TapRow) -> Option<&'static str> {
    row.admission_reason
        .as_deref()
        .and_then(Refusal::from_error_code)
        .map(Refusal::says)
}

/// The staff page's data: readers, the outbox, the last taps (tags shortened), unknown cards
/// with every rendering, refused admissions, the clock; `now` for ages.
pub fn staff_json(status: &StatusData, staff: &StaffData, now: &Now) -> String {
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
                "reader": row.reader,
                "tag": tag::short(&row.tag),
                "kind": row.kind.as_str(),
                "outcome": outcome(row),
                "automatic": row.automatic,
                "reason": reason(row),
            })
        })
        .collect();
    // One entry per card, with how many taps wait on it: the one EGYM does not know, and those
    // behind it.
    let mut unknown: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (row, waiting) in &staff.unknown {
        if let Some(i) = seen.iter().position(|t| *t == row.tag) {
            unknown[i]["taps"] = json!(unknown[i]["taps"].as_u64().unwrap_or(0) + 1 + waiting);
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
            "taps": 1 + waiting,
            "renderings": renderings,
        }));
    }
    let refused: Vec<Value> = staff
        .refused
        .iter()
        .map(|row| {
            json!({
                "time": rfc3339(row.tapped_at),
                "reader": row.reader,
                "tag": tag::short(&row.tag),
                "reason": reason(row).unwrap_or("refused"),
                "late": row.admission == Some(Admission::RefusedLate),
            })
        })
        .collect();
    let clock = &status.clock;
    json!({
        "now": rfc3339(now.wall),
        "readers": status.readers.iter().map(|r| json!({
            "name": r.name,
            "connected": r.connected,
            "last_read": r.last_read_at.map(rfc3339),
        })).collect::<Vec<_>>(),
        "outbox": {
            "pending": e.pending,
            "waiting_for_enrolment": e.waiting_for_enrolment,
            "unknown_tag": e.unknown_tag,
            "rejected": e.rejected,
            "delivered": e.delivered,
            "oldest_pending_age_s": status.oldest_pending.map(|t| now.steady.since(t).as_secs()),
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
