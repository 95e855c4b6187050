//! SQLite: the events outbox, visit state and the tag → account cache. All SQL lives here.
//!
//! # The outbox
//! Every tap that is not ignored becomes one row of `events`, committed (WAL,
//! `synchronous=FULL`) before anything says it was recorded. A row moves through these states:
//!
//! ```text
//!            recorded
//!               │
//!               ▼        retry (408, 429, 5xx, transport): attempts+1, next_attempt_at later
//!           pending ◄───────────────┐
//!     ┌────────┼──────────┐         │
//!     ▼        ▼          ▼         │
//! delivered  rejected  unknown_tag ─┘ (tried again on a slow schedule; rejected after the window)
//! ```
//! - `delivered`: EGYM answered 2xx to the check-in or check-out. Final; pruned after
//!   `keep-delivered`.
//! - `rejected`: EGYM said the request can never succeed (a permanent 4xx), or an unknown tag
//!   stayed unknown for the whole window. Final; status, `errorCode` and message are kept.
//! - `pending` and `unknown_tag` are *open*. Open events of one tag are delivered strictly in
//!   `id` order: only the oldest open event of a tag (its head) is ever claimed.
//!
//! A refused API key (401/403) changes no row: delivery as a whole pauses.
//!
//! At restart nothing needs repair: an event whose request was in flight when the process died
//! is still `pending` and is sent again (at least once). The retry schedule lives in the row
//! (`attempts`, `next_attempt_at_ms`), so a restart neither forgets a backoff nor resets it.
//!
//! # Threading
//! The connection lives on one dedicated thread; async callers send it closures and await the
//! answer, so no SQLite call (and no fsync) ever blocks a tokio worker thread. Taps to record go
//! ahead of all other work on that thread, and that thread, not SQLite, decides when the
//! write-ahead log is checkpointed (`checkpoint`): between jobs, never inside a tap's commit.

mod checkpoint;
mod schema;
pub mod status;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use tracing::warn;

use crate::visit::{Kind, TagState};
use checkpoint::Log;

/// A new event, as the recorder hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub reader: String,
    /// Hex of the id as read, for the candidate renderings in logs.
    pub raw_id: String,
    /// The normalised EGYM rfid (`0x…`).
    pub tag: String,
    pub tag_format: Option<String>,
    pub kind: Kind,
    /// The tap's time, or for an automatic check-out the time it is stamped with.
    pub tapped_at_ms: i64,
    /// A check-out made by `auto-checkout-after` or `closing-time`, not by a tap.
    pub automatic: bool,
}

/// A tag's visit state, and where and how the tag was last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visit {
    pub state: TagState,
    pub reader: String,
    pub raw_id: String,
    pub tag_format: Option<String>,
}

/// An open event handed to the delivery worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    pub id: i64,
    pub reader: String,
    pub raw_id: String,
    pub tag: String,
    pub tag_format: Option<String>,
    pub kind: Kind,
    pub tapped_at_ms: i64,
    pub attempts: u32,
    /// Set once EGYM has said it does not know the tag.
    pub unknown_since_ms: Option<i64>,
}

/// What EGYM (or the network) answered, as kept on the row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub message: String,
}

/// A cached lookup: `account_id` is `None` when EGYM said no member has the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedAccount {
    pub account_id: Option<String>,
    pub resolved_at_ms: i64,
}

/// One event as stored, for status and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub tag: String,
    pub kind: Kind,
    pub tapped_at_ms: i64,
    /// `pending`, `unknown_tag`, `delivered` or `rejected`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub account_id: Option<String>,
    pub last_status: Option<u16>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
}

/// A change to what is known about a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderUpdate {
    pub name: String,
    /// Whether its device is open now, if that changed.
    pub connected: Option<bool>,
    /// When it last read a tag, if it did.
    pub last_read_at_ms: Option<i64>,
}

