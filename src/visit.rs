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
use std::time::Duration;

use crate::clock::{SteadyMs, WallMs};
use crate::tag::RawId;

/// What kind of member a tap belongs to, as far as the door cares: a Wellpass
/// (corporate-fitness) member's check-in is admitted by EGYM before it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Wellpass,
    Other,
}

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

/// How long a member at the door waits for the answer to a tap: a tap still being checked after
/// this is answered "Checked in, will sync" on the screen, and a Wellpass refusal that comes
/// later finds the member already inside (the check-in is still sent). A rule of the desk, which
/// the screen and delivery's policy both follow.
pub const AT_THE_DOOR: Duration = Duration::from_secs(3);

/// What is known about one tag: whether its member is inside, since when, and when the member
/// last tapped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagState {
    pub inside: bool,
    /// Steady time of the last recorded event from a tap (automatic check-outs leave it alone):
    /// the repeat window counts from it, whatever the wall clock does.
    pub last_event: SteadyMs,
    /// When the open visit began, while the member is inside.
    pub checked_in: Option<CheckIn>,
}

/// When a visit began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckIn {
    pub steady: SteadyMs,
    /// The wall time, once known: `None` while the check-in is held for the clock.
    pub at: Option<WallMs>,
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

/// Decides what a presentation of a tag at steady time `tap` on a reader facing `direction`
/// means. `boot_start` is when the service first ran in this boot: a tag's
/// last event before it was made in an earlier boot, and is never repeated by this tap (steady
/// time does not count the time the box was off, so it cannot tell how long ago that was).
pub fn decide(
    state: Option<&TagState>,
    direction: Direction,
    tap: SteadyMs,
    repeat_window: Duration,
    boot_start: SteadyMs,
) -> Decision {
    if let Some(state) = state
        && state.last_event >= boot_start
    {
        let since_last_ms = tap.millis_since(state.last_event);
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

/// The tag's state once an event of `kind` from a tap at `tap` (its steady time, and its wall
/// time if known) has been recorded.
pub fn after_event(kind: Kind, tap: CheckIn) -> TagState {
    TagState {
        inside: kind == Kind::CheckIn,
        last_event: tap.steady,
        checked_in: (kind == Kind::CheckIn).then_some(tap),
    }
}

/// The tag's state once its visit was checked out automatically: the member is outside, and the
/// repeat window still counts from the member's own last tap.
pub fn after_auto_checkout(state: TagState) -> TagState {
    TagState {
        inside: false,
        checked_in: None,
        ..state
    }
}

/// The tag's state once EGYM refused the admission of the check-in that began its visit: the
/// member did not come in. The repeat window still counts from the tap.
pub fn after_refused_admission(state: TagState) -> TagState {
    after_auto_checkout(state)
}

/// What delivery learns about a visit the recorder decided, and tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Correction {
    /// EGYM refused the admission of the Wellpass check-in tapped at steady time
    /// `checked_in`: the member was turned away.
    NotAdmitted { tag: String, checked_in: SteadyMs },
}

/// Why a visit was checked out automatically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AutoReason {
    /// `auto-checkout-after` passed since the check-in.
    AfterDuration,
    /// `closing-time` came.
    ClosingTime,
}

impl AutoReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoReason::AfterDuration => "auto-checkout-after",
            AutoReason::ClosingTime => "closing-time",
        }
    }
}

/// When open visits are checked out without a tap.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoCheckoutPolicy {
    pub after: Option<Duration>,
    /// Local time of day (hour, minute).
    pub closing_time: Option<(u8, u8)>,
    /// The zone `closing_time` is in (the system's, in the service).
    pub time_zone: jiff::tz::TimeZone,
}

/// Whether an open visit is to be checked out now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCheckout {
    /// Now, stamped `at`.
    Due { at: WallMs, reason: AutoReason },
    /// Not yet; look again in this long (`None`: not before something else changes, such as
    /// the check-in's time becoming known).
    NotYet(Option<Duration>),
}

impl AutoCheckoutPolicy {
    /// The times a visit that began at `checked_in_at` would be checked out at, and why:
    /// check-in + `after`, and the first closing time after the check-in.
    pub fn stamps(&self, checked_in_at: WallMs) -> Vec<(WallMs, AutoReason)> {
        let after = self
            .after
            .map(|after| (checked_in_at + after, AutoReason::AfterDuration));
        let closing = self
            .closing_time
            .and_then(|time| next_local_time_after(checked_in_at, time, &self.time_zone))
            .map(|at| (at, AutoReason::ClosingTime));
        after.into_iter().chain(closing).collect()
    }

    /// The time a visit that began at `checked_in_at` is checked out at, and why: the earlier
    /// of check-in + `after` and the first closing time after the check-in.
    pub fn stamp(&self, checked_in_at: WallMs) -> Option<(WallMs, AutoReason)> {
        self.stamps(checked_in_at).into_iter().min()
    }

