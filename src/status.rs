//! `gym-checkin status`: what the service is doing, read from its database.
//!
//! The JSON form keeps the fields DESIGN.md lists (more may be added); the human form says the
//! same in sentences an operator can act on.

use std::fmt::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::clock::{now_ms, rfc3339};
use crate::store::StoreError;
use crate::store::status::{self, StatusData};

pub fn read(db: &Path) -> Result<StatusData, StoreError> {
    status::read(db)
}

pub fn to_json(data: &StatusData) -> Value {
    let now = now_ms();
    let time = |ms: Option<i64>| ms.map(rfc3339);
    json!({
        "events": {
            "pending": data.events.pending,
            "unknown_tag": data.events.unknown_tag,
            "rejected": data.events.rejected,
            "delivered": data.events.delivered,
        },
        "oldest_pending_age_s": data.oldest_pending_tapped_at_ms.map(|t| (now - t).max(0) / 1000),
        "last_delivery": time(data.last_delivery_at_ms),
        "last_error": data.last_error,
        "last_error_at": time(data.last_error_at_ms),
        "delivery_paused": data.paused_since_ms.is_some(),
        "delivery_paused_reason": data.pause_reason,
        "delivery_paused_since": time(data.paused_since_ms),
        "open_visits": data.open_visits,
        "automatic_checkouts": data.automatic_checkouts,
        "readers": data.readers.iter().map(|r| json!({
            "name": r.name,
            "connected": r.connected,
            "last_read": time(r.last_read_at_ms),
        })).collect::<Vec<_>>(),
        "rejections": data.rejections.iter().map(|(status, code, count)| json!({
            "status": status,
            "error_code": code,
            "count": count,
        })).collect::<Vec<_>>(),
    })
}

/// "2m 5s ago" style ages.
fn age(ms: i64) -> String {
    let seconds = (now_ms() - ms).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        s => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

fn when(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => format!("{} ({} ago)", rfc3339(ms), age(ms)),
        None => "never".into(),
    }
}

pub fn to_text(data: &StatusData, db: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "database: {}", db.display());
    match (&data.paused_since_ms, &data.pause_reason) {
        (Some(since), reason) => {
            let _ = writeln!(
                out,
                "delivery: PAUSED since {}: EGYM refused the API key ({}). Taps are still recorded. \
                 Fix the key; delivery resumes by itself.",
                when(Some(*since)),
                reason.as_deref().unwrap_or("no errorCode")
            );
        }
        (None, _) => {
            let state =
                if data.events.pending > 0 && data.last_error_at_ms > data.last_delivery_at_ms {
                    "retrying (see last error)"
                } else {
                    "ok"
                };
            let _ = writeln!(out, "delivery: {state}");
        }
    }
    let e = &data.events;
    let oldest = data
        .oldest_pending_tapped_at_ms
        .map(|t| format!(" (oldest tapped {} ago)", age(t)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "events: {} pending{oldest}, {} unknown tag, {} rejected, {} delivered",
        e.pending, e.unknown_tag, e.rejected, e.delivered
    );
    for (status, code, count) in &data.rejections {
        let status = status.map_or("no status".to_string(), |s| format!("HTTP {s}"));
        let _ = writeln!(
            out,
            "  rejected: {count} × {status} {}",
            code.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(out, "last delivery: {}", when(data.last_delivery_at_ms));
    match &data.last_error {
        Some(error) => {
            let _ = writeln!(out, "last error: {error}, {}", when(data.last_error_at_ms));
        }
        None => {
            let _ = writeln!(out, "last error: none");
        }
    }
    let _ = writeln!(
        out,
        "open visits: {} ({} automatic check-outs on record)",
        data.open_visits, data.automatic_checkouts
    );
    let _ = writeln!(out, "readers:");
    for reader in &data.readers {
        let _ = writeln!(
            out,
            "  {:<16} {:<13} last read {}",
            reader.name,
            if reader.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            when(reader.last_read_at_ms)
        );
    }
    out
}
