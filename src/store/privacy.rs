//! Personal data: how long it is kept, erasure on request, and what the box holds about a card
//! or a member.
//!
//! - **Retention.** The pruner deletes finished events once their tap is older than their kind's
//!   retention ([`PruneClass`]), and cached lookups once they are too old to be trusted, in small
//!   batches found through indexes: a tap waits behind one batch at most. Visit state is the
//!   recorder's: it asks for the closed visits it no longer needs to be deleted
//!   ([`Store::forget_visits`]).
//! - **Erasure** ([`Store::erase`]): every event of a card or member (those not yet delivered
//!   included), its visit state and its cached lookups, in one transaction.
//! - **Export** ([`Store::export`]): everything the database holds about a card or member.
//!
//! A card's finished events have no index by card: one would be written all over the file at
//! every prune (cards come in any order), and pruning would cost many times what it does. So
//! erasure and export find a card's events by walking the events table, on a read-only
//! connection of their own beside the database thread, which taps never wait behind; the
//! erasure itself is then one short job of that thread, by row id.
//!
//! Erased means gone from the file. SQLite leaves a deleted row's bytes in its page and in the
//! pages it frees, and the pages it rewrote in the write-ahead log, until they happen to be
//! written over. So every connection of the service deletes with `secure_delete` (the bytes are
//! overwritten with zeros), and after each prune round and each erasure the log is checkpointed
//! and truncated to nothing ([`checkpoint::truncate`]), without waiting for a reader: when one
//! holds it up, the database thread tries again as soon as it is idle. A database written by a
//! version that deleted without `secure_delete` is rewritten once (`VACUUM`) when it is
//! migrated.

use crate::clock::timer::Instant;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Store, StoreError, checkpoint};
use crate::clock::{SteadyMs, WallMs};

/// Whose data: a card (its rfid, `0x` and uppercase hex, as EGYM knows it) or a member (the
/// account id EGYM gave for their cards).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Tag(String),
    Account(String),
}

impl Subject {
    /// A card, from its rfid as `status`, the staff page, an export and EGYM write it: hex, with
    /// or without `0x`, in either case (`0x0C000621A5`, `0c000621a5`).
    pub fn card(rendering: &str) -> Result<Subject, String> {
        let text = rendering.trim();
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if digits.is_empty()
            || !digits.len().is_multiple_of(2)
            || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(format!(
                "--tag {rendering:?} is not a card's rfid: give it in hex, whole bytes, as \
                 `gym-checkin status`, the staff page and EGYM show it (e.g. 0x0C000621A5)"
            ));
        }
        Ok(Subject::Tag(format!("0x{}", digits.to_ascii_uppercase())))
    }

    /// A member, by the account id EGYM gave (as an export shows it).
    pub fn account(id: &str) -> Result<Subject, String> {
        let id = id.trim();
        if id.is_empty() {
            return Err("--account must name an account id".into());
        }
        Ok(Subject::Account(id.to_string()))
    }

    /// "card 0x0C000621A5", "member 1234": for what a command prints, never for the log.
    pub fn describe(&self) -> String {
        match self {
            Subject::Tag(tag) => format!("card {tag}"),
            Subject::Account(account) => format!("member (account) {account}"),
        }
    }
}

/// What the database holds about a subject, counted (or what was erased of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// The subject's cards: the card itself, or the member's cards the box knows of.
    pub cards: Vec<String>,
    /// Events of every state.
    pub events: u64,
    /// Of them, events not yet delivered (pending or waiting on an unknown card): erased, they
    /// never reach EGYM.
    pub open: u64,
    /// Visit state rows (one per card).
    pub visits: u64,
    /// Cached lookups of the card at EGYM (one per card and tag format).
    pub accounts: u64,
}

impl Holdings {
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.visits == 0 && self.accounts == 0
    }
}

/// Why an erasure did not happen.
#[derive(Debug)]
pub enum EraseError {
    /// More events of the subject are waiting for delivery than were confirmed: taps came in
    /// since. Nothing was erased; here is what there is now.
    Changed(Holdings),
    Store(StoreError),
}

impl std::fmt::Display for EraseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EraseError::Changed(now) => write!(
                f,
                "nothing was erased: {} events are now waiting for delivery, more than were \
                 confirmed",
                now.open
            ),
            EraseError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EraseError {}

