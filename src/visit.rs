//! Check-in, check-out or ignore: the visit decisions (pure; time is passed in).
//!
//! Two filters stand between a card on a reader and an event in the outbox:
//! - **Debounce**, per reader and raw id: a card held on an RDM6300 repeats its frame several
//!   times a second. Reads of the same id closer together than `debounce` are one presentation;
//!   every read extends it, so a card left on the reader stays one presentation.
//! - **Repeat window**, per tag, across readers: a tap within `repeat-window` after the tag's
//!   last recorded event is ignored (and logged as such), so a member tapping twice by accident
//!   does not check in and straight out again.
//!
//! What survives both is decided by the reader's direction and whether the member is inside.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::tag::RawId;

/// What a reader at a door means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Every tap is a check-in (an entrance-only reader).
    In,
    /// Every tap is a check-out (an exit-only reader).
    Out,
    /// Check-in when the member is outside, check-out when inside.
    Toggle,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Toggle => "toggle",
        }
    }
}

/// The two kinds of visit event EGYM takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CheckIn,
    CheckOut,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CheckIn => "checkin",
            Kind::CheckOut => "checkout",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "checkin" => Some(Kind::CheckIn),
            "checkout" => Some(Kind::CheckOut),
            _ => None,
        }
    }
}

/// What is known about one tag: whether its member is inside, and when its last event was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagState {
    pub inside: bool,
    /// Tap time of the last recorded event, in milliseconds since the Unix epoch.
    pub last_event_ms: i64,
}

/// The outcome of one presentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Record(Kind),
    /// Within the repeat window of the tag's last recorded event.
    IgnoreRepeat {
        since_last_ms: i64,
    },
}

/// Decides what a presentation of a tag at `tap_ms` on a reader facing `direction` means.
pub fn decide(
    state: Option<&TagState>,
    direction: Direction,
    tap_ms: i64,
    repeat_window: Duration,
) -> Decision {
    if let Some(state) = state {
        let since_last_ms = tap_ms - state.last_event_ms;
        // A clock stepped backwards gives a negative gap; only its size counts, so a small step
        // does not let a double tap through and a large one does not block the tag for hours.
        if since_last_ms.unsigned_abs() < repeat_window.as_millis() as u64 {
            return Decision::IgnoreRepeat { since_last_ms };
        }
    }
    let inside = state.is_some_and(|s| s.inside);
    let kind = match direction {
        Direction::In => Kind::CheckIn,
        Direction::Out => Kind::CheckOut,
        Direction::Toggle if inside => Kind::CheckOut,
        Direction::Toggle => Kind::CheckIn,
    };
    Decision::Record(kind)
}

/// The tag's state once an event of `kind` at `tap_ms` has been recorded.
pub fn after_event(kind: Kind, tap_ms: i64) -> TagState {
    TagState {
        inside: kind == Kind::CheckIn,
        last_event_ms: tap_ms,
    }
}

/// Debounce for one reader: which reads start a new presentation.
#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    last_read: HashMap<RawId, Instant>,
}

/// Above this many remembered ids, ids not read within the window are forgotten.
const DEBOUNCE_PRUNE_AT: usize = 256;

impl Debouncer {
    pub fn new(window: Duration) -> Self {
        Debouncer {
            window,
            last_read: HashMap::new(),
        }
    }

