//! `gym-checkin forget` and `gym-checkin export`: a member's right to erasure and to see what is
//! kept, for one card or for every card the box knows as one member's.
//!
//! Both work through the running service when there is one (its control socket, see
//! [`crate::control`]), so that an erasure also reaches what the service holds in memory: its
//! visit state, the screen's answer and the staff page. When no service runs, they work on the
//! database itself, holding its lock meanwhile, so that no service starts on it halfway. A
//! service that runs but cannot be asked (its socket is off) is never bypassed: its database is
//! its own.
//!
//! `forget` first says what it would erase, and how many taps not yet delivered would then
//! never reach EGYM, and asks; `--yes` answers for a script. An answer comes with the number it
//! confirmed, and the erasure does not happen if more taps are waiting by then.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::{SteadyMs, SystemSource, TimeSource, WallMs, duration_text, rfc3339};
use crate::config::Config;
use crate::console;
use crate::control::{self, AskError, Reply, Request, ServiceInfo};
use crate::events::{Erased, Listeners};
use crate::store::{
    DatabaseLock, EraseError, ExportData, Holdings, LockError, Store, StoreError, Subject,
};

/// Where an answer came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The running service.
    Service(ServiceInfo),
    /// The database itself: no service runs on it.
    Database,
}

/// What became of an erasure asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forgotten {
    Erased(Holdings, Via),
    /// More taps wait for delivery than were confirmed: nothing was erased. What there is now.
    Changed(Holdings),
}

/// What an export found.
#[derive(Clone, Debug)]
pub struct Exported {
    pub data: ExportData,
    pub via: Via,
    /// Steady time now, if it is known (for ages counted in it).
    pub steady: Option<SteadyMs>,
}

/// What the service answered, or that the database must be worked on directly.
enum Asked {
    Answered(Reply),
    Direct,
}

/// Asks the service running on `config`'s database, if one answers on its socket.
fn ask(config: &Config, request: &Request) -> Result<Asked, String> {
    let Some(socket) = &config.service.socket else {
        return Ok(Asked::Direct);
    };
    match control::ask(socket, request) {
        // A service on another database: this configuration's database is worked on directly
        // (its lock tells whether a service runs on it).
        Ok(Reply::OtherDatabase(_)) | Err(AskError::NotRunning) => Ok(Asked::Direct),
        Ok(Reply::Denied(why)) => Err(why),
        Ok(Reply::Failed(why)) => Err(format!("the service answered: {why}")),
        Ok(reply) => Ok(Asked::Answered(reply)),
        Err(e) => Err(e.to_string()),
    }
}

/// Opens `config`'s database for `command`, no service running on it: holds its lock for as
/// long as the store is used. `None`: there is no database, so nothing is held.
async fn open_directly(
    config: &Config,
    command: &str,
) -> Result<Option<(Store, DatabaseLock)>, String> {
    let db = &config.store.path;
    let user = console::user_name();
    match std::fs::metadata(db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(not_allowed(db, &user, command));
        }
        Err(e) => return Err(format!("cannot look at {}: {e}", db.display())),
        Ok(_) => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    {
        return Err(not_allowed(db, &user, command));
    }
    let lock = DatabaseLock::acquire_for(db, command).map_err(|e| match e {
        LockError::Held {
            pid,
            command: held_by,
            ..
        } if held_by.as_deref().unwrap_or("run") == "run" => {
            let pid = pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
            let socket = match &config.service.socket {
                Some(socket) => format!("nothing answers on {}", socket.display()),
                None => "its control socket is off ([service] socket = \"\")".into(),
            };
            format!(
                "the service{pid} runs on {} but cannot be asked: {socket}. It must {command} \
                 itself, so that what it holds in memory goes too: turn its socket on, or stop \
                 it (`sudo systemctl stop gym-checkin`) and run this again",
                db.display()
            )
        }
        e => e.to_string(),
    })?;
    let store = Store::open(db).await.map_err(|e| e.to_string())?;
    Ok(Some((store, lock)))
}

fn not_allowed(db: &Path, user: &str, command: &str) -> String {
    format!(
        "user {user} may not open the database {} (it is the service's alone), and no service \
         answers for it: run `sudo gym-checkin {command} ...`",
        db.display()
    )
}