impl From<StoreError> for EraseError {
    fn from(e: StoreError) -> Self {
        EraseError::Store(e)
    }
}

/// The finished events a retention applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneClass {
    /// Delivered to EGYM.
    Delivered,
    /// Refused by EGYM (a permanent answer, or a refused Wellpass admission).
    Rejected,
    /// Given up as a card EGYM does not know, with the id as read (its renderings).
    Unknown,
}

impl PruneClass {
    pub const ALL: [PruneClass; 3] = [
        PruneClass::Delivered,
        PruneClass::Rejected,
        PruneClass::Unknown,
    ];

    /// The rows of the class; `?1` is the cutoff. Each repeats the condition of
    /// `events_finished_tapped` word for word: SQLite uses a partial index only for a query
    /// that says its condition.
    fn condition(self) -> &'static str {
        match self {
            PruneClass::Delivered => {
                "state IN ('delivered', 'rejected') AND state = 'delivered' AND tapped_at_ms < ?1"
            }
            PruneClass::Rejected => {
                "state IN ('delivered', 'rejected') AND state = 'rejected' AND tapped_at_ms < ?1
                 AND unknown_since_steady_ms IS NULL"
            }
            PruneClass::Unknown => {
                "state IN ('delivered', 'rejected') AND state = 'rejected' AND tapped_at_ms < ?1
                 AND unknown_since_steady_ms IS NOT NULL"
            }
        }
    }
}

/// One event as stored, for an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEvent {
    pub id: i64,
    pub reader: String,
    pub raw_id: String,
    pub tag: String,
    pub tag_format: Option<String>,
    pub kind: String,
    pub tapped_at: WallMs,
    pub recorded_at: WallMs,
    pub state: String,
    pub clock: String,
    pub automatic: bool,
    pub attempts: u32,
    pub account_id: Option<String>,
    pub last_status: Option<u16>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub finished_at: Option<WallMs>,
    pub admission: Option<String>,
    pub admission_reason: Option<String>,
    /// EGYM's `firstAdmission`: the member's first Wellpass visit.
    pub first_admission: bool,
    /// EGYM answered that no member has the card.
    pub unknown_card: bool,
}

/// A card's visit state, for an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitRow {
    pub tag: String,
    pub inside: bool,
    pub last_event_steady: SteadyMs,
    pub checked_in_at: Option<WallMs>,
    pub reader: Option<String>,
    pub raw_id: Option<String>,
    pub tag_format: Option<String>,
}

/// A cached lookup, for an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub tag: String,
    pub tag_format: Option<String>,
    /// `None`: EGYM said no member has the card.
    pub account_id: Option<String>,
    /// EGYM's `membershipType`, kept for Wellpass members alone.
    pub membership_type: Option<String>,
    pub resolved_steady: SteadyMs,
}

/// Everything the database holds about a subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportData {
    pub cards: Vec<String>,
    pub events: Vec<ExportEvent>,
    pub visits: Vec<VisitRow>,
    pub accounts: Vec<AccountRow>,
}

/// Open events, as `events_open_by_tag` spells them.
const OPEN: &str = "state IN ('pending', 'unknown_tag')";

/// The subject's cards, and the ids of their events, each with whether it was open.
#[derive(Debug, Default)]
struct Found {
    cards: Vec<String>,
    events: Vec<(i64, bool)>,
}