/// Open events matching `condition` (on `events AS e`; `?2` is the limit), oldest first, found
/// through `index` (named, so the planner never falls back to sorting every open event).
fn query_open(
    conn: &Connection,
    index: &str,
    condition: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<OpenEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, reader, raw_id, tag, tag_format, kind, tapped_at_ms, attempts, unknown_since_ms
         FROM events AS e INDEXED BY {index} WHERE {condition} ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params, |row| {
        let kind: String = row.get(5)?;
        Ok(OpenEvent {
            id: row.get(0)?,
            reader: row.get(1)?,
            raw_id: row.get(2)?,
            tag: row.get(3)?,
            tag_format: row.get(4)?,
            kind: Kind::parse(&kind).unwrap_or(Kind::CheckIn),
            tapped_at_ms: row.get(6)?,
            attempts: row.get(7)?,
            unknown_since_ms: row.get(8)?,
        })
    })?;
    rows.collect()
}

fn update_reader(tx: &rusqlite::Transaction<'_>, update: &ReaderUpdate) -> rusqlite::Result<()> {
    let now = crate::clock::now_ms();
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
        now,
        update.last_read_at_ms
    ])?;
    Ok(())
}

/// Events by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub pending: u64,
    pub unknown_tag: u64,
    pub delivered: u64,
    pub rejected: u64,
}

