//! The clock's records: the boots the service ran in (see [`crate::clock::placement`]), and the
//! clock's trust as the service last saw it, for `status`.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError};
use crate::clock::placement::{self, Anchor, BootReading, BootRecord};
use crate::clock::{Boot, SteadyMs, Trust, WallMs};

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<BootRecord> {
    // Both anchor columns are set together, or neither (no trusted reading in the boot yet).
    let anchor = match (row.get(5)?, row.get(6)?) {
        (Some(wall), Some(steady)) => Some(Anchor { wall, steady }),
        _ => None,
    };
    Ok(BootRecord {
        id: row.get(0)?,
        boot_id: row.get(1)?,
        offset_ms: row.get(2)?,
        start: row.get(3)?,
        seen: row.get(4)?,
        anchor,
    })
}

const COLUMNS: &str =
    "id, boot_id, offset_ms, start_steady_ms, seen_steady_ms, anchor_wall_ms, anchor_steady_ms";

/// Every boot recorded, in the order they were first seen.
pub(super) fn all(conn: &Connection) -> rusqlite::Result<Vec<BootRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM boots ORDER BY id"))?
        .query_map([], record)?
        .collect()
}

/// The boot with this boot id, if it was seen before.
pub(super) fn find(conn: &Connection, boot_id: &str) -> rusqlite::Result<Option<BootRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM boots WHERE boot_id = ?1"))?
        .query_row([boot_id], record)
        .optional()
}

/// Notes that the service ran in `boot` until `seen`, and its latest trusted reading.
pub(super) fn note(
    conn: &Connection,
    boot: i64,
    seen: SteadyMs,
    anchor: Option<Anchor>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE boots SET seen_steady_ms = MAX(seen_steady_ms, ?2),
                          anchor_wall_ms = COALESCE(?3, anchor_wall_ms),
                          anchor_steady_ms = COALESCE(?4, anchor_steady_ms)
         WHERE id = ?1",
    )?
    .execute(params![
        boot,
        seen,
        anchor.map(|a| a.wall),
        anchor.map(|a| a.steady)
    ])?;
    Ok(())
}

/// The latest steady time the database records as past: the newest event's tap, the newest
/// lookup, a tag's last event. (The boots' own records are read beside it.)
fn last_known_steady(conn: &Connection) -> rusqlite::Result<Option<SteadyMs>> {
    conn.query_row(
        "SELECT MAX(t) FROM (
             SELECT tapped_steady_ms AS t FROM events WHERE id = (SELECT MAX(id) FROM events)
             UNION ALL SELECT MAX(resolved_steady_ms) FROM accounts
             UNION ALL SELECT MAX(last_event_steady_ms) FROM visits)",
        [],
        |row| row.get(0),
    )
}

impl Store {
    /// Registers the boot this run is in (or finds it, on a restart) and says where steady time
    /// stands: see [`placement::steady_at_start`]. Returns the boot and its last trusted reading
    /// from an earlier run.
    pub async fn register_boot(
        &self,
        reading: BootReading,
    ) -> Result<(Boot, Option<Anchor>), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let same = find(&tx, &reading.boot_id)?;
            let previous = tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM boots ORDER BY id DESC LIMIT 1"
                ))?
                .query_row([], record)
                .optional()?;
            let last_known = if same.is_some() {
                None
            } else {
                last_known_steady(&tx)?
            };
            let (offset_ms, steady) =
                placement::steady_at_start(same.as_ref(), previous.as_ref(), last_known, &reading);
            let boot = match &same {
                Some(same) => {
                    note(&tx, same.id, steady, None)?;
                    Boot {
                        id: same.id,
                        offset_ms,
                        start: same.start,
                    }
                }
                None => {
                    tx.prepare_cached(
                        "INSERT INTO boots (boot_id, offset_ms, start_steady_ms, seen_steady_ms)
                         VALUES (?1, ?2, ?3, ?3)",
                    )?
                    .execute(params![reading.boot_id, offset_ms, steady])?;
                    Boot {
                        id: tx.last_insert_rowid(),
                        offset_ms,
                        start: steady,
                    }
                }
            };
            tx.commit()?;
            Ok((boot, same.and_then(|s| s.anchor)))
        })
        .await
    }

    /// Notes that the service is still running in `boot` at `seen`, with its latest trusted
    /// reading if it has one.
    pub async fn note_boot(
        &self,
        boot: i64,
        seen: SteadyMs,
        anchor: Option<Anchor>,
    ) -> Result<(), StoreError> {
        self.call(move |conn| note(conn, boot, seen, anchor)).await
    }

    /// Every boot recorded, oldest first.
    pub async fn boots(&self) -> Result<Vec<BootRecord>, StoreError> {
        self.call(|conn| all(conn)).await
    }

    /// Records the clock's trust for `status`; `since` is when it last changed (wall and steady
    /// time), kept while it stays the same.
    pub async fn set_clock_state(
        &self,
        trust: Trust,
        since_wall: WallMs,
        since_steady: SteadyMs,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE clock_state
                 SET since_wall_ms = CASE WHEN trusted IS ?1 AND source IS ?2 THEN since_wall_ms
                                          ELSE ?4 END,
                     since_steady_ms = CASE WHEN trusted IS ?1 AND source IS ?2 THEN since_steady_ms
                                            ELSE ?5 END,
                     trusted = ?1, source = ?2, detail = ?3
                 WHERE id = 1",
            )?
            .execute(params![
                trust.trusted,
                trust.source.as_str(),
                trust.detail,
                since_wall,
                since_steady
            ])?;
            Ok(())
        })
        .await
    }
}
