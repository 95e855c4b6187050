//! The delivery attempts in flight, each holding its tag: no second attempt for a tag starts
//! while one is in flight, so each tag's events reach EGYM in order.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// Attempts in flight, by the tag each holds. A tag is held from its attempt's start until the
/// attempt ends, however it ends: one that panics (built with unwinding) or is aborted frees its
/// tag as one that returns does.
#[derive(Debug)]
pub(super) struct InFlight<T> {
    tasks: JoinSet<T>,
    tags: HashMap<Id, String>,
}

impl<T: Send + 'static> InFlight<T> {
    pub(super) fn new() -> InFlight<T> {
        InFlight {
            tasks: JoinSet::new(),
            tags: HashMap::new(),
        }
    }

    /// Starts `attempt`, which holds `tag` until it ends.
    pub(super) fn start(&mut self, tag: String, attempt: impl Future<Output = T> + Send + 'static) {
        let started = self.tasks.spawn(attempt);
        self.tags.insert(started.id(), tag);
    }

    /// Whether an attempt in flight holds `tag`.
    pub(super) fn holds(&self, tag: &str) -> bool {
        self.tags.values().any(|held| held == tag)
    }

    pub(super) fn len(&self) -> usize {
        self.tasks.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next attempt to end, with the tag it held (now free), or how it failed to return.
    pub(super) async fn next(&mut self) -> Option<(String, Result<T, JoinError>)> {
        let (id, result) = match self.tasks.join_next_with_id().await? {
            Ok((id, value)) => (id, Ok(value)),
            Err(e) => (e.id(), Err(e)),
        };
        let tag = self.tags.remove(&id).unwrap_or_default();
        Some((tag, result))
    }

    /// Aborts every attempt in flight (their events stay as they were) and frees their tags.
    pub(super) fn abort_all(&mut self) {
        self.tasks.abort_all();
        self.tags.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_attempt_that_panics_frees_its_tag() {
        let mut in_flight = InFlight::new();
        in_flight.start("0x0C000621A5".into(), async {
            panic!("an attempt that fails in the worst way");
        });
        assert!(in_flight.holds("0x0C000621A5"));
        let (tag, result) = in_flight.next().await.unwrap();
        assert_eq!(tag, "0x0C000621A5");
        assert!(result.unwrap_err().is_panic());
        assert!(!in_flight.holds("0x0C000621A5"), "the tag is free again");
        assert!(in_flight.is_empty());
    }

    #[tokio::test]
    async fn an_attempt_that_returns_frees_its_tag() {
        let mut in_flight = InFlight::new();
        in_flight.start("0x01".into(), async { 7 });
        let (tag, result) = in_flight.next().await.unwrap();
        assert_eq!((tag.as_str(), result.unwrap()), ("0x01", 7));
        assert!(!in_flight.holds("0x01"));
    }
}