/// What the box holds about `subject`.
pub async fn holdings(config: &Config, subject: &Subject) -> Result<(Holdings, Via), String> {
    let request = Request::Holdings {
        database: config.store.path.clone(),
        subject: subject.clone(),
    };
    match ask(config, &request)? {
        Asked::Answered(Reply::Holdings(service, held)) => Ok((held, Via::Service(service))),
        Asked::Answered(_) => Err(unexpected()),
        Asked::Direct => match open_directly(config, "forget").await? {
            None => Ok((Holdings::default(), Via::Database)),
            Some((store, _lock)) => {
                let held = store
                    .holdings(subject.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((held, Via::Database))
            }
        },
    }
}

/// Erases everything about `subject`; with `open_confirmed`, only if no more of its taps wait
/// for delivery than that.
pub async fn forget(
    config: &Config,
    subject: &Subject,
    open_confirmed: Option<u64>,
) -> Result<Forgotten, String> {
    let request = Request::Forget {
        database: config.store.path.clone(),
        subject: subject.clone(),
        open_confirmed,
    };
    match ask(config, &request)? {
        Asked::Answered(Reply::Erased(service, erased)) => {
            Ok(Forgotten::Erased(erased, Via::Service(service)))
        }
        Asked::Answered(Reply::Changed(_, now)) => Ok(Forgotten::Changed(now)),
        Asked::Answered(_) => Err(unexpected()),
        Asked::Direct => {
            let Some((store, _lock)) = open_directly(config, "forget").await? else {
                return Ok(Forgotten::Erased(Holdings::default(), Via::Database));
            };
            match store.erase(subject.clone(), open_confirmed).await {
                Ok(erased) => {
                    // SAFETY: geteuid cannot fail.
                    let uid = unsafe { libc::geteuid() };
                    Erased {
                        erased: erased.clone(),
                        by_uid: Some(uid),
                    }
                    .emit(&Listeners::unheard());
                    Ok(Forgotten::Erased(erased, Via::Database))
                }
                Err(EraseError::Changed(now)) => Ok(Forgotten::Changed(now)),
                Err(e) => Err(format!("nothing was erased: {e}")),
            }
        }
    }
}

/// Everything the box holds about `subject`.
pub async fn export(config: &Config, subject: &Subject) -> Result<Exported, String> {
    let request = Request::Export {
        database: config.store.path.clone(),
        subject: subject.clone(),
    };
    match ask(config, &request)? {
        Asked::Answered(Reply::Exported(reply)) => Ok(Exported {
            data: reply.data,
            via: Via::Service(reply.service),
            steady: Some(reply.steady),
        }),
        Asked::Answered(_) => Err(unexpected()),
        Asked::Direct => match open_directly(config, "export").await? {
            None => Ok(Exported {
                data: ExportData::default(),
                via: Via::Database,
                steady: None,
            }),
            Some((store, _lock)) => {
                let data = store
                    .export(subject.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let steady = steady_now(&store).await.map_err(|e| e.to_string())?;
                Ok(Exported {
                    data,
                    via: Via::Database,
                    steady,
                })
            }
        },
    }
}

/// Steady time now, if the service has run in this boot (steady time is counted from there).
async fn steady_now(store: &Store) -> Result<Option<SteadyMs>, StoreError> {
    let source = SystemSource;
    let Some(boot_id) = source.boot_id() else {
        return Ok(None);
    };
    let boots = store.boots().await?;
    Ok(boots
        .iter()
        .find(|b| b.boot_id == boot_id)
        .map(|b| SteadyMs::from_millis(source.boottime_ms() + b.offset_ms)))
}

fn unexpected() -> String {
    "the service answered something this gym-checkin does not expect; is it another version?".into()
}

/// "3 events", "1 event".
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What is held, in words: the lines `forget` shows before it asks.
pub fn holdings_text(subject: &Subject, held: &Holdings, via: &Via) -> String {
    let from = match via {
        Via::Service(service) => format!("the running service (pid {})", service.pid),
        Via::Database => "the database (no service runs on it)".into(),
    };
    if held.is_empty() {
        return format!(
            "The box holds nothing about {} (asked {from}).\n",
            subject.describe()
        );
    }
    let mut text = format!(
        "The box holds, about {} (asked {from}):\n",
        subject.describe()
    );
    if matches!(subject, Subject::Account(_)) {
        text.push_str(&format!("  cards: {}\n", held.cards.join(", ")));
    }
    text.push_str(&format!(
        "  {}, {} of them not yet delivered to EGYM\n",
        count(held.events, "event", "events"),
        held.open
    ));
    text.push_str(&format!(
        "  {} (inside or not, the last tap)\n",
        count(held.visits, "visit state", "visit states")
    ));
    text.push_str(&format!(
        "  {} at EGYM\n",
        count(held.accounts, "cached lookup", "cached lookups")
    ));
    text
}

/// The question `forget` asks.
pub fn question(held: &Holdings) -> String {
    let never = match held.open {
        0 => "Every tap of it has reached EGYM already.".to_string(),
        n => format!(
            "{} not yet delivered would NEVER reach EGYM (a tap being sent this very moment may \
             still arrive).",
            count(n, "tap", "taps")
        ),
    };
    format!("{never}\nErase all of it from this box for good? Type yes to erase: ")
}

/// Reads the answer to [`question`]: `true` for "yes" (or "y").
pub fn confirmed() -> bool {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "yes" | "y"),
        Err(_) => false,
    }
}

