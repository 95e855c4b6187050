//! The events outbox: recording taps, claiming what is due, recording outcomes, placing held
//! taps. (Pruning and erasure are in `privacy`.)

use rusqlite::{Connection, OptionalExtension, params};

use super::CachedAccount;
use super::{
    Admission, Answer, EventRow, NewEvent, OPEN, OpenEvent, Priority, ReaderUpdate, Store,
    StoreError, TimeQuality,
};
use crate::clock::placement::{self, HeldTap, Placed};
use crate::clock::{Anchor, SteadyMs, WallMs};
use crate::visit::{Kind, TagState};

/// What the recorder writes in one transaction.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Events, each with its tag's new visit state.
    pub events: Vec<(NewEvent, TagState)>,
    pub readers: Vec<ReaderUpdate>,
    /// Tags whose visit state changed without an event (a refused admission), with it.
    pub visits: Vec<(String, TagState)>,
    /// Taps lost since the last batch was written (the memory buffer was full while the
    /// database could not be written), counted for `status`.
    pub lost: u64,
    /// The wall time now, kept as the rows' recorded time and the readers' change time.
    pub now_wall: WallMs,
}

impl Batch {
    /// A batch of `events` alone, written at `now_wall`.
    pub fn of(events: Vec<(NewEvent, TagState)>, now_wall: WallMs) -> Batch {
        Batch {
            events,
            readers: Vec::new(),
            visits: Vec::new(),
            lost: 0,
            now_wall,
        }
    }
}

/// What a batch's commit gave: each event's id, and what the tag cache knew of each event's tag
/// then (in the batch's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub ids: Vec<i64>,
    pub cached: Vec<Option<CachedAccount>>,
}

/// A held event placed once its time could be known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedEvent {
    pub id: i64,
    pub reader: String,
    pub tag: String,
    pub kind: Kind,
    pub tapped_steady: SteadyMs,
    pub placed: Placed,
}

/// Open events matching `condition` (on `events AS e`; `?2` is the limit), in id order, found
/// through `index` (named, so the planner never falls back to sorting every open event).
fn query_open(
    conn: &Connection,
    index: &str,
    condition: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<OpenEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, reader, raw_id, tag, tag_format, kind, tapped_at_ms, attempts,
                unknown_since_steady_ms, tapped_steady_ms, admission
         FROM events AS e INDEXED BY {index} WHERE {condition} ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params, |row| {
        Ok(OpenEvent {
            id: row.get(0)?,
            reader: row.get(1)?,
            raw_id: row.get(2)?,
            tag: row.get(3)?,
            tag_format: row.get(4)?,
            kind: row.get(5)?,
            tapped_at: row.get(6)?,
            attempts: row.get(7)?,
            unknown_since: row.get(8)?,
            tapped_steady: row.get(9)?,
            admission: row.get(10)?,
        })
    })?;
    rows.collect()
}

fn update_reader(
    tx: &rusqlite::Transaction<'_>,
    update: &ReaderUpdate,
    now_wall: WallMs,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO readers (name, connected, changed_at_ms, last_read_at_ms)
         VALUES (?1, COALESCE(?2, 0), ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
             connected = COALESCE(?2, connected),
             changed_at_ms = CASE WHEN ?2 IS NULL THEN changed_at_ms ELSE ?3 END,
             last_read_at_ms = COALESCE(?4, last_read_at_ms)",
    )?
    .execute(params![
        update.name,
        update.connected,
        now_wall,
        update.last_read_at
    ])?;
    Ok(())
}

/// An open event whose tag has an older open event is not the tag's head: it waits.
const IS_HEAD: &str = "NOT EXISTS (SELECT 1 FROM events AS older
                                  WHERE older.tag = e.tag AND older.state IN ('pending', 'unknown_tag')
                                    AND older.id < e.id)";

impl Store {
    /// Records one event and the tag's new visit state; returns the event id once committed.
    pub async fn record_event(
        &self,
        event: NewEvent,
        state: TagState,
        now_wall: WallMs,
    ) -> Result<i64, StoreError> {
        let batch = Batch::of(vec![(event, state)], now_wall);
        let recorded = self.record_batch(batch).await?;
        Ok(recorded.ids[0])
    }

