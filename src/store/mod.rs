//! SQLite: the events outbox, visit state, the tag → account cache, and the service's own
//! bookkeeping (readers, delivery, the clock's boots). All SQL lives here.
//!
//! # The outbox
//! Every tap that is not ignored becomes one row of `events`, committed (WAL,
//! `synchronous=FULL`) before anything says it was recorded. A row moves through these states:
//!
//! ```text
//! recorded ──► pending ──┬──► delivered
//!                 │      └──► rejected   (a permanent 4xx, or a Wellpass admission refused
//!                 │                       to a member at the door)
//!                 ▼
//!            unknown_tag ──┬──► delivered (once EGYM knows the tag)
//!                          └──► rejected  (when the unknown-tag window is over)
//! ```
//! A retry (408, 429, 5xx, transport) keeps the event in the state it is in, `pending` or
//! `unknown_tag`, and schedules its next attempt: `attempts+1` (not for a 429), next attempt
//! later. An `unknown_tag` event is asked about again on a slow schedule, and at once when its
//! card is enrolled from the box (`card_enrolled`: the cached "no member has it" is forgotten
//! with it); it never goes back to `pending`.
//! - `delivered`: EGYM answered 2xx to the check-in or check-out. Final; pruned after
//!   `keep-delivered`.
//! - `rejected`: EGYM said the request can never succeed (a permanent 4xx), or an unknown tag
//!   stayed unknown for the whole window. Final; status, `errorCode` and message are kept.
//! - `pending` and `unknown_tag` are *open*. Open events of one tag are delivered strictly in
//!   `id` order: only the oldest open event of a tag (its head) is ever claimed.
//! - A `pending` event behind an `unknown_tag` event of its tag waits for the card's enrolment
//!   (`behind_unknown`, kept by triggers): it is counted apart from the events pending delivery,
//!   and its age is no delivery delay. It is pending delivery again once the event ahead of it
//!   is delivered or rejected.
//!
//! Beside its state, each event records how its time was found (`clock`): `trusted`,
//! `untrusted` (the wall clock was not trusted at the tap: the event is held, and holds its tag's
//! later events behind it, until it is placed), `restamped` or `approximate` (placed; see
//! [`crate::clock::placement`]).
//!
//! A refused API key (401/403) changes no row: delivery as a whole pauses.
//!
//! At restart nothing needs repair: an event whose request was in flight when the process died
//! is still `pending` and is sent again (at least once). The retry schedule lives in the row
//! (`attempts`, `next_attempt_steady_ms`, in steady time), so a restart neither forgets a
//! backoff nor resets it, and no step of the wall clock moves it.
//!
//! # Threading
//! The connection lives on one dedicated thread, which also opens and migrates the database;
//! async callers send it closures and await the answer, so no SQLite call (and no fsync) ever
//! blocks a tokio worker thread. Taps to record go ahead of all other work on that thread, and
//! that thread, not SQLite, decides when the write-ahead log is checkpointed (`checkpoint`):
//! between jobs, never inside a tap's commit.

mod accounts;
mod boots;
mod checkpoint;
mod file;
mod outbox;
mod privacy;
pub mod schema;
mod service;
pub mod status;
mod visits;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::clock::{SteadyMs, WallMs, WallTime};
use crate::tag::TagFormat;
use crate::visit::{Kind, TagState};
use checkpoint::Log;

pub use accounts::CachedAccount;
pub use file::{
    DatabaseLock, LockError, check_path, database_files, held, holder, keep_private, lock_path,
};
pub use outbox::{Batch, PlacedEvent, Recorded};
pub use privacy::{
    AccountRow, EraseError, ExportData, ExportEvent, Holdings, PruneClass, Subject, VisitRow,
};

/// How an event's wall time was found (its `clock` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeQuality {
    /// The wall clock was trusted at the tap.
    Trusted,
    /// It was not: the event is held until its time is known.
    Untrusted,
    /// Placed from a trusted reading in the same boot: the time the member tapped.
    Restamped,
    /// Placed between bounds: its boot ended before the clock was trusted in it.
    Approximate,
}

impl TimeQuality {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeQuality::Trusted => "trusted",
            TimeQuality::Untrusted => "untrusted",
            TimeQuality::Restamped => "restamped",
            TimeQuality::Approximate => "approximate",
        }
    }

    fn parse(text: &str) -> Option<TimeQuality> {
        [
            TimeQuality::Trusted,
            TimeQuality::Untrusted,
            TimeQuality::Restamped,
            TimeQuality::Approximate,
        ]
        .into_iter()
        .find(|q| q.as_str() == text)
    }

    /// How a tap read at a moment whose wall time was `wall` is stored.
    pub fn of(wall: WallTime) -> TimeQuality {
        match wall {
            WallTime::Trusted => TimeQuality::Trusted,
            WallTime::FromAnchor => TimeQuality::Restamped,
            WallTime::Untrusted => TimeQuality::Untrusted,
        }
    }
}

/// Where an event is in the outbox (its `state` column; see the module's note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventState {
    Pending,
    UnknownTag,
    Delivered,
    Rejected,
}

