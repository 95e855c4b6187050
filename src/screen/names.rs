//! The first names of the members in the club, for the staff page (pure; times passed in).
//!
//! A name is learnt when a lookup for a member's check-in gives it, and kept in memory only:
//! never written to the database or the log. It goes when the member checks out (by a tap, or
//! automatically) or is refused a Wellpass admission, after [`KEPT_FOR`] at most, and with the
//! process. Until a lookup gives it (a
//! member whose account was cached when no member screen was open), or after it went, the staff
//! page shows the shortened tag instead.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::SteadyMs;
use crate::visit::Kind;

/// A name is kept at most this long after it was learnt, even for a member who never checks
/// out (without `auto-checkout-after`, a visit can stay open for days).
pub const KEPT_FOR: Duration = Duration::from_secs(12 * 3600);
/// At most this many names are kept; beyond it, the oldest goes.
pub const MOST_KEPT: usize = 2_000;

/// Tag → first name, for the members in the club.
#[derive(Default)]
pub struct Names {
    by_tag: HashMap<String, (String, SteadyMs)>,
}

/// Names are personal data: a debug print shows how many there are, never which.
impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("kept", &self.by_tag.len())
            .finish()
    }
}

impl Names {
    /// A lookup for a tap of `kind` gave `first_name`: kept for a check-in, dropped at a
    /// check-out. A blank name is not kept.
    pub fn learnt(&mut self, tag: &str, kind: Kind, first_name: &str, now: SteadyMs) {
        let first_name = first_name.trim();
        if kind == Kind::CheckOut || first_name.is_empty() {
            self.by_tag.remove(tag);
            return;
        }
        self.expire(now);
        if self.by_tag.len() >= MOST_KEPT
            && !self.by_tag.contains_key(tag)
            && let Some(oldest) = self
                .by_tag
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(tag, _)| tag.clone())
        {
            self.by_tag.remove(&oldest);
        }
        self.by_tag
            .insert(tag.to_string(), (first_name.to_string(), now));
    }

    /// The member of `tag` left (a check-out was recorded): their name goes.
    pub fn left(&mut self, tag: &str) {
        self.by_tag.remove(tag);
    }

    /// Drops the names kept longer than [`KEPT_FOR`].
    pub fn expire(&mut self, now: SteadyMs) {
        self.by_tag.retain(|_, (_, at)| now.since(*at) < KEPT_FOR);
    }

    /// The first name of `tag`'s member, if it is known.
    pub fn of(&self, tag: &str) -> Option<&str> {
        self.by_tag.get(tag).map(|(name, _)| name.as_str())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_tag.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> SteadyMs {
        SteadyMs::from_millis(ms)
    }

    #[test]
    fn a_name_is_kept_from_the_check_in_until_the_check_out() {
        let mut names = Names::default();
        names.learnt("0x01", Kind::CheckIn, " Alex ", at(0));
        assert_eq!(names.of("0x01"), Some("Alex"));
        // The greeting lookup of the check-out: the name goes.
        names.learnt("0x01", Kind::CheckOut, "Alex", at(1_000));
        assert_eq!(names.of("0x01"), None);
        names.learnt("0x02", Kind::CheckIn, "Billie", at(2_000));
        names.left("0x02");
        assert_eq!(names.of("0x02"), None);
        // A blank name is no name.
        names.learnt("0x03", Kind::CheckIn, "  ", at(3_000));
        assert!(names.is_empty());
        assert!(!format!("{names:?}").contains("Alex"));
    }

    #[test]
    fn a_name_is_kept_for_a_bounded_time_and_a_bounded_number_are_kept() {
        let mut names = Names::default();
        names.learnt("0x01", Kind::CheckIn, "Alex", at(0));
        let kept_ms = KEPT_FOR.as_millis() as i64;
        names.expire(at(kept_ms - 1));
        assert_eq!(names.of("0x01"), Some("Alex"));
        names.expire(at(kept_ms));
        assert_eq!(names.of("0x01"), None);

        for i in 0..MOST_KEPT + 5 {
            names.learnt(&format!("0x{i:04X}"), Kind::CheckIn, "Sam", at(i as i64));
        }
        assert_eq!(names.len(), MOST_KEPT);
        assert_eq!(names.of("0x0000"), None, "the oldest went first");
        assert_eq!(names.of(&format!("0x{:04X}", MOST_KEPT + 4)), Some("Sam"));
    }
}