    /// Records a batch in one transaction (one fsync for a burst of taps); returns, once it has
    /// committed, each event's id and what the tag cache knew of its tag.
    pub async fn record_batch(&self, batch: Batch) -> Result<Recorded, StoreError> {
        self.call_with(Priority::Tap, move |conn| {
            let tx = conn.transaction()?;
            let mut ids = Vec::with_capacity(batch.events.len());
            for (event, state) in &batch.events {
                tx.prepare_cached(
                    "INSERT INTO events (reader, raw_id, tag, tag_format, kind, tapped_at_ms,
                                         recorded_at_ms, next_attempt_steady_ms, automatic,
                                         boot, tapped_steady_ms, clock)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8, ?11)",
                )?
                .execute(params![
                    event.reader,
                    event.raw_id,
                    event.tag,
                    event.tag_format,
                    event.kind.as_str(),
                    event.tapped_at,
                    batch.now_wall,
                    event.tapped_steady,
                    event.automatic,
                    event.boot,
                    event.time.as_str(),
                ])?;
                ids.push(tx.last_insert_rowid());
                let checked_in = state.checked_in;
                tx.prepare_cached(
                    "INSERT INTO visits (tag, inside, last_event_steady_ms, checked_in_steady_ms,
                                         checked_in_at_ms, reader, raw_id, tag_format)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (tag) DO UPDATE
                     SET inside = ?2, last_event_steady_ms = ?3, checked_in_steady_ms = ?4,
                         checked_in_at_ms = ?5, reader = ?6, raw_id = ?7, tag_format = ?8",
                )?
                .execute(params![
                    event.tag,
                    state.inside,
                    state.last_event,
                    checked_in.map(|c| c.steady),
                    checked_in.and_then(|c| c.at),
                    event.reader,
                    event.raw_id,
                    event.tag_format
                ])?;
            }
            for (tag, state) in &batch.visits {
                tx.prepare_cached(
                    "UPDATE visits SET inside = ?2, last_event_steady_ms = ?3,
                                       checked_in_steady_ms = ?4, checked_in_at_ms = ?5
                     WHERE tag = ?1",
                )?
                .execute(params![
                    tag,
                    state.inside,
                    state.last_event,
                    state.checked_in.map(|c| c.steady),
                    state.checked_in.and_then(|c| c.at)
                ])?;
            }
            for update in &batch.readers {
                update_reader(&tx, update, batch.now_wall)?;
            }
            let cached = batch
                .events
                .iter()
                .map(|(event, _)| super::accounts::cached(&tx, &event.tag, event.tag_format))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if batch.lost > 0 {
                tx.prepare_cached(
                    "INSERT INTO tallies (name, n) VALUES ('lost', ?1)
                     ON CONFLICT (name) DO UPDATE SET n = n + ?1",
                )?
                .execute([batch.lost as i64])?;
            }
            tx.commit()?;
            Ok(Recorded { ids, cached })
        })
        .await
    }

    /// Up to `limit` events due at `now` that are the oldest open event of their tag
    /// and whose time is known: first *live* ones (never tried, recorded after
    /// `backlog_through_id`), then the rest; in id order within each.
    pub async fn claim_due(
        &self,
        now: SteadyMs,
        backlog_through_id: i64,
        limit: usize,
    ) -> Result<Vec<OpenEvent>, StoreError> {
        self.call(move |conn| {
            let due = format!(
                "{OPEN} AND clock <> 'untrusted' AND next_attempt_steady_ms <= ?1 AND {IS_HEAD}"
            );
            let mut events = query_open(
                conn,
                "events_open_id",
                &format!("{due} AND attempts = 0 AND id > ?3"),
                params![now, limit as i64, backlog_through_id],
            )?;
            if events.len() < limit {
                let rest = query_open(conn, "events_open_id", &due, params![now, limit as i64])?;
                let live: std::collections::HashSet<i64> = events.iter().map(|e| e.id).collect();
                events.extend(rest.into_iter().filter(|e| !live.contains(&e.id)));
                events.truncate(limit);
            }
            Ok(events)
        })
        .await
    }

    /// When the first head of a tag's queue falls due after `after`, if one does.
    pub async fn next_due_after(&self, after: SteadyMs) -> Result<Option<SteadyMs>, StoreError> {
        self.call(move |conn| {
            // Walks open events by due time and stops at the first head.
            conn.prepare_cached(&format!(
                "SELECT next_attempt_steady_ms FROM events AS e INDEXED BY events_open_due
                 WHERE {OPEN} AND next_attempt_steady_ms > ?1 AND clock <> 'untrusted'
                   AND {IS_HEAD}
                 ORDER BY next_attempt_steady_ms LIMIT 1"
            ))?
            .query_row([after], |row| row.get(0))
            .optional()
        })
        .await
    }

    /// The newest event's id (0 with none).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        self.call(|conn| {
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |row| {
                row.get(0)
            })
        })
        .await
    }

    pub async fn mark_delivered(
        &self,
        id: i64,
        account_id: String,
        status: u16,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET state = 'delivered', attempts = attempts + 1, account_id = ?2,
                        last_status = ?3, last_error_code = NULL, last_error = NULL,
                        finished_at_ms = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, account_id, status, now_wall])?;
            Ok(())
        })
        .await
    }

    /// Keeps the event open and schedules its next attempt (in steady time).
    pub async fn schedule_retry(
        &self,
        id: i64,
        next_attempt: SteadyMs,
        answer: Answer,
    ) -> Result<(), StoreError> {
        // A 429 is EGYM declining to take the request now, not an attempt at it: the event
        // keeps its place (a member's new tap stays live, ahead of a backlog) and its backoff.
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET attempts = attempts + (COALESCE(?3, 0) <> 429),
                        next_attempt_steady_ms = ?2,
                        last_status = ?3, last_error_code = ?4, last_error = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                next_attempt,
                answer.status,
                answer.error_code,
                answer.message
            ])?;
            Ok(())
        })
        .await
    }

    /// EGYM does not know the tag (yet): the event waits for a slow retry. `since` is kept from
    /// the first such answer.
    pub async fn mark_unknown_tag(
        &self,
        id: i64,
        next_attempt: SteadyMs,
        since: SteadyMs,
        answer: Answer,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET state = 'unknown_tag', attempts = attempts + 1,
                        unknown_since_steady_ms = COALESCE(unknown_since_steady_ms, ?3),
                        next_attempt_steady_ms = ?2, last_status = ?4, last_error_code = ?5,
                        last_error = ?6
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                next_attempt,
                since,
                answer.status,
                answer.error_code,
                answer.message
            ])?;
            Ok(())
        })
        .await
    }

    /// Notes a check-in's admission (granted, skipped, or refused after the member came in),
    /// before its check-in is posted: a retry never asks again.
    pub async fn mark_admission(
        &self,
        id: i64,
        admission: Admission,
        reason: Option<String>,
        first_admission: bool,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET admission = ?2, admission_reason = ?3, first_admission = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, admission.as_str(), reason, first_admission])?;
            Ok(())
        })
        .await
    }

    /// EGYM refused a fresh tap's admission: the check-in is never posted, and the event is
    /// finished, with EGYM's answer and its reason.
    pub async fn mark_refused(
        &self,
        id: i64,
        answer: Answer,
        reason: String,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.finish_rejected(id, answer, Some(reason), now_wall)
            .await
    }

    pub async fn mark_rejected(
        &self,
        id: i64,
        answer: Answer,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.finish_rejected(id, answer, None, now_wall).await
    }

    /// Finishes an event as rejected with EGYM's answer; with `refusal`, as a refused admission.
    async fn finish_rejected(
        &self,
        id: i64,
        answer: Answer,
        refusal: Option<String>,
        now_wall: WallMs,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET state = 'rejected', attempts = attempts + 1, last_status = ?2,
                        last_error_code = ?3, last_error = ?4, finished_at_ms = ?5,
                        admission = CASE WHEN ?6 IS NULL THEN admission ELSE 'refused' END,
                        admission_reason = COALESCE(?6, admission_reason)
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                answer.status,
                answer.error_code,
                answer.message,
                now_wall,
                refusal
            ])?;
            Ok(())
        })
        .await
    }

    /// Notes `anchor`, a trusted reading in boot `boot`, and places every held event whose time
    /// can now be known: exactly from its own boot's trusted reading, or approximately between
    /// bounds (see [`crate::clock::placement`]). A placed event is due at `anchor`'s steady time;
    /// a check-in placed gives its open visit its time. Returns what was placed.
    pub async fn place_held(
        &self,
        boot: i64,
        anchor: Anchor,
    ) -> Result<Vec<PlacedEvent>, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            super::boots::note(&tx, boot, anchor.steady, Some(anchor))?;
            let boots = super::boots::all(&tx)?;
            let held: Vec<(PlacedEvent, HeldTap)> = tx
                .prepare_cached(
                    "SELECT id, reader, tag, kind, boot, tapped_steady_ms
                     FROM events INDEXED BY events_held WHERE clock = 'untrusted' ORDER BY id",
                )?
                .query_map([], |row| {
                    let tapped_steady = row.get(5)?;
                    // A held event is always written with its boot: without one, the row was
                    // changed by hand or is damaged.
                    let boot = row.get::<_, Option<i64>>(4)?.ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            4,
                            rusqlite::types::Type::Null,
                            "a held event without its boot".into(),
                        )
                    })?;
                    let tap = HeldTap {
                        boot,
                        steady: tapped_steady,
                    };
                    let event = PlacedEvent {
                        id: row.get(0)?,
                        reader: row.get(1)?,
                        tag: row.get(2)?,
                        kind: row.get(3)?,
                        tapped_steady,
                        // Set below, once placed.
                        placed: Placed::Exact(WallMs::from_millis(0)),
                    };
                    Ok((event, tap))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut placed_events = Vec::new();
            for (mut event, tap) in held {
                let Some(placed) = placement::place(&tap, &boots) else {
                    continue;
                };
                event.placed = placed;
                let quality = match placed {
                    Placed::Exact(_) => TimeQuality::Restamped,
                    Placed::Approximate { .. } => TimeQuality::Approximate,
                };
                tx.prepare_cached(
                    "UPDATE events SET tapped_at_ms = ?2, clock = ?3, next_attempt_steady_ms = ?4
                     WHERE id = ?1",
                )?
                .execute(params![
                    event.id,
                    placed.at(),
                    quality.as_str(),
                    anchor.steady
                ])?;
                if event.kind == Kind::CheckIn {
                    tx.prepare_cached(
                        "UPDATE visits SET checked_in_at_ms = ?2
                         WHERE tag = ?1 AND inside = 1 AND checked_in_at_ms IS NULL
                           AND checked_in_steady_ms = ?3",
                    )?
                    .execute(params![
                        event.tag,
                        placed.at(),
                        event.tapped_steady
                    ])?;
                }
                placed_events.push(event);
            }
            tx.commit()?;
            Ok(placed_events)
        })
        .await
    }

    /// The open events of `tag` (pending delivery, unknown, or waiting behind an unknown one),
    /// oldest first: the taps that wait on the card.
    pub async fn open_events_of(&self, tag: String) -> Result<Vec<OpenEvent>, StoreError> {
        self.call(move |conn| {
            query_open(
                conn,
                "events_open_by_tag",
                &format!("{OPEN} AND tag = ?1"),
                params![tag, i64::MAX],
            )
        })
        .await
    }

    /// The card `tag` was just enrolled at EGYM: what the tag cache says of it (EGYM's "no
    /// member has it", under any `tagFormat`) is forgotten, and its unknown events are due at
    /// once, so the next attempt looks the card up anew. Due at once is due at the tap's own
    /// steady time, which is never later than now in any run of the service, with no need to
    /// know now. Returns how many open events the card has (those behind its head follow it).
    pub async fn card_enrolled(&self, tag: String) -> Result<usize, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached("DELETE FROM accounts WHERE tag = ?1")?
                .execute([&tag])?;
            tx.prepare_cached(&format!(
                "UPDATE events INDEXED BY events_open_by_tag
                 SET next_attempt_steady_ms = MIN(next_attempt_steady_ms, tapped_steady_ms)
                 WHERE {OPEN} AND tag = ?1 AND state = 'unknown_tag'"
            ))?
            .execute([&tag])?;
            let open: i64 = tx
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM events INDEXED BY events_open_by_tag
                     WHERE {OPEN} AND tag = ?1"
                ))?
                .query_row([&tag], |row| row.get(0))?;
            tx.commit()?;
            Ok(open.max(0) as usize)
        })
        .await
    }

    pub async fn event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT id, tag, kind, tapped_at_ms, clock, state, attempts, next_attempt_steady_ms,
                        account_id, last_status, last_error_code, last_error, admission,
                        admission_reason
                 FROM events WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(EventRow {
                    id: row.get(0)?,
                    tag: row.get(1)?,
                    kind: row.get(2)?,
                    tapped_at: row.get(3)?,
                    time: row.get(4)?,
                    state: row.get(5)?,
                    attempts: row.get(6)?,
                    next_attempt: row.get(7)?,
                    account_id: row.get(8)?,
                    last_status: row.get(9)?,
                    last_error_code: row.get(10)?,
                    last_error: row.get(11)?,
                    admission: row.get(12)?,
                    admission_reason: row.get(13)?,
                })
            })
            .optional()
        })
        .await
    }
}