/// `?1, ?2, …` for `n` values.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The subject's cards: the card itself; or the cards EGYM resolved to the member, from the
/// cache and from the events delivered for them. Walks the events table.
fn cards_of(conn: &Connection, subject: &Subject) -> rusqlite::Result<Vec<String>> {
    let account = match subject {
        Subject::Tag(tag) => return Ok(vec![tag.clone()]),
        Subject::Account(account) => account,
    };
    let mut cards: Vec<String> = conn
        .prepare(
            "SELECT tag FROM accounts WHERE account_id = ?1
             UNION SELECT tag FROM events WHERE account_id = ?1",
        )?
        .query_map([account], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    cards.sort();
    Ok(cards)
}

/// The subject's cards and events. Walks the events table (once for a card, twice for a
/// member): a card's finished events have no index by card.
fn find(conn: &Connection, subject: &Subject) -> rusqlite::Result<Found> {
    let cards = cards_of(conn, subject)?;
    if cards.is_empty() {
        return Ok(Found::default());
    }
    let events = conn
        .prepare(&format!(
            "SELECT id, {OPEN} FROM events WHERE tag IN ({}) ORDER BY id",
            placeholders(cards.len())
        ))?
        .query_map(rusqlite::params_from_iter(&cards), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Found { cards, events })
}

fn count(conn: &Connection, sql: &str, value: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(sql)?
        .query_row([value], |row| row.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

/// What is held about what `found` found, counted; `open` as given.
fn held(conn: &Connection, found: &Found, open: u64) -> rusqlite::Result<Holdings> {
    let mut held = Holdings {
        cards: found.cards.clone(),
        events: found.events.len() as u64,
        open,
        ..Holdings::default()
    };
    for card in &found.cards {
        held.visits += count(conn, "SELECT COUNT(*) FROM visits WHERE tag = ?1", card)?;
        held.accounts += count(conn, "SELECT COUNT(*) FROM accounts WHERE tag = ?1", card)?;
    }
    Ok(held)
}

/// Deletes everything the database holds about the subject `found` found, in `tx`, unless more
/// of its events are open now than `open_confirmed`; returns what it deleted, or (`Err`) what
/// there is now.
fn erase_in(
    tx: &rusqlite::Transaction<'_>,
    subject: &Subject,
    found: &Found,
    open_confirmed: Option<u64>,
) -> rusqlite::Result<Result<Holdings, Holdings>> {
    // Open now: also a tap recorded since `found` was read.
    let mut open_now = 0;
    for card in &found.cards {
        open_now += count(
            tx,
            &format!(
                "SELECT COUNT(*) FROM events INDEXED BY events_open_by_tag
                 WHERE tag = ?1 AND {OPEN}"
            ),
            card,
        )?;
    }
    if open_confirmed.is_some_and(|confirmed| open_now > confirmed) {
        return Ok(Err(held(tx, found, open_now)?));
    }
    let mut erased = held(tx, found, 0)?;
    erased.events = 0;
    for card in &found.cards {
        let open = tx
            .prepare_cached(&format!(
                "DELETE FROM events INDEXED BY events_open_by_tag WHERE tag = ?1 AND {OPEN}"
            ))?
            .execute([card])? as u64;
        erased.open += open;
        erased.events += open;
    }
    // The rest by id: those finished when they were found, or since.
    for (id, _) in &found.events {
        erased.events += tx
            .prepare_cached("DELETE FROM events WHERE id = ?1")?
            .execute([id])? as u64;
    }
    let mut quoted = found.cards.clone();
    for card in &found.cards {
        tx.prepare_cached("DELETE FROM visits WHERE tag = ?1")?
            .execute([card])?;
        tx.prepare_cached("DELETE FROM accounts WHERE tag = ?1")?
            .execute([card])?;
    }
    if let Subject::Account(account) = subject {
        erased.accounts += tx
            .prepare_cached("DELETE FROM accounts WHERE account_id = ?1")?
            .execute([account])? as u64;
        quoted.push(account.clone());
    }
    // The last delivery failure, kept for `status`, may quote the card or the account.
    for text in &quoted {
        tx.prepare_cached(
            "UPDATE delivery_state SET last_error = NULL, last_error_at_ms = NULL
             WHERE id = 1 AND instr(last_error, ?1) > 0",
        )?
        .execute([text])?;
    }
    Ok(Ok(erased))
}

fn export_in(conn: &Connection, subject: &Subject) -> rusqlite::Result<ExportData> {
    let cards = cards_of(conn, subject)?;
    let mut data = ExportData::default();
    if cards.is_empty() {
        return Ok(data);
    }
    data.events = conn
        .prepare(&format!(
            "SELECT id, reader, raw_id, tag, tag_format, kind, tapped_at_ms, recorded_at_ms,
                    state, clock, automatic, attempts, account_id, last_status,
                    last_error_code, last_error, finished_at_ms, admission, admission_reason,
                    unknown_since_steady_ms IS NOT NULL, first_admission
             FROM events WHERE tag IN ({}) ORDER BY id",
            placeholders(cards.len())
        ))?
        .query_map(rusqlite::params_from_iter(&cards), |row| {
            Ok(ExportEvent {
                id: row.get(0)?,
                reader: row.get(1)?,
                raw_id: row.get(2)?,
                tag: row.get(3)?,
                tag_format: row.get(4)?,
                kind: row.get(5)?,
                tapped_at: row.get(6)?,
                recorded_at: row.get(7)?,
                state: row.get(8)?,
                clock: row.get(9)?,
                automatic: row.get(10)?,
                attempts: row.get(11)?,
                account_id: row.get(12)?,
                last_status: row.get(13)?,
                last_error_code: row.get(14)?,
                last_error: row.get(15)?,
                finished_at: row.get(16)?,
                admission: row.get(17)?,
                admission_reason: row.get(18)?,
                unknown_card: row.get(19)?,
                first_admission: row.get(20)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    for card in &cards {
        let visit = conn
            .prepare_cached(
                "SELECT tag, inside, last_event_steady_ms, checked_in_at_ms, reader, raw_id,
                        tag_format
                 FROM visits WHERE tag = ?1",
            )?
            .query_row([card], |row| {
                Ok(VisitRow {
                    tag: row.get(0)?,
                    inside: row.get(1)?,
                    last_event_steady: row.get(2)?,
                    checked_in_at: row.get(3)?,
                    reader: row.get(4)?,
                    raw_id: row.get(5)?,
                    tag_format: row.get(6)?,
                })
            })
            .optional()?;
        data.visits.extend(visit);
        let rows = conn
            .prepare_cached(
                "SELECT tag, tag_format, account_id, membership_type, resolved_steady_ms
                 FROM accounts WHERE tag = ?1 ORDER BY tag_format",
            )?
            .query_map([card], |row| {
                Ok(AccountRow {
                    tag: row.get(0)?,
                    tag_format: Some(row.get::<_, String>(1)?).filter(|f| !f.is_empty()),
                    account_id: row.get(2)?,
                    membership_type: row.get(3)?,
                    resolved_steady: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        data.accounts.extend(rows);
    }
    data.cards = cards;
    Ok(data)
}

/// Runs `f` in one read transaction on a read-only connection of its own, in a blocking
/// thread: a read that walks the events table must not hold the database thread, where taps
/// wait. (WAL lets it read beside the service's writes.)
async fn read<R, F>(path: Arc<PathBuf>, f: F) -> Result<R, StoreError>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
{
    let open = path.clone();
    tokio::task::spawn_blocking(move || {
        let conn = Connection::open_with_flags(
            &*open,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open {
            path: open.to_path_buf(),
            detail: e.to_string(),
        })?;
        conn.busy_timeout(super::BUSY_TIMEOUT)?;
        let tx = conn.unchecked_transaction()?;
        f(&tx).map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(..) => StoreError::Damaged(e.to_string()),
            e => StoreError::Sqlite(e),
        })
    })
    .await
    .map_err(|_| StoreError::Closed)?
}

/// Rewrites the database once (`VACUUM`), then empties its log: what a version that deleted
/// without `secure_delete` left of deleted rows goes from the file. Run after migrating such a
/// database, before the service starts.
pub(super) fn rewrite_once(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let started = Instant::now();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let before = size(path);
    conn.execute_batch("VACUUM")?;
    if !checkpoint::truncate(conn)? {
        warn!(
            "cannot empty the database's write-ahead log after rewriting it: a reader holds it; it is emptied at the next prune"
        );
    }
    info!(
        database = %path.display(),
        size_before_kb = before / 1024,
        size_kb = size(path) / 1024,
        took_ms = started.elapsed().as_millis() as u64,
        "database rewritten once, so that what earlier versions deleted is gone from the file"
    );
    Ok(())
}

impl Store {
    /// What the database holds about `subject`, counted.
    pub async fn holdings(&self, subject: Subject) -> Result<Holdings, StoreError> {
        read(self.path.clone(), move |conn| {
            let found = find(conn, &subject)?;
            let open = found.events.iter().filter(|(_, open)| *open).count() as u64;
            held(conn, &found, open)
        })
        .await
    }

    /// Erases everything the database holds about `subject` in one transaction: its events
    /// (those not yet delivered too, unless more of them are waiting than `open_confirmed`
    /// allows), its visit state and its cached lookups; then empties the write-ahead log.
    /// Returns what was erased. Its events are found first by a read of their own, beside the
    /// database thread (see [`find`]); the erasure is then one short job of that thread.
    pub async fn erase(
        &self,
        subject: Subject,
        open_confirmed: Option<u64>,
    ) -> Result<Holdings, EraseError> {
        let found = {
            let subject = subject.clone();
            read(self.path.clone(), move |conn| find(conn, &subject)).await?
        };
        let queue = self.sender.0.clone();
        let erased = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let erased = erase_in(&tx, &subject, &found, open_confirmed)?;
                if erased.is_ok() {
                    tx.commit()?;
                    empty_log(conn, &queue);
                }
                Ok(erased)
            })
            .await?;
        erased.map_err(EraseError::Changed)
    }

    /// Everything the database holds about `subject`, read beside the database thread.
    pub async fn export(&self, subject: Subject) -> Result<ExportData, StoreError> {
        read(self.path.clone(), move |conn| export_in(conn, &subject)).await
    }

    /// Deletes up to `batch` events of `class` tapped before `before`; returns how many. Each
    /// batch is its own job, and starts the log over at once (see `checkpoint`), so a tap waits
    /// behind one batch at most.
    pub async fn prune_events(
        &self,
        class: PruneClass,
        before: WallMs,
        batch: usize,
    ) -> Result<usize, StoreError> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(&format!(
                    "DELETE FROM events WHERE id IN (
                         SELECT id FROM events INDEXED BY events_finished_tapped
                         WHERE {} LIMIT ?2)",
                    class.condition()
                ))?
                .execute(params![before, batch as i64])?;
            settle_after_batch(conn, n);
            Ok(n)
        })
        .await
    }

    /// Deletes up to `batch` cached lookups made before steady time `before`; returns how many.
    pub async fn prune_accounts(
        &self,
        before: SteadyMs,
        batch: usize,
    ) -> Result<usize, StoreError> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM accounts WHERE (tag, tag_format) IN (
                         SELECT tag, tag_format FROM accounts WHERE resolved_steady_ms < ?1
                         LIMIT ?2)",
                )?
                .execute(params![before, batch as i64])?;
            settle_after_batch(conn, n);
            Ok(n)
        })
        .await
    }

    /// Deletes the visit state of `tags` whose members are outside (the recorder no longer
    /// needs it); returns how many rows went.
    pub async fn forget_visits(&self, tags: Vec<String>) -> Result<usize, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut n = 0;
            for tag in &tags {
                n += tx
                    .prepare_cached("DELETE FROM visits WHERE tag = ?1 AND inside = 0")?
                    .execute([tag])?;
            }
            tx.commit()?;
            settle_after_batch(conn, n);
            Ok(n)
        })
        .await
    }

    /// Empties the write-ahead log after a prune round: no copy of a page it deleted from is
    /// left in it. Returns whether it was emptied now (else it is, once no reader holds it).
    pub async fn empty_log(&self) -> Result<bool, StoreError> {
        let queue = self.sender.0.clone();
        self.call(move |conn| Ok(empty_log(conn, &queue))).await
    }
}

/// After a batch: the log started over, while it holds just that batch.
fn settle_after_batch(conn: &Connection, deleted: usize) {
    if deleted > 0
        && let Err(e) = checkpoint::settle(conn)
    {
        warn!(error = %e, "cannot checkpoint the database's write-ahead log after pruning");
    }
}

/// Truncates the log now, or leaves it to the database thread to do once no reader holds it.
fn empty_log(conn: &Connection, queue: &super::Queue) -> bool {
    match checkpoint::truncate(conn) {
        Ok(true) => {
            queue.truncate_wanted.store(false, Ordering::Relaxed);
            true
        }
        Ok(false) => {
            queue.truncate_wanted.store(true, Ordering::Relaxed);
            false
        }
        Err(e) => {
            warn!(error = %e, "cannot empty the database's write-ahead log; tried again when the database is idle");
            queue.truncate_wanted.store(true, Ordering::Relaxed);
            false
        }
    }
}
