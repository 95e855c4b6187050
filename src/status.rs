//! `gym-checkin status`: what the service is doing.
//!
//! It asks the running service on its control socket ([`crate::control`]), which staff in the
//! group `gym-checkin` may use; when nothing answers there, it reads the database itself, which
//! needs the database's owner (root). A permission problem is said as one: which path, which
//! user, and the command that fixes it.
//!
//! The JSON form keeps the fields the README lists (more may be added); the human form says the
//! same in sentences an operator can act on.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::{SteadyMs, SystemSource, TimeSource, WallMs, duration_text, rfc3339};
use crate::config::Config;
use crate::control::{self, AskError, Reply, Request, ServiceInfo};
use crate::store::status::{self, StatusData};

/// When `status` was asked: the wall time, and steady time if the service has run in this boot.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    pub wall: WallMs,
    pub steady: Option<SteadyMs>,
}

/// The status, and where it came from.
#[derive(Clone, Debug)]
pub struct Status {
    pub data: StatusData,
    pub asked: Asked,
    pub database: PathBuf,
    /// The service that answered; `None`: read from the database.
    pub service: Option<ServiceInfo>,
    /// When read from the database: the pid of a service that holds it all the same (its socket
    /// is off or could not be asked), if one could be told.
    pub holder: Option<u32>,
}

/// The status of the service `config` describes: from the service, or from its database.
pub fn read(config: &Config) -> Result<Status, String> {
    let database = &config.store.path;
    if let Some(socket) = &config.service.socket {
        match control::ask(socket, &Request::Status) {
            Ok(Reply::Status(reply)) if reply.service.database == *database => {
                return Ok(Status {
                    data: reply.data,
                    asked: Asked {
                        wall: reply.wall,
                        steady: Some(reply.steady),
                    },
                    database: database.clone(),
                    service: Some(reply.service),
                    holder: None,
                });
            }
            // Another service's socket: this configuration's database is read instead.
            Ok(Reply::Status(_)) | Err(AskError::NotRunning) => {}
            Ok(Reply::Failed(e) | Reply::Denied(e)) => {
                return Err(format!("the service answered: {e}"));
            }
            Ok(_) => {
                return Err(format!(
                    "the service at {} answered something other than its status; is it another \
                     version?",
                    socket.display()
                ));
            }
            Err(e @ AskError::PermissionDenied { .. }) => return Err(e.to_string()),
            Err(AskError::Failed(e)) => return Err(e),
        }
    }
    let (data, asked) = read_database(database, config.service.socket.as_deref())?;
    Ok(Status {
        data,
        asked,
        database: database.clone(),
        service: None,
        holder: crate::store::holder(database),
    })
}

/// Reads the status from the database at `db`, as of now on this machine.
pub fn read_database(db: &Path, socket: Option<&Path>) -> Result<(StatusData, Asked), String> {
    let user = crate::console::user_name();
    let not_asked = match socket {
        Some(socket) => format!("nothing answers on {}", socket.display()),
        None => "its control socket is off ([service] socket = \"\")".into(),
    };
    let denied = || {
        format!(
            "user {user} may not read the database {} (it is the service's alone), and the \
             service cannot be asked instead: {not_asked}. Start the service (`sudo systemctl \
             start gym-checkin`), or run `sudo gym-checkin status`",
            db.display()
        )
    };
    match std::fs::metadata(db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no database at {} yet: the service has not run with this configuration \
                 ({not_asked})",
                db.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(denied()),
        Err(e) => return Err(format!("cannot look at {}: {e}", db.display())),
        Ok(_) => {}
    }
    if std::fs::File::open(db).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
        return Err(denied());
    }
    let source = SystemSource;
    let data = status::read(db, source.boot_id().as_deref()).map_err(|e| e.to_string())?;
    let asked = Asked {
        wall: source.wall(),
        steady: data
            .clock
            .steady_offset_ms
            .map(|offset| SteadyMs::from_millis(source.boottime_ms() + offset)),
    };
    Ok((data, asked))
}

/// How long since steady time `since`, if steady time now is known.
fn age(asked: &Asked, since: Option<SteadyMs>) -> Option<Duration> {
    Some(asked.steady?.since(since?))
}

/// [`age`] in whole seconds.
fn age_s(asked: &Asked, since: Option<SteadyMs>) -> Option<u64> {
    age(asked, since).map(|age| age.as_secs())
}