/// What was erased, in words.
pub fn erased_text(erased: &Holdings, via: &Via) -> String {
    let memory = match via {
        Via::Service(_) => ", and what the running service held of it in memory",
        Via::Database => "",
    };
    format!(
        "Erased: {} ({} of them not yet delivered to EGYM), {}, {}{memory}. The database's \
         files hold none of it any more.\n",
        count(erased.events, "event", "events"),
        erased.open,
        count(erased.visits, "visit state", "visit states"),
        count(erased.accounts, "cached lookup", "cached lookups"),
    )
}

/// An export as JSON: everything held about the subject, each time in RFC 3339 (UTC), and when
/// each part is deleted by itself under the configured retention.
pub fn export_json(config: &Config, subject: &Subject, exported: &Exported, now: WallMs) -> Value {
    let data = &exported.data;
    let keep = |d: Duration| duration_text(d);
    let retention_of = |state: &str, unknown: bool| -> Option<Duration> {
        match state {
            "delivered" => Some(config.store.keep_delivered),
            "rejected" if unknown => Some(config.store.keep_unknown),
            "rejected" => Some(config.store.keep_rejected),
            _ => None,
        }
    };
    let age = |steady: SteadyMs| exported.steady.map(|now| now.since(steady).as_secs());
    let events: Vec<Value> = data
        .events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "card": e.tag,
                "id_as_read": e.raw_id,
                "tag_format": e.tag_format,
                "reader": e.reader,
                "kind": e.kind,
                "tapped_at": rfc3339(e.tapped_at),
                "time": e.clock,
                "automatic": e.automatic,
                "recorded_at": rfc3339(e.recorded_at),
                "state": e.state,
                "attempts": e.attempts,
                "account_id": e.account_id,
                "egym_status": e.last_status,
                "egym_error_code": e.last_error_code,
                "egym_error": e.last_error,
                "finished_at": e.finished_at.map(rfc3339),
                "admission": e.admission,
                "admission_reason": e.admission_reason,
                "first_wellpass_visit": e.first_admission,
                "unknown_card": e.unknown_card,
                "deleted_after": retention_of(&e.state, e.unknown_card)
                    .map(|d| rfc3339(e.tapped_at + d)),
            })
        })
        .collect();
    let visits: Vec<Value> = data
        .visits
        .iter()
        .map(|v| {
            json!({
                "card": v.tag,
                "inside": v.inside,
                "checked_in_at": v.checked_in_at.map(rfc3339),
                "last_tap_age_s": age(v.last_event_steady),
                "reader": v.reader,
                "id_as_read": v.raw_id,
                "tag_format": v.tag_format,
            })
        })
        .collect();
    let lookups: Vec<Value> = data
        .accounts
        .iter()
        .map(|a| {
            json!({
                "card": a.tag,
                "tag_format": a.tag_format,
                "account_id": a.account_id,
                "wellpass": a.membership_type.is_some(),
                "age_s": age(a.resolved_steady),
            })
        })
        .collect();
    let (subject_key, subject_value) = match subject {
        Subject::Tag(tag) => ("card", tag),
        Subject::Account(account) => ("account_id", account),
    };
    json!({
        "subject": { subject_key: subject_value },
        "exported_at": rfc3339(now),
        "database": config.store.path,
        "from": match &exported.via {
            Via::Service(service) => json!({ "service_pid": service.pid }),
            Via::Database => json!("database"),
        },
        "cards": data.cards,
        "events": events,
        "visits": visits,
        "cached_lookups": lookups,
        "retention": {
            "delivered_events": keep(config.store.keep_delivered),
            "rejected_events": keep(config.store.keep_rejected),
            "unknown_card_events": keep(config.store.keep_unknown),
            "cached_lookups": keep(config.egym.account_cache_ttl),
            "visit_state_after_the_last_tap_once_outside": keep(config.visits.keep_closed),
            "events_not_yet_delivered": "until delivered, or erased with `gym-checkin forget`",
        },
        "not_held_here": "first names, e-mail addresses and other details of the member are \
            never written down: EGYM holds the member's record",
    })
}