    /// Notes a read of `id` at `now`; true when it starts a new presentation.
    pub fn is_new_presentation(&mut self, id: &RawId, now: Instant) -> bool {
        if self.last_read.len() >= DEBOUNCE_PRUNE_AT {
            let window = self.window;
            self.last_read
                .retain(|_, last| now.saturating_duration_since(*last) < window);
        }
        let previous = self.last_read.insert(id.clone(), now);
        match previous {
            Some(last) => now.saturating_duration_since(last) >= self.window,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(120);

    fn check(state: Option<(bool, i64)>, direction: Direction, tap_ms: i64, expected: Decision) {
        let state = state.map(|(inside, last_event_ms)| TagState {
            inside,
            last_event_ms,
        });
        assert_eq!(
            decide(state.as_ref(), direction, tap_ms, WINDOW),
            expected,
            "state {state:?}, {direction:?}, tap at {tap_ms}"
        );
    }

    #[test]
    fn decisions_follow_direction_state_and_repeat_window() {
        use Decision::*;
        use Direction::*;
        use Kind::*;
        let t = 1_800_000_000_000;
        // A tag never seen.
        check(None, Toggle, t, Record(CheckIn));
        check(None, In, t, Record(CheckIn));
        check(None, Out, t, Record(CheckOut));
        // Inside, after the window.
        check(Some((true, t - 120_000)), Toggle, t, Record(CheckOut));
        check(Some((true, t - 3_600_000)), In, t, Record(CheckIn));
        check(Some((true, t - 3_600_000)), Out, t, Record(CheckOut));
        // Outside, after the window.
        check(Some((false, t - 600_000)), Toggle, t, Record(CheckIn));
        check(Some((false, t - 600_000)), Out, t, Record(CheckOut));
        // Within the window, whatever the direction.
        check(
            Some((true, t - 5_000)),
            Toggle,
            t,
            IgnoreRepeat {
                since_last_ms: 5_000,
            },
        );
        check(
            Some((false, t - 119_999)),
            In,
            t,
            IgnoreRepeat {
                since_last_ms: 119_999,
            },
        );
        check(Some((true, t)), Out, t, IgnoreRepeat { since_last_ms: 0 });
        // The clock stepped back a little: still a repeat; a lot: a new decision.
        check(
            Some((true, t + 1_000)),
            Toggle,
            t,
            IgnoreRepeat {
                since_last_ms: -1_000,
            },
        );
        check(Some((true, t + 7_200_000)), Toggle, t, Record(CheckOut));
    }

    #[test]
    fn state_after_an_event() {
        assert_eq!(
            after_event(Kind::CheckIn, 5),
            TagState {
                inside: true,
                last_event_ms: 5
            }
        );
        assert_eq!(
            after_event(Kind::CheckOut, 6),
            TagState {
                inside: false,
                last_event_ms: 6
            }
        );
    }

    #[test]
    fn a_held_card_is_one_presentation() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let card = RawId::new(vec![0x0C, 0x00, 0x06, 0x21, 0xA5]);
        let other = RawId::new(vec![0x01, 0x02, 0xB0, 0xA5, 0xFD]);
        let mut debouncer = Debouncer::new(Duration::from_millis(1500));
        // (time, id, new presentation?)
        let reads = [
            (0, &card, true),
            (100, &card, false),
            (1_400, &card, false),
            // Held for longer than the window in all: each read extends the presentation.
            (2_800, &card, false),
            (3_000, &other, true),
            // Lifted at 2.8 s, presented again 1.5 s later: a new presentation.
            (4_300, &card, true),
            (4_400, &other, false),
            (5_900, &other, true),
        ];
        for (at, id, expected) in reads {
            assert_eq!(
                debouncer.is_new_presentation(id, ms(at)),
                expected,
                "read at {at} ms"
            );
        }
    }

    #[test]
    fn debouncer_forgets_old_ids_but_not_recent_ones() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(Duration::from_millis(100));
        for n in 0..1_000u32 {
            let id = RawId::new(n.to_be_bytes().to_vec());
            assert!(
                debouncer.is_new_presentation(&id, start + Duration::from_millis(u64::from(n)))
            );
        }
        assert!(debouncer.last_read.len() <= DEBOUNCE_PRUNE_AT + 100);
        let recent = RawId::new(999u32.to_be_bytes().to_vec());
        assert!(!debouncer.is_new_presentation(&recent, start + Duration::from_millis(1_000)));
    }
}