pub fn to_json(status: &Status) -> Value {
    let (data, asked) = (&status.data, &status.asked);
    let time = |at: Option<WallMs>| at.map(rfc3339);
    let clock = &data.clock;
    json!({
        "events": {
            "pending": data.events.pending,
            "waiting_for_enrolment": data.events.waiting_for_enrolment,
            "unknown_tag": data.events.unknown_tag,
            "rejected": data.events.rejected,
            "delivered": data.events.delivered,
        },
        "oldest_pending_age_s": age_s(asked, data.oldest_pending),
        "last_delivery": time(data.last_delivery_at),
        "last_error": data.last_error,
        "last_error_at": time(data.last_error_at),
        "delivery_paused": data.paused_since.is_some(),
        "delivery_paused_reason": data.pause_reason,
        "delivery_paused_since": time(data.paused_since),
        "service": {
            "running": status.service.is_some() || status.holder.is_some(),
            "pid": status.service.as_ref().map(|s| s.pid).or(status.holder),
            "version": status.service.as_ref().map(|s| s.version.clone()),
        },
        "open_visits": data.open_visits,
        "automatic_checkouts": data.automatic_checkouts,
        "lost": data.lost,
        "clock": {
            "trusted": clock.trusted,
            "source": clock.source,
            "detail": clock.detail,
            "since": time(clock.since_wall),
            "for_s": age_s(asked, clock.since_steady),
            "taps_waiting": clock.held,
            "restamped": clock.restamped,
            "approximate": clock.approximate,
        },
        "admissions": admissions_json(data),
        "screen": data.parts.iter().find(|(part, _)| part == "screen").map(|(_, state)| state),
        "readers": data.readers.iter().map(|r| json!({
            "name": r.name,
            "connected": r.connected,
            "last_read": time(r.last_read_at),
        })).collect::<Vec<_>>(),
        "rejections": data.rejections.iter().map(|(status, code, count)| json!({
            "status": status,
            "error_code": code,
            "count": count,
        })).collect::<Vec<_>>(),
        "unknown_cards": data.unknown_cards.iter().map(|card| json!({
            "rfid": card.tag,
            "reader": card.reader,
            "since": rfc3339(card.since),
            "taps": card.taps,
            "renderings": renderings(&card.raw_id).into_iter()
                .map(|r| json!({ "name": r.name, "value": r.value }))
                .collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Every rendering of an id as read (hex), for a card EGYM does not know.
fn renderings(raw_hex: &str) -> Vec<crate::tag::Rendering> {
    crate::tag::RawId::from_hex(raw_hex)
        .map(|raw| crate::tag::renderings(&raw))
        .unwrap_or_default()
}

/// `{"admitted": 3, "admitted_late": 1, "refused": {"corporateFitnessMembershipExpired": 1},
/// "refused_late": {}, "skipped": 0}`.
fn admissions_json(data: &StatusData) -> Value {
    let count = |kind: &str| -> u64 {
        data.admissions
            .iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, _, n)| n)
            .sum()
    };
    let by_reason = |kind: &str| -> serde_json::Map<String, Value> {
        data.admissions
            .iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, reason, n)| (reason.clone().unwrap_or_default(), json!(n)))
            .collect()
    };
    json!({
        "admitted": count("admitted"),
        "admitted_late": count("admitted_late"),
        "refused": by_reason("refused"),
        "refused_late": by_reason("refused_late"),
        "skipped": count("skipped"),
    })
}

fn when(asked: &Asked, at: Option<WallMs>) -> String {
    match at {
        Some(at) => format!(
            "{} ({} ago)",
            rfc3339(at),
            duration_text(asked.wall.since(at))
        ),
        None => "never".into(),
    }
}

/// "1 tap", "3 taps".
fn taps(n: u64) -> String {
    if n == 1 {
        "1 tap".into()
    } else {
        format!("{n} taps")
    }
}

/// The clock's line: trusted and how, or not and for how long, with the taps it holds.
fn clock_line(data: &StatusData, asked: &Asked) -> String {
    let clock = &data.clock;
    // Taps whose time was counted from a trusted reading of their boot: while the clock was
    // not trusted, after a reading before it, or once it became trusted after them.
    let placed = match (clock.restamped, clock.approximate) {
        (0, 0) => String::new(),
        (restamped, 0) => format!("; {} stamped from a trusted reading", taps(restamped)),
        (restamped, approximate) => format!(
            "; {} stamped from a trusted reading, {} APPROXIMATE (made in a boot that ended \
             before the clock was trusted)",
            taps(restamped),
            taps(approximate)
        ),
    };
    match (clock.trusted, &clock.source, &clock.detail) {
        (None, ..) => "clock: not recorded yet (the service has not run with this version)".into(),
        (Some(true), Some(source), detail)
            if source == "kernel" || source == "systemd-timesyncd" =>
        {
            format!(
                "clock: synchronized: {}{placed}",
                detail.as_deref().unwrap_or(source)
            )
        }
        (Some(true), _, detail) => format!(
            "clock: trusted: {}{placed}",
            detail.as_deref().unwrap_or("")
        ),
        (Some(false), _, detail) => {
            let since = match age_s(asked, clock.since_steady) {
                Some(_) => format!(
                    "for {}",
                    duration_text(age(asked, clock.since_steady).unwrap_or_default())
                ),
                None => format!("since {}", when(asked, clock.since_wall)),
            };
            let waiting = match clock.held {
                0 => "no tap waits for it".to_string(),
                1 => "1 tap waits for it".to_string(),
                n => format!("{n} taps wait for it"),
            };
            format!(
                "clock: NOT TRUSTED {since}: {}; {waiting}{placed}",
                detail.as_deref().unwrap_or(""),
            )
        }
    }
}

pub fn to_text(status: &Status) -> String {
    let (data, asked) = (&status.data, &status.asked);
    let mut out = String::new();
    let _ = writeln!(out, "database: {}", status.database.display());
    let service = match (&status.service, status.holder) {
        (Some(service), _) => format!("running (pid {}, version {})", service.pid, service.version),
        (None, Some(pid)) => {
            format!("running (pid {pid}); read from the database, its socket did not answer")
        }
        (None, None) => "NOT RUNNING (read from the database)".into(),
    };
    let _ = writeln!(out, "service: {service}");
    match (&data.paused_since, &data.pause_reason) {
        (Some(since), reason) => {
            let _ = writeln!(
                out,
                "delivery: PAUSED since {}: EGYM refused the API key ({}). Taps are still recorded. \
                 Fix the key; delivery resumes by itself.",
                when(asked, Some(*since)),
                reason.as_deref().unwrap_or("no errorCode")
            );
        }
        (None, _) => {
            let state = if data.events.pending > 0 && data.last_error_at > data.last_delivery_at {
                "retrying (see last error)"
            } else {
                "ok"
            };
            let _ = writeln!(out, "delivery: {state}");
        }
    }
    let _ = writeln!(out, "{}", clock_line(data, asked));
    for (part, state) in &data.parts {
        let _ = writeln!(out, "{part}: {state}");
    }
    let e = &data.events;
    let oldest = age_s(asked, data.oldest_pending)
        .map(|s| {
            format!(
                " (oldest tapped {} ago)",
                duration_text(Duration::from_secs(s))
            )
        })
        .unwrap_or_default();
    let waiting = match e.waiting_for_enrolment {
        0 => String::new(),
        n => format!(", {n} waiting for their card's enrolment"),
    };
    let _ = writeln!(
        out,
        "events: {} pending{oldest}{waiting}, {} unknown tag, {} rejected, {} delivered",
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
    if !data.admissions.is_empty() {
        let _ = writeln!(out, "Wellpass admissions (kept events):");
        for (kind, reason, n) in &data.admissions {
            let says = reason
                .as_deref()
                .and_then(crate::egym::Refusal::from_error_code)
                .map(|r| format!(": {}", r.says()))
                .unwrap_or_default();
            let _ = writeln!(out, "  {n} × {}{says}", kind.replace('_', " "));
        }
    }
    if data.lost > 0 {
        let _ = writeln!(
            out,
            "LOST: {} taps (the database could not be written and the memory buffer was full)",
            data.lost
        );
    }
    let _ = writeln!(out, "last delivery: {}", when(asked, data.last_delivery_at));
    match &data.last_error {
        Some(error) => {
            let _ = writeln!(
                out,
                "last error: {error}, {}",
                when(asked, data.last_error_at)
            );
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
    if !data.unknown_cards.is_empty() {
        let _ = writeln!(
            out,
            "unknown cards (EGYM knows no member with these; compare their renderings with the \
             card's number in EGYM):"
        );
        for card in &data.unknown_cards {
            let _ = writeln!(
                out,
                "  {}  reader {}, {} since {}",
                card.tag,
                card.reader,
                taps(card.taps),
                when(asked, Some(card.since))
            );
            let line: Vec<String> = renderings(&card.raw_id)
                .into_iter()
                .map(|r| format!("{} {}", r.name, r.value))
                .collect();
            let _ = writeln!(out, "    {}", line.join("   "));
        }
    }
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
            when(asked, reader.last_read_at)
        );
    }
    out
}