    /// Whether the visit that began at `checked_in` is due for its check-out at `now`.
    /// - `auto-checkout-after` counts steady time since the check-in: no step of the wall clock
    ///   brings it forward or holds it back.
    /// - `closing-time` follows the wall clock while its time is known, and otherwise the steady
    ///   time since the check-in.
    /// - A check-in whose wall time is not known yet (held for the clock) has nothing to stamp
    ///   a check-out with: it waits until it is placed.
    ///
    /// Of the policies that are due, the earliest stamp applies.
    pub fn check(&self, checked_in: CheckIn, now: &crate::clock::Now) -> AutoCheckout {
        let Some(checked_in_at) = checked_in.at else {
            return AutoCheckout::NotYet(None);
        };
        let mut due: Option<(WallMs, AutoReason)> = None;
        let mut wait: Option<Duration> = None;
        for (at, reason) in self.stamps(checked_in_at) {
            // The stamp's distance from the check-in, counted on from the check-in's own steady
            // time: how far ahead the stamp is, in steady time.
            let due_steady = checked_in.steady + at.since(checked_in_at);
            let left_ms = match reason {
                AutoReason::ClosingTime if now.wall_known() => at.millis_since(now.wall),
                _ => due_steady.millis_since(now.steady),
            };
            if left_ms <= 0 {
                due = Some(due.map_or((at, reason), |d| d.min((at, reason))));
            } else {
                let left = Duration::from_millis(left_ms as u64);
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
        }
        match due {
            Some((at, reason)) => AutoCheckout::Due { at, reason },
            None => AutoCheckout::NotYet(wait),
        }
    }
}

/// The first instant after `after` at which the wall clock in `zone` shows `hour:minute`.
/// On the day clocks go forward and the time does not exist, the instant the clock shows it
/// after the gap is meant (02:30 → 03:30); on the day they go back and it exists twice, the
/// first.
pub fn next_local_time_after(
    after: WallMs,
    (hour, minute): (u8, u8),
    zone: &jiff::tz::TimeZone,
) -> Option<WallMs> {
    let after = jiff::Timestamp::from_millisecond(after.as_millis()).ok()?;
    let mut date = after.to_zoned_datetime(zone.clone()).date();
    for _ in 0..3 {
        let candidate = date
            .at(hour as i8, minute as i8, 0, 0)
            .to_zoned_datetime(zone.clone())
            .ok()?;
        if candidate.timestamp() > after {
            return Some(WallMs::from_millis(candidate.timestamp().as_millisecond()));
        }
        date = date.tomorrow().ok()?;
    }
    None
}

/// Debounce for one reader: which reads start a new presentation.
#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    /// Steady time of each id's last read.
    last_read: HashMap<RawId, SteadyMs>,
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

    /// The reader says no card is there: whatever is presented next is a new presentation.
    pub fn forget_all(&mut self) {
        self.last_read.clear();
    }