impl EventState {
    pub const ALL: [EventState; 4] = [
        EventState::Pending,
        EventState::UnknownTag,
        EventState::Delivered,
        EventState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::UnknownTag => "unknown_tag",
            EventState::Delivered => "delivered",
            EventState::Rejected => "rejected",
        }
    }
}

impl rusqlite::types::FromSql for EventState {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        EventState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| unknown_value("state", text))
    }
}

/// What became of a check-in's Wellpass admission (its `admission` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// EGYM admitted the member when the tap was fresh.
    Admitted,
    /// Admitted later than `admission-window` after the tap (the box was offline).
    AdmittedLate,
    /// Refused when the tap was fresh: no check-in is posted; the event is finished.
    Refused,
    /// Refused after the member had come in: the check-in is still posted.
    RefusedLate,
    /// Too late for an admission under `late = "skip"`: posted without one.
    Skipped,
}

impl Admission {
    pub const ALL: [Admission; 5] = [
        Admission::Admitted,
        Admission::AdmittedLate,
        Admission::Refused,
        Admission::RefusedLate,
        Admission::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Admitted => "admitted",
            Admission::AdmittedLate => "admitted_late",
            Admission::Refused => "refused",
            Admission::RefusedLate => "refused_late",
            Admission::Skipped => "skipped",
        }
    }
}

impl rusqlite::types::FromSql for Admission {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Admission::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| unknown_value("admission", text))
    }
}

/// A new event, as the recorder hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub reader: String,
    /// Hex of the id as read, for the candidate renderings in logs.
    pub raw_id: String,
    /// The normalised EGYM rfid (`0x…`).
    pub tag: String,
    pub tag_format: Option<TagFormat>,
    pub kind: Kind,
    /// The tap's wall time (for an automatic check-out, the time it is stamped with); while the
    /// time is `Untrusted`, what the wall clock read.
    pub tapped_at: WallMs,
    pub tapped_steady: SteadyMs,
    /// The boot it was made in (see [`crate::clock::Boot`]).
    pub boot: i64,
    pub time: TimeQuality,
    /// A check-out made by `auto-checkout-after` or `closing-time`, not by a tap.
    pub automatic: bool,
}

/// A tag's visit state, and where and how the tag was last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visit {
    pub state: TagState,
    pub reader: String,
    pub raw_id: String,
    pub tag_format: Option<TagFormat>,
}

/// An open event handed to the delivery worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    pub id: i64,
    pub reader: String,
    pub raw_id: String,
    pub tag: String,
    pub tag_format: Option<TagFormat>,
    pub kind: Kind,
    pub tapped_at: WallMs,
    pub tapped_steady: SteadyMs,
    pub attempts: u32,
    /// Steady time of EGYM's first "no member has this tag", once it has said so.
    pub unknown_since: Option<SteadyMs>,
    /// Its Wellpass admission, once one was made (or skipped): never asked twice.
    pub admission: Option<Admission>,
}

/// What EGYM (or the network) answered, as kept on the row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub message: String,
}

/// One event as stored, for status and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub tag: String,
    pub kind: Kind,
    pub tapped_at: WallMs,
    pub time: TimeQuality,
    pub state: EventState,
    pub attempts: u32,
    pub next_attempt: SteadyMs,
    pub account_id: Option<String>,
    pub last_status: Option<u16>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub admission: Option<Admission>,
    pub admission_reason: Option<String>,
}

/// A change to what is known about a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderUpdate {
    pub name: String,
    /// Whether its device is open now, if that changed.
    pub connected: Option<bool>,
    /// When it last read a tag, if it did.
    pub last_read_at: Option<WallMs>,
}

/// Events by state; each event is counted once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventCounts {
    /// Pending delivery.
    pub pending: u64,
    /// Pending, but only behind an earlier event of the same tag that EGYM does not know: they
    /// wait for the card's enrolment (or for the unknown-tag window to end), not for delivery.
    /// (Absent from the answer of a service older than this field: none counted.)
    #[serde(default)]
    pub waiting_for_enrolment: u64,
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
    /// A row holds a value no version of gym-checkin writes: the database was changed by hand
    /// or is damaged. Nothing is guessed.
    Damaged(String),
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
            StoreError::Damaged(detail) => write!(f, "damaged row in the database: {detail}"),
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

/// A row's `kind`: a value gym-checkin never writes is an error, never taken for a check-in.
impl rusqlite::types::FromSql for Kind {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Kind::parse(text).ok_or_else(|| unknown_value("kind", text))
    }
}

impl rusqlite::types::FromSql for TimeQuality {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        TimeQuality::parse(text).ok_or_else(|| unknown_value("clock", text))
    }
}

/// A `tag_format` column: EGYM's name for the format (NULL, or in `accounts` the empty
/// text, for none).
impl rusqlite::types::FromSql for TagFormat {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        TagFormat::parse(text).ok_or_else(|| unknown_value("tag_format", text))
    }
}

