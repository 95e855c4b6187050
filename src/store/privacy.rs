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
//! Erased means gone from the file. SQLite leaves a deleted row's bytes in its page and in the
//! pages it frees, and the pages it rewrote in the write-ahead log, until they happen to be
//! written over. So every connection of the service deletes with `secure_delete` (the bytes are
//! overwritten with zeros), and after each prune round and each erasure the log is checkpointed
//! and truncated to nothing ([`checkpoint::truncate`]), without waiting for a reader: when one
//! holds it up, the database thread tries again as soon as it is idle. A database written by a
//! version that deleted without `secure_delete` is rewritten once (`VACUUM`) when it is
//! migrated.

use crate::clock::timer::Instant;
use std::path::Path;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
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
/// Finished events, as `events_finished_tag` spells them.
const FINISHED: &str = "state IN ('delivered', 'rejected')";

/// The subject's cards: the card itself; or the cards EGYM resolved to the member, from the
/// cache and from the events delivered for them.
fn cards_of(conn: &Connection, subject: &Subject) -> rusqlite::Result<Vec<String>> {
    let account = match subject {
        Subject::Tag(tag) => return Ok(vec![tag.clone()]),
        Subject::Account(account) => account,
    };
    let mut cards: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT tag FROM accounts WHERE account_id = ?1")?
        .query_map([account], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let delivered: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT tag FROM events INDEXED BY events_account WHERE account_id = ?1",
        )?
        .query_map([account], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    cards.extend(delivered);
    cards.sort();
    cards.dedup();
    Ok(cards)
}

fn count(conn: &Connection, sql: &str, value: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(sql)?
        .query_row([value], |row| row.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

/// What the database holds about `subject`, counted.
fn holdings(conn: &Connection, subject: &Subject) -> rusqlite::Result<Holdings> {
    let cards = cards_of(conn, subject)?;
    let mut held = Holdings::default();
    for card in &cards {
        let open = count(
            conn,
            &format!(
                "SELECT COUNT(*) FROM events INDEXED BY events_open_by_tag WHERE tag = ?1 AND {OPEN}"
            ),
            card,
        )?;
        let finished = count(
            conn,
            &format!(
                "SELECT COUNT(*) FROM events INDEXED BY events_finished_tag WHERE tag = ?1 AND {FINISHED}"
            ),
            card,
        )?;
        held.open += open;
        held.events += open + finished;
        held.visits += count(conn, "SELECT COUNT(*) FROM visits WHERE tag = ?1", card)?;
        held.accounts += count(conn, "SELECT COUNT(*) FROM accounts WHERE tag = ?1", card)?;
    }
    held.cards = cards;
    Ok(held)
}

/// Deletes everything the database holds about `subject`, in `tx`; returns what it deleted.
fn erase_in(tx: &rusqlite::Transaction<'_>, subject: &Subject) -> rusqlite::Result<Holdings> {
    let cards = cards_of(tx, subject)?;
    let mut erased = Holdings::default();
    let delete = |sql: &str, value: &str| -> rusqlite::Result<u64> {
        Ok(tx.prepare_cached(sql)?.execute([value])? as u64)
    };
    for card in &cards {
        let open = delete(
            &format!("DELETE FROM events INDEXED BY events_open_by_tag WHERE tag = ?1 AND {OPEN}"),
            card,
        )?;
        let finished = delete(
            &format!(
                "DELETE FROM events INDEXED BY events_finished_tag WHERE tag = ?1 AND {FINISHED}"
            ),
            card,
        )?;
        erased.open += open;
        erased.events += open + finished;
        erased.visits += delete("DELETE FROM visits WHERE tag = ?1", card)?;
        erased.accounts += delete("DELETE FROM accounts WHERE tag = ?1", card)?;
    }
    let mut said = cards.clone();
    if let Subject::Account(account) = subject {
        erased.accounts += delete("DELETE FROM accounts WHERE account_id = ?1", account)?;
        said.push(account.clone());
    }
    // The last delivery failure, kept for `status`, may quote the card or the account.
    for text in &said {
        tx.prepare_cached(
            "UPDATE delivery_state SET last_error = NULL, last_error_at_ms = NULL
             WHERE id = 1 AND instr(last_error, ?1) > 0",
        )?
        .execute([text])?;
    }
    erased.cards = cards;
    Ok(erased)
}

fn export_in(conn: &Connection, subject: &Subject) -> rusqlite::Result<ExportData> {
    let cards = cards_of(conn, subject)?;
    let mut data = ExportData::default();
    for card in &cards {
        for (index, states) in [
            ("events_open_by_tag", OPEN),
            ("events_finished_tag", FINISHED),
        ] {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT id, reader, raw_id, tag, tag_format, kind, tapped_at_ms,
                            recorded_at_ms, state, clock, automatic, attempts, account_id,
                            last_status, last_error_code, last_error, finished_at_ms, admission,
                            admission_reason, unknown_since_steady_ms IS NOT NULL
                     FROM events INDEXED BY {index} WHERE tag = ?1 AND {states}"
                ))?
                .query_map([card], |row| {
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
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            data.events.extend(rows);
        }
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
    }
    for card in &cards {
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
    data.events.sort_by_key(|e| e.id);
    data.cards = cards;
    Ok(data)
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
        self.call(move |conn| holdings(conn, &subject)).await
    }

    /// Erases everything the database holds about `subject` in one transaction: its events
    /// (those not yet delivered too, unless more of them are waiting than `open_confirmed`
    /// allows), its visit state and its cached lookups; then empties the write-ahead log.
    /// Returns what was erased.
    pub async fn erase(
        &self,
        subject: Subject,
        open_confirmed: Option<u64>,
    ) -> Result<Holdings, EraseError> {
        let queue = self.sender.0.clone();
        let erased = self
            .call(move |conn| {
                let tx = conn.transaction()?;
                let now = holdings(&tx, &subject)?;
                if open_confirmed.is_some_and(|confirmed| now.open > confirmed) {
                    return Ok(Err(now));
                }
                let erased = erase_in(&tx, &subject)?;
                tx.commit()?;
                empty_log(conn, &queue);
                Ok(Ok(erased))
            })
            .await?;
        erased.map_err(EraseError::Changed)
    }

    /// Everything the database holds about `subject`.
    pub async fn export(&self, subject: Subject) -> Result<ExportData, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            export_in(&tx, &subject)
        })
        .await
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