#[derive(Debug)]
pub enum StoreError {
    /// The file cannot be opened or created.
    Open {
        path: PathBuf,
        detail: String,
    },
    /// The file is not a SQLite database, or is damaged. It is never touched.
    NotADatabase {
        path: PathBuf,
        detail: String,
    },
    /// The database was written by a newer gym-checkin.
    TooNew {
        path: PathBuf,
        version: i64,
        known: usize,
    },
    Sqlite(rusqlite::Error),
    /// The store thread is gone (the process is stopping).
    Closed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, detail } => {
                write!(f, "cannot open the database {}: {detail}", path.display())
            }
            StoreError::NotADatabase { path, detail } => write!(
                f,
                "{} is not a gym-checkin database or is damaged ({detail}); refusing to start. \
                 The file has not been changed: move it aside (keep it, it may hold undelivered \
                 visits) and start again to create a new one",
                path.display()
            ),
            StoreError::TooNew {
                path,
                version,
                known,
            } => write!(
                f,
                "{} has schema version {version}, newer than this gym-checkin knows ({known}); \
                 refusing to start. Install the newer gym-checkin again",
                path.display()
            ),
            StoreError::Sqlite(e) => write!(f, "database error: {e}"),
            StoreError::Closed => write!(f, "the database is closed"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Work for the database thread, in two queues: taps to record go before everything else, so a
/// member's tap never waits behind the delivery worker's bookkeeping.
#[derive(Default)]
struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

#[derive(Default)]
struct Jobs {
    taps: VecDeque<Job>,
    other: VecDeque<Job>,
    /// Every handle is gone: the thread ends once the queues are empty.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no job is waiting.
    fn is_idle(&self) -> bool {
        let jobs = self.lock();
        jobs.taps.is_empty() && jobs.other.is_empty()
    }

    fn push(&self, priority: Priority, job: Job) {
        let mut jobs = self.lock();
        match priority {
            Priority::Tap => jobs.taps.push_back(job),
            Priority::Other => jobs.other.push_back(job),
        }
        self.ready.notify_one();
    }

    /// The next job, taps first; `None` once closed and drained.
    fn next(&self) -> Option<Job> {
        let mut jobs = self.lock();
        loop {
            if let Some(job) = jobs.taps.pop_front().or_else(|| jobs.other.pop_front()) {
                return Some(job);
            }
            if jobs.closed {
                return None;
            }
            jobs = self.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The sending side; the last one dropped closes the queue.
struct Sender(Arc<Queue>);

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_one();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Priority {
    Tap,
    Other,
}

/// A handle to the database thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    sender: Arc<Sender>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

const OPEN: &str = "state IN ('pending', 'unknown_tag')";

impl Store {
    /// Opens (creating if needed) and migrates the database, then starts its thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = open_connection(path)?;
        let queue = Arc::new(Queue::default());
        let worker_queue = queue.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut log = Log::watch(&mut conn);
                while let Some(job) = worker_queue.next() {
                    job(&mut conn);
                    if log.wants_checkpoint(|| worker_queue.is_idle()) {
                        log.checkpoint(&conn);
                    }
                }
            })
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot start its thread: {e}"),
            })?;
        Ok(Store {
            sender: Arc::new(Sender(queue)),
        })
    }

    /// Runs `f` on the database thread.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.call_with(Priority::Other, f).await
    }

    async fn call_with<R, F>(&self, priority: Priority, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.sender.0.push(
            priority,
            Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }),
        );
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }

    /// Records one event and the tag's new visit state; returns the event id once committed.
    pub async fn record_event(&self, event: NewEvent, state: TagState) -> Result<i64, StoreError> {
        let ids = self
            .record_batch(vec![(event, state)], Vec::new(), |_, _| {})
            .await?;
        Ok(ids[0])
    }

    /// Records events, each with its tag's new visit state, and reader updates, all in one
    /// transaction (one fsync for a burst of taps); returns the event ids once committed.
    ///
    /// `committed` runs on the database thread the moment the transaction has committed, with
    /// the events and their ids: what must follow a commit at once (saying so in the log) does
    /// not wait for the caller to be woken.
    pub async fn record_batch<F>(
        &self,
        events: Vec<(NewEvent, TagState)>,
        readers: Vec<ReaderUpdate>,
        committed: F,
    ) -> Result<Vec<i64>, StoreError>
    where
        F: FnOnce(&[(NewEvent, TagState)], &[i64]) + Send + 'static,
    {
        self.call_with(Priority::Tap, move |conn| {
            let tx = conn.transaction()?;
            let mut ids = Vec::with_capacity(events.len());
            let now = crate::clock::now_ms();
            for (event, state) in &events {
                tx.prepare_cached(
                    "INSERT INTO events (reader, raw_id, tag, tag_format, kind, tapped_at_ms,
                                         recorded_at_ms, next_attempt_at_ms, automatic)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8)",
                )?
                .execute(params![
                    event.reader,
                    event.raw_id,
                    event.tag,
                    event.tag_format,
                    event.kind.as_str(),
                    event.tapped_at_ms,
                    now,
                    event.automatic,
                ])?;
                ids.push(tx.last_insert_rowid());
                tx.prepare_cached(
                    "INSERT INTO visits (tag, inside, last_event_at_ms, checked_in_at_ms, reader,
                                         raw_id, tag_format)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (tag) DO UPDATE
                     SET inside = ?2, last_event_at_ms = ?3, checked_in_at_ms = ?4, reader = ?5,
                         raw_id = ?6, tag_format = ?7",
                )?
                .execute(params![
                    event.tag,
                    state.inside,
                    state.last_event_ms,
                    state.checked_in_at_ms,
                    event.reader,
                    event.raw_id,
                    event.tag_format
                ])?;
            }
            for update in readers {
                update_reader(&tx, &update)?;
            }
            tx.commit()?;
            committed(&events, &ids);
            Ok(ids)
        })
        .await
    }

    /// Marks every configured reader disconnected (their tasks report when they connect) and
    /// forgets readers no longer configured.
    pub async fn reset_readers(&self, names: Vec<String>) -> Result<(), StoreError> {
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
            let now = crate::clock::now_ms();
            for name in names {
                tx.execute(
                    "INSERT INTO readers (name, connected, changed_at_ms) VALUES (?1, 0, ?2)
                     ON CONFLICT (name) DO UPDATE SET connected = 0, changed_at_ms = ?2",
                    params![name, now],
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// Records that delivery is paused (with EGYM's reason), or no longer paused.
    pub async fn set_delivery_paused(&self, reason: Option<String>) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE delivery_state
                 SET paused_since_ms = CASE WHEN ?1 IS NULL THEN NULL
                                            ELSE COALESCE(paused_since_ms, ?2) END,
                     pause_reason = ?1
                 WHERE id = 1",
            )?
            .execute(params![reason, crate::clock::now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Records the last delivery failure, for `status`.
    pub async fn set_last_error(&self, error: String) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE delivery_state SET last_error = ?1, last_error_at_ms = ?2 WHERE id = 1",
            )?
            .execute(params![error, crate::clock::now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Copies everything in the write-ahead log into the database file and empties the log, so
    /// the file alone holds all data (done at a clean stop).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.call(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
            .await
    }

    /// Every tag's visit state and where it was last read, for the recorder to start from.
    pub async fn visits(&self) -> Result<HashMap<String, Visit>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare(
                "SELECT tag, inside, last_event_at_ms, checked_in_at_ms, reader, raw_id, tag_format
                 FROM visits",
            )?;
            let rows = stmt.query_map([], |row| {
                let tag: String = row.get(0)?;
                let visit = Visit {
                    state: TagState {
                        inside: row.get(1)?,
                        last_event_ms: row.get(2)?,
                        checked_in_at_ms: row.get(3)?,
                    },
                    reader: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    raw_id: row
                        .get::<_, Option<String>>(5)?
                        .unwrap_or_else(|| tag.trim_start_matches("0x").to_string()),
                    tag_format: row.get(6)?,
                };
                Ok((tag, visit))
            })?;
            rows.collect()
        })
        .await
    }

    /// Up to `limit` events that are due at `now_ms` and are the oldest open event of their tag:
    /// first those tapped since `live_since_ms` (a member tapping now), then the rest; oldest
    /// first within each.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        live_since_ms: i64,
        limit: usize,
    ) -> Result<Vec<OpenEvent>, StoreError> {
        self.call(move |conn| {
            let head = format!(
                "{OPEN} AND next_attempt_at_ms <= ?1
                 AND NOT EXISTS (SELECT 1 FROM events AS older
                                 WHERE older.tag = e.tag AND older.{OPEN} AND older.id < e.id)"
            );
            let mut events = query_open(
                conn,
                "events_open_tapped",
                &format!("{head} AND tapped_at_ms >= ?3"),
                params![now_ms, limit as i64, live_since_ms],
            )?;
            if events.len() < limit {
                let rest =
                    query_open(conn, "events_open_id", &head, params![now_ms, limit as i64])?;
                let live: std::collections::HashSet<i64> = events.iter().map(|e| e.id).collect();
                events.extend(rest.into_iter().filter(|e| !live.contains(&e.id)));
                events.truncate(limit);
            }
            Ok(events)
        })
        .await
    }

    /// When the first head of a tag's queue falls due after `after_ms`, if one does.
    pub async fn next_due_after(&self, after_ms: i64) -> Result<Option<i64>, StoreError> {
        self.call(move |conn| {
            // Walks open events by due time and stops at the first head.
            conn.prepare_cached(&format!(
                "SELECT next_attempt_at_ms FROM events AS e INDEXED BY events_open_due
                 WHERE {OPEN} AND next_attempt_at_ms > ?1
                   AND NOT EXISTS (SELECT 1 FROM events AS older
                                   WHERE older.tag = e.tag AND older.{OPEN} AND older.id < e.id)
                 ORDER BY next_attempt_at_ms LIMIT 1"
            ))?
            .query_row([after_ms], |row| row.get(0))
            .optional()
        })
        .await
    }

    pub async fn mark_delivered(
        &self,
        id: i64,
        account_id: String,
        status: u16,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET state = 'delivered', attempts = attempts + 1, account_id = ?2,
                        last_status = ?3, last_error_code = NULL, last_error = NULL,
                        finished_at_ms = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, account_id, status, crate::clock::now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Keeps the event open and schedules its next attempt.
    pub async fn schedule_retry(
        &self,
        id: i64,
        next_attempt_at_ms: i64,
        answer: Answer,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET attempts = attempts + 1, next_attempt_at_ms = ?2,
                        last_status = ?3, last_error_code = ?4, last_error = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                next_attempt_at_ms,
                answer.status,
                answer.error_code,
                answer.message
            ])?;
            Ok(())
        })
        .await
    }

    /// EGYM does not know the tag (yet): the event waits for a slow retry.
    pub async fn mark_unknown_tag(
        &self,
        id: i64,
        next_attempt_at_ms: i64,
        answer: Answer,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET state = 'unknown_tag', attempts = attempts + 1,
                        unknown_since_ms = COALESCE(unknown_since_ms, ?3),
                        next_attempt_at_ms = ?2, last_status = ?4, last_error_code = ?5,
                        last_error = ?6
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                next_attempt_at_ms,
                crate::clock::now_ms(),
                answer.status,
                answer.error_code,
                answer.message
            ])?;
            Ok(())
        })
        .await
    }

    pub async fn mark_rejected(&self, id: i64, answer: Answer) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE events SET state = 'rejected', attempts = attempts + 1, last_status = ?2,
                        last_error_code = ?3, last_error = ?4, finished_at_ms = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                answer.status,
                answer.error_code,
                answer.message,
                crate::clock::now_ms()
            ])?;
            Ok(())
        })
        .await
    }

    pub async fn cached_account(
        &self,
        tag: String,
        tag_format: Option<String>,
    ) -> Result<Option<CachedAccount>, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT account_id, resolved_at_ms FROM accounts WHERE tag = ?1 AND tag_format = ?2",
            )?
            .query_row(params![tag, tag_format.unwrap_or_default()], |row| {
                Ok(CachedAccount { account_id: row.get(0)?, resolved_at_ms: row.get(1)? })
            })
            .optional()
        })
        .await
    }

    pub async fn cache_account(
        &self,
        tag: String,
        tag_format: Option<String>,
        account_id: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO accounts (tag, tag_format, account_id, resolved_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tag, tag_format) DO UPDATE SET account_id = ?3, resolved_at_ms = ?4",
            )?
            .execute(params![
                tag,
                tag_format.unwrap_or_default(),
                account_id,
                crate::clock::now_ms()
            ])?;
            Ok(())
        })
        .await
    }

    pub async fn forget_account(
        &self,
        tag: String,
        tag_format: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM accounts WHERE tag = ?1 AND tag_format = ?2")?
                .execute(params![tag, tag_format.unwrap_or_default()])?;
            Ok(())
        })
        .await
    }

    /// Deletes up to `batch` delivered events finished before `before_ms`; returns how many.
    /// Small batches, each checkpointed at once, keep each job short, so a tap never waits long
    /// behind a prune.
    pub async fn prune_delivered(&self, before_ms: i64, batch: usize) -> Result<usize, StoreError> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE state = 'delivered' AND finished_at_ms < ?1
                     LIMIT ?2)",
                )?
                .execute(params![before_ms, batch as i64])?;
            // Now, while the log holds just this batch: see `checkpoint`.
            if n > 0
                && let Err(e) = checkpoint::settle(conn)
            {
                warn!(error = %e, "cannot checkpoint the database's write-ahead log after pruning");
            }
            Ok(n)
        })
        .await
    }

    pub async fn event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT id, tag, kind, tapped_at_ms, state, attempts, next_attempt_at_ms,
                        account_id, last_status, last_error_code, last_error
                 FROM events WHERE id = ?1",
            )?
            .query_row([id], |row| {
                let kind: String = row.get(2)?;
                Ok(EventRow {
                    id: row.get(0)?,
                    tag: row.get(1)?,
                    kind: Kind::parse(&kind).unwrap_or(Kind::CheckIn),
                    tapped_at_ms: row.get(3)?,
                    state: row.get(4)?,
                    attempts: row.get(5)?,
                    next_attempt_at_ms: row.get(6)?,
                    account_id: row.get(7)?,
                    last_status: row.get(8)?,
                    last_error_code: row.get(9)?,
                    last_error: row.get(10)?,
                })
            })
            .optional()
        })
        .await
    }

    /// What `status` shows, read on the service's own connection.
    pub async fn status(&self) -> Result<status::StatusData, StoreError> {
        self.call(|conn| {
            let tx = conn.transaction()?;
            status::query(&tx)
        })
        .await
    }

    pub async fn event_counts(&self) -> Result<EventCounts, StoreError> {
        self.call(|conn| status::count_events(conn)).await
    }
}

