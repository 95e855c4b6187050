//! Read-only queries for `gym-checkin status`, on a connection of their own, so the running
//! service is not disturbed (WAL lets readers and the writer work side by side).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{EventCounts, StoreError, schema};

/// What `status` shows, as stored (times in milliseconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusData {
    pub events: EventCounts,
    pub oldest_pending_tapped_at_ms: Option<i64>,
    pub last_delivery_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub paused_since_ms: Option<i64>,
    pub pause_reason: Option<String>,
    pub open_visits: u64,
    /// Check-outs made by `auto-checkout-after` or `closing-time` (kept events only).
    pub automatic_checkouts: u64,
    pub readers: Vec<ReaderData>,
    /// Rejected events grouped by EGYM's answer: (status, errorCode, count).
    pub rejections: Vec<(Option<u16>, Option<String>, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderData {
    pub name: String,
    pub connected: bool,
    pub last_read_at_ms: Option<i64>,
}

/// Reads the status from the database at `path`, without writing to it.
pub fn read(path: &Path) -> Result<StatusData, StoreError> {
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
    Ok(query(&tx)?)
}

/// Events by state.
pub(super) fn count_events(conn: &Connection) -> rusqlite::Result<EventCounts> {
    let mut events = EventCounts::default();
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM events GROUP BY state")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let state: String = row.get(0)?;
        let n = row.get::<_, i64>(1)? as u64;
        match state.as_str() {
            "pending" => events.pending = n,
            "unknown_tag" => events.unknown_tag = n,
            "delivered" => events.delivered = n,
            "rejected" => events.rejected = n,
            _ => {}
        }
    }
    Ok(events)
}

/// The status, read in one (read) transaction.
pub(super) fn query(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<StatusData> {
    let events = count_events(tx)?;
    let oldest_pending_tapped_at_ms = tx.query_row(
        "SELECT MIN(tapped_at_ms) FROM events WHERE state = 'pending'",
        [],
        |row| row.get(0),
    )?;
    let last_delivery_at_ms = tx.query_row(
        "SELECT MAX(finished_at_ms) FROM events WHERE state = 'delivered'",
        [],
        |row| row.get(0),
    )?;
    let (last_error, last_error_at_ms, paused_since_ms, pause_reason) = tx
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
    let automatic_checkouts = tx.query_row(
        "SELECT COUNT(*) FROM events WHERE automatic = 1",
        [],
        |row| row.get::<_, i64>(0),
    )? as u64;
    let readers = tx
        .prepare("SELECT name, connected, last_read_at_ms FROM readers ORDER BY name")?
        .query_map([], |row| {
            Ok(ReaderData {
                name: row.get(0)?,
                connected: row.get(1)?,
                last_read_at_ms: row.get(2)?,
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
    Ok(StatusData {
        events,
        oldest_pending_tapped_at_ms,
        last_delivery_at_ms,
        last_error,
        last_error_at_ms,
        paused_since_ms,
        pause_reason,
        open_visits,
        automatic_checkouts,
        readers,
        rejections,
    })
}