    /// Notes a read of `id` at steady time `now`; true when it starts a new presentation.
    pub fn is_new_presentation(&mut self, id: &RawId, now: SteadyMs) -> bool {
        if self.last_read.len() >= DEBOUNCE_PRUNE_AT {
            let window = self.window;
            self.last_read.retain(|_, last| now.since(*last) < window);
        }
        let previous = self.last_read.insert(id.clone(), now);
        match previous {
            Some(last) => now.since(last) >= self.window,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(120);

    fn steady(ms: i64) -> SteadyMs {
        SteadyMs::from_millis(ms)
    }

    fn check(state: Option<(bool, i64)>, direction: Direction, tap_ms: i64, expected: Decision) {
        let state = state.map(|(inside, last_event)| TagState {
            inside,
            last_event: steady(last_event),
            checked_in: inside.then_some(CheckIn {
                steady: steady(last_event),
                at: Some(WallMs::from_millis(last_event)),
            }),
        });
        assert_eq!(
            decide(state.as_ref(), direction, steady(tap_ms), WINDOW, steady(0)),
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
        // The last event was in an earlier boot (steady time does not count the night the box
        // was off): never a repeat, however close steady time puts it.
        let evening = TagState {
            inside: false,
            last_event: steady(t - 30_000),
            checked_in: None,
        };
        assert_eq!(
            decide(
                Some(&evening),
                Toggle,
                steady(t),
                WINDOW,
                steady(t - 10_000)
            ),
            Record(CheckIn)
        );
        assert_eq!(
            decide(
                Some(&evening),
                Toggle,
                steady(t),
                WINDOW,
                steady(t - 60_000)
            ),
            IgnoreRepeat {
                since_last_ms: 30_000
            }
        );
    }

    #[test]
    fn state_after_an_event() {
        let tap = |ms| CheckIn {
            steady: steady(ms),
            at: Some(WallMs::from_millis(ms + 1_000)),
        };
        let checked_in = after_event(Kind::CheckIn, tap(5));
        assert_eq!(
            checked_in,
            TagState {
                inside: true,
                last_event: steady(5),
                checked_in: Some(tap(5))
            }
        );
        assert_eq!(
            after_event(Kind::CheckOut, tap(6)),
            TagState {
                inside: false,
                last_event: steady(6),
                checked_in: None
            }
        );
        // An automatic check-out ends the visit but not the repeat window of the last tap.
        assert_eq!(
            after_auto_checkout(checked_in),
            TagState {
                inside: false,
                last_event: steady(5),
                checked_in: None
            }
        );
        // After it, a tap (outside the window) is a new check-in on a toggle reader.
        let state = after_auto_checkout(checked_in);
        assert_eq!(
            decide(
                Some(&state),
                Direction::Toggle,
                steady(200_005),
                WINDOW,
                steady(0)
            ),
            Decision::Record(Kind::CheckIn)
        );
        // A check-out without a visit is still sent from an exit reader.
        assert_eq!(
            decide(
                Some(&state),
                Direction::Out,
                steady(200_005),
                WINDOW,
                steady(0)
            ),
            Decision::Record(Kind::CheckOut)
        );
        // A check-in on an entrance reader while inside starts a new visit.
        assert_eq!(
            decide(
                Some(&checked_in),
                Direction::In,
                steady(200_005),
                WINDOW,
                steady(0)
            ),
            Decision::Record(Kind::CheckIn)
        );
        assert_eq!(
            after_event(Kind::CheckIn, tap(200_005)).checked_in,
            Some(tap(200_005))
        );
    }

    /// Central European time, with its daylight-saving rules, without needing a zone database.
    fn berlin() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn ms(text: &str) -> WallMs {
        WallMs::from_millis(text.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    }

    fn check_due(
        policy: &AutoCheckoutPolicy,
        checked_in: &str,
        expected: Option<(&str, AutoReason)>,
    ) {
        let got = policy.stamp(ms(checked_in));
        let expected = expected.map(|(at, reason)| (ms(at), reason));
        assert_eq!(got, expected, "checked in {checked_in}");
    }

    #[test]
    fn automatic_check_out_times() {
        use AutoReason::*;
        let none = AutoCheckoutPolicy {
            after: None,
            closing_time: None,
            time_zone: berlin(),
        };
        check_due(&none, "2026-11-29T10:00:00Z", None);
        let after = AutoCheckoutPolicy {
            after: Some(Duration::from_secs(4 * 3600)),
            ..none.clone()
        };
        check_due(
            &after,
            "2026-11-29T10:00:00Z",
            Some(("2026-11-29T14:00:00Z", AfterDuration)),
        );
        // 23:30 local; in winter, Berlin is UTC+1.
        let closing = AutoCheckoutPolicy {
            closing_time: Some((23, 30)),
            ..none.clone()
        };
        check_due(
            &closing,
            "2026-11-29T10:00:00Z",
            Some(("2026-11-29T22:30:00Z", ClosingTime)),
        );
        // Checked in after closing time (late staff): the next day's closing.
        check_due(
            &closing,
            "2026-11-29T22:45:00Z",
            Some(("2026-11-30T22:30:00Z", ClosingTime)),
        );
        // In summer, UTC+2.
        check_due(
            &closing,
            "2026-07-01T10:00:00Z",
            Some(("2026-07-01T21:30:00Z", ClosingTime)),
        );
        // Both: whichever comes first.
        let both = AutoCheckoutPolicy {
            after: Some(Duration::from_secs(4 * 3600)),
            closing_time: Some((23, 30)),
            ..none
        };
        check_due(
            &both,
            "2026-11-29T10:00:00Z",
            Some(("2026-11-29T14:00:00Z", AfterDuration)),
        );
        check_due(
            &both,
            "2026-11-29T20:00:00Z",
            Some(("2026-11-29T22:30:00Z", ClosingTime)),
        );
    }

    #[test]
    fn automatic_check_out_counts_steady_time_and_closing_time_follows_the_known_wall_time() {
        use crate::clock::{Now, WallTime};
        const H: i64 = 3_600_000;
        let at = |wall: WallMs, wall_is, steady_ms| Now {
            wall,
            wall_is,
            steady: steady(steady_ms),
        };
        let checked_in_at = ms("2026-11-29T10:00:00Z");
        let checked_in = CheckIn {
            steady: steady(50 * H),
            at: Some(checked_in_at),
        };
        let after = AutoCheckoutPolicy {
            after: Some(Duration::from_secs(4 * 3600)),
            closing_time: None,
            time_zone: berlin(),
        };
        // 3 h 59 m of steady time, the wall clock stepped two days forward: not yet.
        let day = 24 * H;
        assert_eq!(
            after.check(
                checked_in,
                &at(
                    checked_in_at.shifted(2 * day),
                    WallTime::Trusted,
                    50 * H + 4 * H - 60_000
                )
            ),
            AutoCheckout::NotYet(Some(Duration::from_secs(60)))
        );
        // 4 h, the wall clock stepped a day back: due, stamped check-in + 4 h.
        assert_eq!(
            after.check(
                checked_in,
                &at(checked_in_at.shifted(-day), WallTime::Trusted, 54 * H)
            ),
            AutoCheckout::Due {
                at: checked_in_at.shifted(4 * H),
                reason: AutoReason::AfterDuration
            }
        );
        // A check-in whose time is not known yet waits to be placed.
        let held = CheckIn {
            at: None,
            ..checked_in
        };
        let zero = WallMs::from_millis(0);
        assert_eq!(
            after.check(held, &at(zero, WallTime::Untrusted, 60 * H)),
            AutoCheckout::NotYet(None)
        );
        // 23:30 in Berlin is 22:30Z: 12 h 30 m after the check-in.
        let closing = AutoCheckoutPolicy {
            after: None,
            closing_time: Some((23, 30)),
            ..after.clone()
        };
        let closing_at = ms("2026-11-29T22:30:00Z");
        // With the wall time known, closing time follows it (a corrected clock included).
        assert_eq!(
            closing.check(checked_in, &at(closing_at, WallTime::Trusted, 50 * H + H)),
            AutoCheckout::Due {
                at: closing_at,
                reason: AutoReason::ClosingTime
            }
        );
        // Not known now: the steady time since the check-in tells.
        assert_eq!(
            closing.check(checked_in, &at(zero, WallTime::Untrusted, 50 * H + 12 * H)),
            AutoCheckout::NotYet(Some(Duration::from_secs(1800)))
        );
        assert_eq!(
            closing.check(
                checked_in,
                &at(zero, WallTime::Untrusted, 50 * H + 12 * H + H / 2)
            ),
            AutoCheckout::Due {
                at: closing_at,
                reason: AutoReason::ClosingTime
            }
        );
    }

    #[test]
    fn closing_time_on_the_daylight_saving_change_days() {
        let zone = berlin();
        let next = |after: &str, time| {
            next_local_time_after(ms(after), time, &zone).map(|t| {
                jiff::Timestamp::from_millisecond(t.as_millis())
                    .unwrap()
                    .to_string()
            })
        };
        // 2026-03-29: clocks go from 02:00 to 03:00. 23:30 exists (UTC+2 by then).
        assert_eq!(
            next("2026-03-29T08:00:00Z", (23, 30)).as_deref(),
            Some("2026-03-29T21:30:00Z")
        );
        // 02:30 does not exist that night: it is taken as 03:30 CEST, an hour after 01:30 UTC.
        assert_eq!(
            next("2026-03-28T23:00:00Z", (2, 30)).as_deref(),
            Some("2026-03-29T01:30:00Z")
        );
        // 2026-10-25: clocks go from 03:00 back to 02:00. 23:30 is UTC+1 again.
        assert_eq!(
            next("2026-10-25T08:00:00Z", (23, 30)).as_deref(),
            Some("2026-10-25T22:30:00Z")
        );
        // 02:30 happens twice that night: the first time (CEST) is meant.
        assert_eq!(
            next("2026-10-24T22:00:00Z", (2, 30)).as_deref(),
            Some("2026-10-25T00:30:00Z")
        );
        // The day before each change keeps its own offset.
        assert_eq!(
            next("2026-03-28T08:00:00Z", (23, 30)).as_deref(),
            Some("2026-03-28T22:30:00Z")
        );
        assert_eq!(
            next("2026-10-24T08:00:00Z", (23, 30)).as_deref(),
            Some("2026-10-24T21:30:00Z")
        );
    }

    #[test]
    fn a_held_card_is_one_presentation() {
        let start = 86_400_000;
        let ms = |n: i64| steady(start + n);
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
        let start = 86_400_000;
        let mut debouncer = Debouncer::new(Duration::from_millis(100));
        for n in 0..1_000u32 {
            let id = RawId::new(n.to_be_bytes().to_vec());
            assert!(debouncer.is_new_presentation(&id, steady(start + i64::from(n))));
        }
        assert!(debouncer.last_read.len() <= DEBOUNCE_PRUNE_AT + 100);
        let recent = RawId::new(999u32.to_be_bytes().to_vec());
        assert!(!debouncer.is_new_presentation(&recent, steady(start + 1_000)));
    }
}