impl rusqlite::types::ToSql for TagFormat {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// A time column: a NULL where gym-checkin always writes a time is damage, never 0.
fn time_column(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<i64> {
    match value {
        rusqlite::types::ValueRef::Null => Err(rusqlite::types::FromSqlError::Other(
            "NULL where gym-checkin always writes a time".into(),
        )),
        value => value.as_i64(),
    }
}

impl rusqlite::types::FromSql for WallMs {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        time_column(value).map(WallMs::from_millis)
    }
}

impl rusqlite::types::ToSql for WallMs {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_millis().into())
    }
}

impl rusqlite::types::FromSql for SteadyMs {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        time_column(value).map(SteadyMs::from_millis)
    }
}

impl rusqlite::types::ToSql for SteadyMs {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_millis().into())
    }
}

fn unknown_value(column: &str, value: &str) -> rusqlite::types::FromSqlError {
    rusqlite::types::FromSqlError::Other(
        format!("{column} {value:?}, a value gym-checkin never writes").into(),
    )
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Work for the database thread, in two queues: taps to record go before everything else, so a
/// member's tap never waits behind the delivery worker's bookkeeping.
#[derive(Default)]
struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
    /// An erasure or a prune could not empty the write-ahead log (a reader held part of it):
    /// the thread empties it once it is idle.
    truncate_wanted: std::sync::atomic::AtomicBool,
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
    /// How a caller waits for the database thread's answer.
    wait: Wait,
    /// The database's file, for reads on a connection of their own (see `privacy`).
    path: Arc<PathBuf>,
}

/// How a caller waits for the database thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// As any future: the service.
    Async,
    /// In `spawn_blocking`, which holds tokio's paused time still while it waits: a test on
    /// paused time would otherwise see the runtime idle while SQLite works, and jump to the
    /// next timer.
    Blocking,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

/// Open events (`pending` or `unknown_tag`), as the partial indexes spell it.
const OPEN: &str = "state IN ('pending', 'unknown_tag')";

impl Store {
    /// Starts the database thread, which opens (creating if needed), checks and migrates the
    /// database; returns once that is done.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::start(path, Wait::Async).await
    }

    /// As [`Store::open`], for tests on tokio's paused time: every call's wait for the database
    /// thread holds paused time still, so simulated time moves only when the service would be
    /// idle.
    pub async fn open_for_paused_time(path: &Path) -> Result<Store, StoreError> {
        Store::start(path, Wait::Blocking).await
    }

    async fn start(path: &Path, wait: Wait) -> Result<Store, StoreError> {
        let queue = Arc::new(Queue::default());
        let worker_queue = queue.clone();
        let (opened, open_result) = oneshot::channel();
        let file = path.to_path_buf();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut conn = match open_connection(&file) {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let mut log = Log::watch(&mut conn);
                while let Some(job) = worker_queue.next() {
                    job(&mut conn);
                    if log.wants_checkpoint(|| worker_queue.is_idle()) {
                        log.checkpoint(&conn);
                    }
                    if worker_queue
                        .truncate_wanted
                        .load(std::sync::atomic::Ordering::Relaxed)
                        && worker_queue.is_idle()
                        && checkpoint::truncate(&conn).unwrap_or(false)
                    {
                        worker_queue
                            .truncate_wanted
                            .store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot start its thread: {e}"),
            })?;
        let store = Store {
            sender: Arc::new(Sender(queue)),
            wait,
            path: Arc::new(path.to_path_buf()),
        };
        wait_for(wait, open_result)
            .await
            .ok_or(StoreError::Closed)??;
        Ok(store)
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
        wait_for(self.wait, answer)
            .await
            .ok_or(StoreError::Closed)?
            .map_err(|e| match e {
                rusqlite::Error::FromSqlConversionFailure(..) => StoreError::Damaged(e.to_string()),
                e => StoreError::Sqlite(e),
            })
    }

    /// Copies everything in the write-ahead log into the database file and empties the log, so
    /// the file alone holds all data (done at a clean stop).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.call(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
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

/// The database thread's answer; `None` if the thread is gone.
async fn wait_for<T: Send + 'static>(wait: Wait, answer: oneshot::Receiver<T>) -> Option<T> {
    match wait {
        Wait::Async => answer.await.ok(),
        Wait::Blocking => tokio::task::spawn_blocking(move || answer.blocking_recv().ok())
            .await
            .ok()
            .flatten(),
    }
}

/// How long a statement waits for another connection's lock (`status` reading the database,
/// say) before it fails.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    // Made (or kept) readable by the service's user alone before SQLite opens it: the -wal and
    // -shm SQLite then makes take the database's mode.
    keep_private(path).map_err(|detail| StoreError::Open {
        path: path.to_path_buf(),
        detail,
    })?;
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
    // secure_delete: a deleted row's bytes are overwritten with zeros, in its page and in the
    // pages freed, instead of being left in the file (see `privacy`).
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )
    .map_err(wrap)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
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
    if version > 0 && (version as usize) < schema::SECURE_DELETE_SINCE {
        privacy::rewrite_once(conn, path)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
