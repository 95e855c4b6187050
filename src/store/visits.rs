//! Visit state: which tags are inside, since when, and where each was last read.

use std::collections::HashMap;

use super::{Store, StoreError, Visit};
use crate::visit::{CheckIn, TagState};

impl Store {
    /// Every tag's visit state and where it was last read, for the recorder to start from.
    pub async fn visits(&self) -> Result<HashMap<String, Visit>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare(
                "SELECT tag, inside, last_event_steady_ms, checked_in_steady_ms, checked_in_at_ms,
                        reader, raw_id, tag_format
                 FROM visits",
            )?;
            let rows = stmt.query_map([], |row| {
                let tag: String = row.get(0)?;
                let inside: bool = row.get(1)?;
                // A member inside has the time the visit began: without it, the row is damaged.
                let checked_in = if inside {
                    Some(CheckIn {
                        steady: row.get(3)?,
                        at: row.get(4)?,
                    })
                } else {
                    None
                };
                let visit = Visit {
                    state: TagState {
                        inside,
                        last_event: row.get(2)?,
                        checked_in,
                    },
                    reader: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    raw_id: row
                        .get::<_, Option<String>>(6)?
                        .unwrap_or_else(|| tag.trim_start_matches("0x").to_string()),
                    tag_format: row.get(7)?,
                };
                Ok((tag, visit))
            })?;
            rows.collect()
        })
        .await
    }
}
