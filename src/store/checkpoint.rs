//! The write-ahead log, kept off the path of a tap.
//!
//! Left to itself, SQLite checkpoints inside whichever commit makes the log reach 1,000 pages, and
//! starts the log over inside the first commit after that, with an extra fsync for the log's
//! header. Either could be a tap's. Here the database thread checkpoints when it has nothing else
//! to do (or, were it never idle, once the log reaches 4,000 pages), and at once makes a small
//! write of its own that starts the log over. A tap's commit is then frames appended to a log of
//! settled size, and one fsync.
//!
//! A checkpoint's cost is the pages it copies. Taps and their delivery rewrite the same few pages
//! over and over, so copying a full log takes a couple of milliseconds. Pruning deletes runs of
//! pages never written again, so it settles the log after each of its small batches rather than
//! leave a thousand scattered pages for one long checkpoint a tap might wait behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use rusqlite::Connection;
use tracing::warn;

/// Pages in the write-ahead log that call for a checkpoint (SQLite's own default).
pub const CHECKPOINT_PAGES: i32 = 1000;
/// Pages past which the log is checkpointed even while work is waiting, so that a database
/// thread that is never idle cannot let it grow without end.
pub const OVERDUE_PAGES: i32 = 4 * CHECKPOINT_PAGES;

/// The log of the database thread's connection.
pub struct Log {
    /// Pages in the log after the last commit, as SQLite reports them.
    pages: Arc<AtomicI32>,
    /// Checkpoint when the log holds this many pages.
    threshold: i32,
}

impl Log {
    /// Takes checkpointing over from SQLite's automatic one.
    pub fn watch(conn: &mut Connection) -> Log {
        let pages = Arc::new(AtomicI32::new(0));
        let seen = pages.clone();
        let hooked = conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n: i32| {
            seen.store(n, Ordering::Relaxed);
            Ok(())
        }));
        if let Err(e) = hooked {
            // SQLite's automatic checkpoint stays in place: a slower tap now and then, no harm.
            warn!(error = %e, "cannot watch the database's write-ahead log");
        }
        Log {
            pages,
            threshold: CHECKPOINT_PAGES,
        }
    }

    /// Whether to checkpoint now, between two jobs; `idle` when no job is waiting.
    pub fn wants_checkpoint(&self, idle: impl FnOnce() -> bool) -> bool {
        let pages = self.pages.load(Ordering::Relaxed);
        pages >= self.threshold && (pages >= OVERDUE_PAGES || idle())
    }

    /// Checkpoints and starts the log over; when it cannot yet, tries again once the log has
    /// grown a little more.
    pub fn checkpoint(&mut self, conn: &Connection) {
        let settled = settle(conn);
        let pages = self.pages.load(Ordering::Relaxed);
        self.threshold = match settled {
            Ok(true) => CHECKPOINT_PAGES,
            Ok(false) => pages + CHECKPOINT_PAGES / 4,
            Err(e) => {
                warn!(error = %e, pages, "cannot checkpoint the database's write-ahead log; it grows until this succeeds");
                pages + CHECKPOINT_PAGES / 4
            }
        };
    }
}

/// Copies the log into the database and, if all of it went, starts the log over with a small
/// write. Not all of it goes while a reader (`gym-checkin status`) still needs part of the log:
/// then `false`.
pub fn settle(conn: &Connection) -> rusqlite::Result<bool> {
    let (busy, in_log, copied) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i32>(0)?,
            row.get::<_, i32>(1)?,
            row.get::<_, i32>(2)?,
        ))
    })?;
    if busy != 0 || copied < in_log {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE maintenance SET checkpointed_at_ms = ?1 WHERE id = 1")?
        .execute([crate::clock::wall_now()])?;
    Ok(true)
}

/// Empties the log: copies all of it into the database and truncates the file to nothing, so
/// that no earlier copy of a page (one a delete has since overwritten) is left in it; then
/// starts it over with the small write, as [`settle`] does. Never waits for a reader: `false`
/// when one still needs part of the log (the caller tries again later).
pub fn truncate(conn: &Connection) -> rusqlite::Result<bool> {
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i32>(0)
    });
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    if busy? != 0 {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE maintenance SET checkpointed_at_ms = ?1 WHERE id = 1")?
        .execute([crate::clock::wall_now()])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_at(pages: i32, threshold: i32) -> Log {
        Log {
            pages: Arc::new(AtomicI32::new(pages)),
            threshold,
        }
    }

    #[test]
    fn a_full_log_waits_for_a_moment_with_no_work_unless_it_is_overdue() {
        let idle = || true;
        let busy = || false;
        assert!(!log_at(999, CHECKPOINT_PAGES).wants_checkpoint(idle));
        assert!(log_at(1000, CHECKPOINT_PAGES).wants_checkpoint(idle));
        assert!(!log_at(3999, CHECKPOINT_PAGES).wants_checkpoint(busy));
        assert!(log_at(OVERDUE_PAGES, CHECKPOINT_PAGES).wants_checkpoint(busy));
        // After a checkpoint a reader held up, the next waits for the log to grow further.
        assert!(!log_at(1100, 1250).wants_checkpoint(idle));
        assert!(!log_at(OVERDUE_PAGES, OVERDUE_PAGES + 250).wants_checkpoint(busy));
    }
}
