//! Read-only queries for `gym-checkin status`, on a connection of their own, so the running
//! service is not disturbed (WAL lets readers and the writer work side by side).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Admission, EventCounts, EventState, StoreError, TimeQuality, schema};
use crate::clock::{SteadyMs, WallMs};
use crate::visit::Kind;

/// What `status` shows, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusData {
    pub events: EventCounts,
    /// Steady time of the oldest tap pending delivery (not one waiting for an enrolment).
    pub oldest_pending: Option<SteadyMs>,
    pub last_delivery_at: Option<WallMs>,
    pub last_error: Option<String>,
    pub last_error_at: Option<WallMs>,
    pub paused_since: Option<WallMs>,
    pub pause_reason: Option<String>,
    pub open_visits: u64,
    /// Check-outs made by `auto-checkout-after` or `closing-time` (kept events only).
    pub automatic_checkouts: u64,
    /// Taps lost: the database could not be written and the memory buffer was full.
    pub lost: u64,
    pub readers: Vec<ReaderData>,
    /// Rejected events grouped by EGYM's answer: (status, errorCode, count).
    pub rejections: Vec<(Option<u16>, Option<String>, u64)>,
    /// Wellpass admissions of kept events: (kind, reason, count), kind as in `Admission`.
    pub admissions: Vec<(String, Option<String>, u64)>,
    pub clock: ClockData,
    /// The service's parts and their state (`screen`: serving, or why not).
    pub parts: Vec<(String, String)>,
    /// Cards EGYM knows no member with (yet), oldest first, with the id as read: their
    /// renderings are how staff find a reader that encodes cards unlike their enrolment.
    /// (Absent from the answer of a service older than this field.)
    #[serde(default)]
    pub unknown_cards: Vec<UnknownCard>,
}

/// A card EGYM does not know, as `status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnknownCard {
    /// The rfid sent to EGYM.
    pub tag: String,
    /// Hex of the id as read.
    pub raw_id: String,
    pub reader: String,
    /// Its first tap EGYM did not know.
    pub since: WallMs,
    /// Its taps EGYM has answered for: no member.
    pub taps: u64,
}

/// The clock as the service last saw it, and the events it concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockData {
    /// `None` until the service has run with a version that records it.
    pub trusted: Option<bool>,
    pub source: Option<String>,
    pub detail: Option<String>,
    pub since_wall: Option<WallMs>,
    pub since_steady: Option<SteadyMs>,
    /// Taps held until their time is known.
    pub held: u64,
    /// Events placed from a trusted reading later in their boot, and between bounds.
    pub restamped: u64,
    pub approximate: u64,
    /// Steady time = boot time + this, in the boot `status` was asked about (if the service ran
    /// in it): for ages counted in steady time.
    pub steady_offset_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReaderData {
    pub name: String,
    pub connected: bool,
    pub last_read_at: Option<WallMs>,
}

/// Reads the status from the database at `path`, without writing to it; `boot_id` is this
/// machine's boot, for ages in steady time.
pub fn read(path: &Path, boot_id: Option<&str>) -> Result<StatusData, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            detail: "no database there yet: the service has not run with this configuration".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| StoreError::NotADatabase {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if version as usize != schema::MIGRATIONS.len() {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            detail: format!(
                "schema version {version}, this gym-checkin reads version {}; start the service once to \
                 bring the database up to date",
                schema::MIGRATIONS.len()
            ),
        });
    }
    let tx = conn.unchecked_transaction()?;
    let mut data = query(&tx)?;
    if let Some(boot_id) = boot_id {
        data.clock.steady_offset_ms = super::boots::find(&tx, boot_id)?.map(|b| b.offset_ms);
    }
    Ok(data)
}

/// The counts the triggers keep: events by state, automatic check-outs, events by how their
/// time was found, taps waiting for an enrolment, taps lost.
fn tallies(conn: &Connection) -> rusqlite::Result<std::collections::HashMap<String, u64>> {
    let mut stmt = conn.prepare_cached("SELECT name, n FROM tallies")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?.max(0) as u64,
        ))
    })?;
    rows.collect()
}

/// The oldest tap pending delivery, from `events_pending_steady` (which leaves out the taps
/// waiting for an enrolment).
pub(super) const OLDEST_PENDING: &str =
    "SELECT MIN(tapped_steady_ms) FROM events WHERE state = 'pending' AND behind_unknown = 0";
/// When the last event was delivered, from `events_delivered_at`.
pub(super) const LAST_DELIVERY: &str =
    "SELECT MAX(finished_at_ms) FROM events WHERE state = 'delivered'";
/// How many taps of tag `?1` wait behind its unknown event `?2`, from `events_open_by_tag`.
pub(super) const WAITING_BEHIND: &str = "SELECT COUNT(*) FROM events INDEXED BY events_open_by_tag
     WHERE tag = ?1 AND state IN ('pending', 'unknown_tag') AND id > ?2 AND behind_unknown = 1";

