//! What `status` shows besides the events: the readers, and whether delivery is paused.

use rusqlite::params;

use super::{Store, StoreError};
use crate::clock::WallMs;

impl Store {
    /// Marks every configured reader disconnected (their tasks report when they connect) and
    /// forgets readers no longer configured.
    pub async fn reset_readers(
        &self,
        names: Vec<String>,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let keep: std::collections::HashSet<String> = names.iter().cloned().collect();
            let known: Vec<String> = tx
                .prepare("SELECT name FROM readers")?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for name in known.iter().filter(|n| !keep.contains(*n)) {
                tx.execute("DELETE FROM readers WHERE name = ?1", [name])?;
            }
            for name in names {
                tx.execute(
                    "INSERT INTO readers (name, connected, changed_at_ms) VALUES (?1, 0, ?2)
                     ON CONFLICT (name) DO UPDATE SET connected = 0, changed_at_ms = ?2",
                    params![name, now_wall],
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// Records that delivery is paused (with EGYM's reason), or no longer paused.
    pub async fn set_delivery_paused(
        &self,
        reason: Option<String>,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE delivery_state
                 SET paused_since_ms = CASE WHEN ?1 IS NULL THEN NULL
                                            ELSE COALESCE(paused_since_ms, ?2) END,
                     pause_reason = ?1
                 WHERE id = 1",
            )?
            .execute(params![reason, now_wall])?;
            Ok(())
        })
        .await
    }

    /// Records the state of one of the service's parts (`screen`), for `status`.
    pub async fn set_part_state(
        &self,
        part: &'static str,
        state: String,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO service (part, state, changed_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (part) DO UPDATE SET state = ?2, changed_at_ms = ?3",
            )?
            .execute(params![part, state, now_wall])?;
            Ok(())
        })
        .await
    }

    /// The staff page's lists: the last `taps` events, unknown tags, refused admissions, the
    /// members in the club, and the Wellpass admissions of `today` (its start and end).
    pub async fn staff(
        &self,
        taps: usize,
        today: Option<(WallMs, WallMs)>,
    ) -> Result<super::status::StaffData, StoreError> {
        self.call(move |conn| super::status::staff(conn, taps, today))
            .await
    }

    /// Records the last delivery failure, for `status`.
    pub async fn set_last_error(&self, error: String, now_wall: WallMs) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE delivery_state SET last_error = ?1, last_error_at_ms = ?2 WHERE id = 1",
            )?
            .execute(params![error, now_wall])?;
            Ok(())
        })
        .await
    }
}