/// Opens the file with the durability settings every connection needs, and migrates it.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let not_a_database = |e: &rusqlite::Error| {
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt)
        )
    };
    let wrap = |e: rusqlite::Error| {
        if not_a_database(&e) {
            StoreError::NotADatabase {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        } else {
            StoreError::Sqlite(e)
        }
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            detail: format!("the directory {} does not exist", dir.display()),
        });
    }
    let mut conn = Connection::open(path).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    // Reading the schema version is the first read of the file: a file that is not a database
    // fails here, before any write could touch it.
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(wrap)?;
    // A damaged file must not be written to: check its structure before anything else does.
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(wrap)?;
    if check != "ok" {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            detail: format!("integrity check: {check}"),
        });
    }
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(wrap)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite(rusqlite::Error::InvalidParameterName(
            format!("journal_mode is {journal_mode}, WAL could not be set"),
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    )
    .map_err(wrap)?;
    migrate(&mut conn, path, version)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path, version: i64) -> Result<(), StoreError> {
    let known = schema::MIGRATIONS.len();
    if version < 0 || version as usize > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            version,
            known,
        });
    }
    for (index, migration) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> (PathBuf, Store) {
        let dir =
            std::env::temp_dir().join(format!("gym-checkin-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.db");
        let store = Store::open(&path).unwrap();
        (path, store)
    }

    fn event(tag: &str, kind: Kind, tapped_at_ms: i64) -> NewEvent {
        NewEvent {
            reader: "entrance".into(),
            raw_id: "0C000621A5".into(),
            tag: tag.into(),
            tag_format: None,
            kind,
            tapped_at_ms,
            automatic: false,
        }
    }

    /// Whether the database thread has made its write that starts the log over.
    fn started_over(conn: &Connection) -> bool {
        conn.query_row("SELECT checkpointed_at_ms FROM maintenance", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .unwrap()
        .is_some()
    }

    #[tokio::test]
    async fn the_log_is_checkpointed_and_started_over_between_jobs() {
        let (path, store) = temp_db("log");
        // 600 commits of 10 events on new tags: several thousand pages through the log.
        for batch in 0..600 {
            let events = (0..10)
                .map(|i| {
                    let at = batch * 10 + i;
                    (
                        event(&format!("0x{at:010X}"), Kind::CheckIn, at),
                        crate::visit::after_event(Kind::CheckIn, at),
                    )
                })
                .collect();
            store
                .record_batch(events, Vec::new(), |_, _| {})
                .await
                .unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let wal_path = path.with_extension("db-wal");
        // The header's checkpoint sequence number counts the times the log started over.
        let restarts = || {
            let wal = std::fs::read(&wal_path).unwrap();
            u32::from_be_bytes(wal[12..16].try_into().unwrap())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while restarts() < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(restarts() >= 3, "the log started over {} times", restarts());
        // By the database thread's own write, not by the next commit that came along.
        assert!(
            started_over(&conn),
            "the log was never started over on purpose"
        );
        // Started over, the log is overwritten in place instead of growing with every commit.
        let frames = (std::fs::metadata(&wal_path).unwrap().len() as usize - 32) / (4096 + 24);
        assert!(
            frames < checkpoint::CHECKPOINT_PAGES as usize * 3 / 2,
            "the log has {frames} frames"
        );
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap();
        assert_eq!(events, 6000);
    }

    #[tokio::test]
    async fn only_the_oldest_open_event_of_a_tag_is_claimed() {
        let (_path, store) = temp_db("claim");
        let a1 = store
            .record_event(
                event("0xAA", Kind::CheckIn, 1),
                crate::visit::after_event(Kind::CheckIn, 1),
            )
            .await
            .unwrap();
        let b1 = store
            .record_event(
                event("0xBB", Kind::CheckIn, 2),
                crate::visit::after_event(Kind::CheckIn, 2),
            )
            .await
            .unwrap();
        let a2 = store
            .record_event(
                event("0xAA", Kind::CheckOut, 3),
                crate::visit::after_event(Kind::CheckOut, 3),
            )
            .await
            .unwrap();
        let ids = |events: Vec<OpenEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.claim_due(10, i64::MAX, 10).await.unwrap()),
            vec![a1, b1]
        );
        // The head of 0xAA waits for a retry: its later event must wait behind it.
        store
            .schedule_retry(a1, 100, Answer::default())
            .await
            .unwrap();
        assert_eq!(
            ids(store.claim_due(10, i64::MAX, 10).await.unwrap()),
            vec![b1]
        );
        assert_eq!(store.next_due_after(0).await.unwrap(), Some(2));
        assert_eq!(store.next_due_after(2).await.unwrap(), Some(100));
        store.mark_delivered(b1, "acc".into(), 204).await.unwrap();
        assert_eq!(store.next_due_after(10).await.unwrap(), Some(100));
        assert_eq!(
            ids(store.claim_due(100, i64::MAX, 10).await.unwrap()),
            vec![a1]
        );
        store.mark_delivered(a1, "acc".into(), 204).await.unwrap();
        assert_eq!(
            ids(store.claim_due(100, i64::MAX, 10).await.unwrap()),
            vec![a2]
        );
        store
            .mark_rejected(
                a2,
                Answer {
                    status: Some(400),
                    error_code: Some("bad".into()),
                    message: "no".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(store.next_due_after(0).await.unwrap(), None);
        let counts = store.event_counts().await.unwrap();
        assert_eq!(
            counts,
            EventCounts {
                pending: 0,
                unknown_tag: 0,
                delivered: 2,
                rejected: 1
            }
        );
    }

    #[tokio::test]
    async fn only_delivered_events_finished_before_the_cutoff_are_pruned_in_batches() {
        let (path, store) = temp_db("prune");
        let events = (0..30)
            .map(|i| {
                (
                    event(&format!("0x{i:010X}"), Kind::CheckIn, i),
                    crate::visit::after_event(Kind::CheckIn, i),
                )
            })
            .collect();
        let ids = store
            .record_batch(events, Vec::new(), |_, _| {})
            .await
            .unwrap();
        // 25 delivered, the first 20 of them long ago; 5 still pending.
        for &id in &ids[..25] {
            store.mark_delivered(id, "acc".into(), 204).await.unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE events SET finished_at_ms = 1000 WHERE id <= ?1",
            [ids[19]],
        )
        .unwrap();

        let mut pruned = Vec::new();
        loop {
            let n = store.prune_delivered(2000, 8).await.unwrap();
            pruned.push(n);
            if n == 0 {
                break;
            }
        }
        assert_eq!(pruned, vec![8, 8, 4, 0]);
        // Far too few pages for a checkpoint of their own: pruning started the log over.
        assert!(started_over(&conn), "pruning left its pages in the log");
        let left: Vec<(i64, String)> = conn
            .prepare("SELECT id, state FROM events ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let expected: Vec<(i64, String)> = ids[20..]
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, if i < 5 { "delivered" } else { "pending" }.to_string()))
            .collect();
        assert_eq!(left, expected);
    }

    #[tokio::test]
    async fn events_and_visit_state_survive_reopening() {
        let (path, store) = temp_db("reopen");
        store
            .record_event(
                event("0xAA", Kind::CheckIn, 1),
                crate::visit::after_event(Kind::CheckIn, 1),
            )
            .await
            .unwrap();
        store
            .cache_account("0xAA".into(), None, Some("acc-1".into()))
            .await
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let visits = store.visits().await.unwrap();
        assert_eq!(
            visits["0xAA"].state,
            TagState {
                inside: true,
                last_event_ms: 1,
                checked_in_at_ms: Some(1),
            }
        );
        assert_eq!(store.claim_due(5, i64::MAX, 10).await.unwrap().len(), 1);
        let cached = store
            .cached_account("0xAA".into(), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cached.account_id.as_deref(), Some("acc-1"));
        assert_eq!(
            store
                .cached_account("0xAA".into(), Some("MIFARE".into()))
                .await
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
        let dir =
            std::env::temp_dir().join(format!("gym-checkin-store-{}-notdb", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notes.db");
        let content = b"these are someone's notes, not a database\n".repeat(200);
        std::fs::write(&path, &content).unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::NotADatabase { .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("gym-checkin-store-{}-newer", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("newer.db");
        let _ = std::fs::remove_file(&path);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::TooNew { version: 99, .. }),
            "{error}"
        );
    }
}