/// Cards EGYM does not know, from `events_unknown` (which holds those events alone).
pub(super) const UNKNOWN_CARDS: &str = "SELECT tag, raw_id, reader, MIN(tapped_at_ms), COUNT(*)
     FROM events INDEXED BY events_unknown WHERE state = 'unknown_tag'
     GROUP BY tag ORDER BY MIN(id) LIMIT 50";

/// Events by state.
pub(super) fn count_events(conn: &Connection) -> rusqlite::Result<EventCounts> {
    let tallies = tallies(conn)?;
    let n = |name: &str| tallies.get(name).copied().unwrap_or(0);
    // A pending event waits for an enrolment or is pending delivery, never both.
    let waiting_for_enrolment = n("waiting:enrolment");
    Ok(EventCounts {
        pending: n("state:pending").saturating_sub(waiting_for_enrolment),
        waiting_for_enrolment,
        unknown_tag: n("state:unknown_tag"),
        delivered: n("state:delivered"),
        rejected: n("state:rejected"),
    })
}

/// The status, read in one (read) transaction. Every query is answered from an index or a
/// count kept by triggers, not by scanning the events: taps wait behind it on the database
/// thread.
pub(super) fn query(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<StatusData> {
    let events = count_events(tx)?;
    let tallies = tallies(tx)?;
    let n = |name: &str| tallies.get(name).copied().unwrap_or(0);
    let oldest_pending = tx.query_row(OLDEST_PENDING, [], |row| row.get(0))?;
    let last_delivery_at = tx.query_row(LAST_DELIVERY, [], |row| row.get(0))?;
    let (last_error, last_error_at, paused_since, pause_reason) = tx
        .query_row(
            "SELECT last_error, last_error_at_ms, paused_since_ms, pause_reason FROM delivery_state WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?
        .unwrap_or((None, None, None, None));
    let open_visits = tx.query_row("SELECT COUNT(*) FROM visits WHERE inside = 1", [], |row| {
        row.get::<_, i64>(0)
    })? as u64;
    let readers = tx
        .prepare("SELECT name, connected, last_read_at_ms FROM readers ORDER BY name")?
        .query_map([], |row| {
            Ok(ReaderData {
                name: row.get(0)?,
                connected: row.get(1)?,
                last_read_at: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let rejections = tx
        .prepare(
            "SELECT last_status, last_error_code, COUNT(*) FROM events WHERE state = 'rejected'
             GROUP BY last_status, last_error_code ORDER BY COUNT(*) DESC",
        )?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)? as u64))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (trusted, source, detail, since_wall, since_steady) = tx.query_row(
        "SELECT trusted, source, detail, since_wall_ms, since_steady_ms FROM clock_state
         WHERE id = 1",
        [],
        |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        },
    )?;
    let mut admissions: Vec<(String, Option<String>, u64)> = tallies
        .iter()
        .filter_map(|(name, n)| {
            let rest = name.strip_prefix("admission:")?;
            let (kind, reason) = match rest.split_once(':') {
                Some((kind, reason)) => (kind, Some(reason.to_string())),
                None => (rest, None),
            };
            Some((kind.to_string(), reason, *n))
        })
        .filter(|(_, _, n)| *n > 0)
        .collect();
    admissions.sort();
    let parts = tx
        .prepare("SELECT part, state FROM service ORDER BY part")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let unknown_cards = tx
        .prepare_cached(UNKNOWN_CARDS)?
        .query_map([], |row| {
            Ok(UnknownCard {
                tag: row.get(0)?,
                raw_id: row.get(1)?,
                reader: row.get(2)?,
                since: row.get(3)?,
                taps: row.get::<_, i64>(4)?.max(0) as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(StatusData {
        events,
        oldest_pending,
        last_delivery_at,
        last_error,
        last_error_at,
        paused_since,
        pause_reason,
        open_visits,
        automatic_checkouts: n("automatic"),
        lost: n("lost"),
        readers,
        rejections,
        admissions,
        parts,
        unknown_cards,
        clock: ClockData {
            trusted,
            source,
            detail,
            since_wall,
            since_steady,
            held: n("clock:untrusted"),
            restamped: n("clock:restamped"),
            approximate: n("clock:approximate"),
            steady_offset_ms: None,
        },
    })
}

/// One event as the staff page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRow {
    pub id: i64,
    pub reader: String,
    pub tag: String,
    pub raw_id: String,
    pub kind: Kind,
    pub tapped_at: WallMs,
    pub state: EventState,
    pub time: TimeQuality,
    pub admission: Option<Admission>,
    pub admission_reason: Option<String>,
    pub automatic: bool,
    /// Pending only behind an earlier event of its tag that EGYM does not know.
    pub behind_unknown: bool,
    /// EGYM admitted the member for the first time (Wellpass): an introductory session is due.
    pub first_admission: bool,
}

/// A member in the club, as the visit state has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsideRow {
    pub tag: String,
    /// When the visit began; `None` while its check-in waits for the clock.
    pub since: Option<WallMs>,
    /// This visit is the member's first Wellpass visit.
    pub first_admission: bool,
}

/// Wellpass admissions granted for taps of one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionsOfDay {
    /// Members (cards) admitted: EGYM counts one paid visit per member and day.
    pub members: u64,
    pub admissions: u64,
}

/// What the staff page shows besides the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaffData {
    /// The last events, newest first.
    pub taps: Vec<TapRow>,
    /// Events of tags EGYM does not know (yet), oldest first, each with how many later taps of
    /// its tag wait behind it for the card's enrolment.
    pub unknown: Vec<(TapRow, u64)>,
    /// Refused Wellpass admissions, newest first.
    pub refused: Vec<TapRow>,
    /// The members in the club, the longest in first.
    pub inside: Vec<InsideRow>,
    /// Wellpass admissions of today's taps.
    pub wellpass_today: AdmissionsOfDay,
}

/// The members in the club listed at most.
pub const INSIDE_LISTED: usize = 500;

const TAP_COLUMNS: &str = "id, reader, tag, raw_id, kind, tapped_at_ms, state, clock, admission,
                           admission_reason, automatic, behind_unknown, first_admission";

fn tap_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TapRow> {
    Ok(TapRow {
        id: row.get(0)?,
        reader: row.get(1)?,
        tag: row.get(2)?,
        raw_id: row.get(3)?,
        kind: row.get(4)?,
        tapped_at: row.get(5)?,
        state: row.get(6)?,
        time: row.get(7)?,
        admission: row.get(8)?,
        admission_reason: row.get(9)?,
        automatic: row.get(10)?,
        behind_unknown: row.get(11)?,
        first_admission: row.get(12)?,
    })
}

/// The members in the club, from the visit state, with whether their visit began with a first
/// Wellpass admission.
pub(super) const INSIDE: &str = "SELECT tag, checked_in_at_ms, EXISTS (
         SELECT 1 FROM events INDEXED BY events_first_admission
         WHERE events.tag = visits.tag AND first_admission = 1
           AND tapped_at_ms >= visits.checked_in_at_ms)
     FROM visits INDEXED BY visits_inside_since WHERE inside = 1
     ORDER BY checked_in_at_ms LIMIT ?1";
/// Wellpass admissions granted for taps in `[?1, ?2)`: members (cards) and admissions.
pub(super) const ADMITTED_BETWEEN: &str =
    "SELECT COUNT(DISTINCT tag), COUNT(*) FROM events INDEXED BY events_admitted
     WHERE admission IN ('admitted', 'admitted_late') AND tapped_at_ms >= ?1 AND tapped_at_ms < ?2";

/// The staff page's lists, each from an index.
pub(super) fn staff(
    conn: &Connection,
    taps: usize,
    today: Option<(WallMs, WallMs)>,
) -> rusqlite::Result<StaffData> {
    let rows = |sql: &str, limit: usize| -> rusqlite::Result<Vec<TapRow>> {
        conn.prepare_cached(sql)?
            .query_map([limit as i64], tap_row)?
            .collect()
    };
    Ok(StaffData {
        taps: rows(
            &format!("SELECT {TAP_COLUMNS} FROM events ORDER BY id DESC LIMIT ?1"),
            taps,
        )?,
        unknown: rows(
            &format!(
                "SELECT {TAP_COLUMNS} FROM events INDEXED BY events_open_id
                 WHERE state IN ('pending', 'unknown_tag') AND state = 'unknown_tag'
                 ORDER BY id LIMIT ?1"
            ),
            200,
        )?
        .into_iter()
        .map(|row| {
            let waiting = conn
                .prepare_cached(WAITING_BEHIND)?
                .query_row(rusqlite::params![row.tag, row.id], |r| r.get::<_, i64>(0))?;
            Ok((row, waiting.max(0) as u64))
        })
        .collect::<rusqlite::Result<_>>()?,
        refused: rows(
            &format!(
                "SELECT {TAP_COLUMNS} FROM events INDEXED BY events_refused
                 WHERE admission IN ('refused', 'refused_late') ORDER BY id DESC LIMIT ?1"
            ),
            20,
        )?,
        inside: conn
            .prepare_cached(INSIDE)?
            .query_map([INSIDE_LISTED as i64], |row| {
                Ok(InsideRow {
                    tag: row.get(0)?,
                    since: row.get(1)?,
                    first_admission: row.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?,
        wellpass_today: match today {
            Some((start, end)) => conn.prepare_cached(ADMITTED_BETWEEN)?.query_row(
                rusqlite::params![start, end],
                |row| {
                    Ok(AdmissionsOfDay {
                        members: row.get::<_, i64>(0)?.max(0) as u64,
                        admissions: row.get::<_, i64>(1)?.max(0) as u64,
                    })
                },
            )?,
            None => AdmissionsOfDay::default(),
        },
    })
}
