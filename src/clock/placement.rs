//! Steady time across boots, and placing taps made while the wall clock was not trusted.
//!
//! Every run of the service registers its boot ([`BootRecord`]): where steady time stood when it
//! began, the last steady time it was seen running, and its latest trusted wall reading (its
//! *anchor*), each written down as it changes.
//!
//! A tap made while the clock was not trusted is stored with its boot and steady time, and held.
//! - If its boot has an anchor (the clock was trusted in that boot, before or after the tap), the
//!   tap is placed exactly: anchor wall time + the steady time between the two. EGYM gets the time
//!   the member tapped, within the accuracy of the time service.
//! - If its boot ended before the clock was ever trusted in it, the tap is placed
//!   *approximately*, between two bounds that hold whatever the wall clock said:
//!   - not before: the last trusted wall time recorded in an earlier boot (that boot ended before
//!     this one began) plus the steady time from this boot's start to the tap;
//!   - not after: the start of the next boot whose clock was trusted, less the steady time from
//!     the tap to the last moment the service was seen running in the tap's boot.
//!
//!   Within the bounds the tap's own wall reading is kept (a clock restarted from a saved time,
//!   as fake-hwclock does, runs a little behind); outside them, the nearer bound is taken.

use super::EARLIEST_PLAUSIBLE_MS;

/// A trusted wall reading and the steady time it was made at, in one boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub wall_ms: i64,
    pub steady_ms: i64,
}

impl Anchor {
    /// The wall time at `steady_ms` in the same boot.
    pub fn wall_at(&self, steady_ms: i64) -> i64 {
        self.wall_ms + (steady_ms - self.steady_ms)
    }
}

/// One boot (or, where the boot cannot be told apart, one run of the service), as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootRecord {
    /// The database's id for it; boots are numbered in the order they were first seen.
    pub id: i64,
    pub boot_id: String,
    /// Steady time = the kernel's boot time + this.
    pub offset_ms: i64,
    /// Steady time when the service first ran in this boot.
    pub start_steady_ms: i64,
    /// The last steady time the service was seen running in this boot.
    pub seen_steady_ms: i64,
    pub anchor: Option<Anchor>,
}

/// What the clock read when the service started, to register its boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootReading {
    pub boot_id: String,
    pub boottime_ms: i64,
    pub wall_ms: i64,
    pub trusted: bool,
}

/// Where steady time stands at the start of a run: `(offset, steady now)`.
/// - In a boot seen before (a restart), steady time goes on exactly where the boot's clock is,
///   downtime included.
/// - In a new boot, it goes on from the last moment the previous boot was seen running; when the
///   previous boot had a trusted reading and the clock is trusted now, plus the wall time between
///   them. Otherwise the time between the two runs is not counted: steady time undercounts a
///   reboot, never overcounts it.
/// - With no boot recorded at all (a new database, or one from before steady time), it starts at
///   the wall time, so that times stored by earlier versions keep their meaning.
pub fn steady_at_start(
    same_boot: Option<&BootRecord>,
    previous: Option<&BootRecord>,
    reading: &BootReading,
) -> (i64, i64) {
    if let Some(boot) = same_boot {
        return (boot.offset_ms, reading.boottime_ms + boot.offset_ms);
    }
    let steady = match previous {
        None => reading.wall_ms,
        Some(previous) => {
            let by_wall = previous
                .anchor
                .filter(|_| reading.trusted)
                .map(|anchor| anchor.steady_ms + (reading.wall_ms - anchor.wall_ms));
            by_wall.map_or(previous.seen_steady_ms, |s| s.max(previous.seen_steady_ms))
        }
    };
    (steady - reading.boottime_ms, steady)
}

/// A held tap: the boot it was made in, its steady time, and what the untrusted wall clock read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldTap {
    pub boot: i64,
    pub steady_ms: i64,
    pub wall_ms: i64,
}

/// Where a held tap was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// From its own boot's anchor.
    Exact(i64),
    /// Between two bounds (see the module's note).
    Approximate {
        at_ms: i64,
        not_before_ms: i64,
        not_after_ms: i64,
    },
}

impl Placed {
    pub fn at_ms(self) -> i64 {
        match self {
            Placed::Exact(at) | Placed::Approximate { at_ms: at, .. } => at,
        }
    }
}

/// Places a held tap, given every boot recorded (in id order). `None` while it cannot be placed
/// yet: its boot has no anchor and no later boot has one either.
pub fn place(tap: &HeldTap, boots: &[BootRecord]) -> Option<Placed> {
    let own = boots.iter().position(|b| b.id == tap.boot)?;
    let boot = &boots[own];
    if let Some(anchor) = boot.anchor {
        return Some(Placed::Exact(anchor.wall_at(tap.steady_ms)));
    }
    let since_start = (tap.steady_ms - boot.start_steady_ms).max(0);
    let until_seen = (boot.seen_steady_ms - tap.steady_ms).max(0);
    let last_trusted_before = boots[..own]
        .iter()
        .filter_map(|b| b.anchor.map(|a| a.wall_ms))
        .max()
        .unwrap_or(EARLIEST_PLAUSIBLE_MS);
    let not_before = last_trusted_before.max(EARLIEST_PLAUSIBLE_MS) + since_start;
    let next_start = boots[own + 1..]
        .iter()
        .find_map(|b| b.anchor.map(|anchor| anchor.wall_at(b.start_steady_ms)))?;
    let not_after = next_start - until_seen;
    let at = if not_before <= not_after {
        tap.wall_ms.clamp(not_before, not_after)
    } else {
        // The bounds disagree (a trusted reading was itself wrong): the later boot's start is
        // the one that keeps the tap before everything tapped since.
        not_after
    };
    Some(Placed::Approximate {
        at_ms: at,
        not_before_ms: not_before,
        not_after_ms: not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-30T00:00:00Z.
    const T: i64 = 1_796_083_200_000 - DAY;

    fn boot(id: i64, start: i64, seen: i64, anchor: Option<(i64, i64)>) -> BootRecord {
        BootRecord {
            id,
            boot_id: format!("boot-{id}"),
            offset_ms: 0,
            start_steady_ms: start,
            seen_steady_ms: seen,
            anchor: anchor.map(|(wall_ms, steady_ms)| Anchor { wall_ms, steady_ms }),
        }
    }

    #[test]
    fn steady_time_goes_on_across_restarts_and_reboots() {
        let reading = |boottime_ms, wall_ms, trusted| BootReading {
            boot_id: "b".into(),
            boottime_ms,
            wall_ms,
            trusted,
        };
        // A new database: steady time starts at the wall time.
        assert_eq!(
            steady_at_start(None, None, &reading(5_000, T, false)),
            (T - 5_000, T)
        );
        // A restart in the same boot: the same offset, so downtime counts.
        let same = BootRecord {
            offset_ms: 1_000_000,
            ..boot(3, 1_000_000, 2_000_000, None)
        };
        assert_eq!(
            steady_at_start(Some(&same), None, &reading(50_000, 0, false)),
            (1_000_000, 1_050_000)
        );
        // A reboot with no trusted readings: on from the last moment the previous one was seen.
        let previous = boot(3, 1_000_000, 2_000_000, Some((T, 1_500_000)));
        assert_eq!(
            steady_at_start(None, Some(&previous), &reading(7_000, 0, false)),
            (2_000_000 - 7_000, 2_000_000)
        );
        // Trusted on both sides: the wall time between them counts.
        assert_eq!(
            steady_at_start(None, Some(&previous), &reading(7_000, T + 3_600_000, true)),
            (1_500_000 + 3_600_000 - 7_000, 5_100_000)
        );
        // A trusted clock that says less time passed than the run was seen: never backwards.
        assert_eq!(
            steady_at_start(None, Some(&previous), &reading(7_000, T + 1_000, true)).1,
            2_000_000
        );
    }

    #[test]
    fn a_tap_from_a_boot_with_a_trusted_reading_is_placed_exactly() {
        // The clock became trusted an hour after the tap, in the same boot.
        let boots = [boot(1, 0, 10_000_000, Some((T + 3_600_000, 3_700_000)))];
        let tap = HeldTap {
            boot: 1,
            steady_ms: 100_000,
            wall_ms: 0,
        };
        assert_eq!(place(&tap, &boots), Some(Placed::Exact(T)));
    }

    #[test]
    fn a_tap_from_a_boot_never_trusted_is_placed_between_its_bounds() {
        // Boot 1 trusted until steady 1,000,000 (wall T); boot 2 never trusted, started at steady
        // 1,000,000 and seen until 1,600,000; boot 3 started at 1,600,000 and trusted at once,
        // its start at T + 2 h.
        let boots = [
            boot(1, 0, 1_000_000, Some((T, 1_000_000))),
            boot(2, 1_000_000, 1_600_000, None),
            boot(
                3,
                1_600_000,
                1_700_000,
                Some((T + 7_200_000 + 100_000, 1_700_000)),
            ),
        ];
        let tap = |wall_ms| HeldTap {
            boot: 2,
            steady_ms: 1_200_000,
            wall_ms,
        };
        let (not_before, not_after) = (T + 200_000, T + 7_200_000 - 400_000);
        let bounds = |at_ms| {
            Some(Placed::Approximate {
                at_ms,
                not_before_ms: not_before,
                not_after_ms: not_after,
            })
        };
        // A clock that restarted from a saved time, within the bounds: kept.
        assert_eq!(place(&tap(T + 600_000), &boots), bounds(T + 600_000));
        // From 1970: no earlier than the last trusted time plus the time since the boot began.
        assert_eq!(place(&tap(0), &boots), bounds(not_before));
        // From the future: no later than the next trusted boot's start allows.
        assert_eq!(place(&tap(T + 30 * DAY), &boots), bounds(not_after));
        // Not placeable while no later boot has been trusted.
        assert_eq!(place(&tap(0), &boots[..2]), None);
    }

    #[test]
    fn with_no_trusted_time_ever_recorded_the_lower_bound_is_2020() {
        let boots = [
            boot(1, 0, 600_000, None),
            boot(2, 600_000, 700_000, Some((T, 700_000))),
        ];
        let tap = HeldTap {
            boot: 1,
            steady_ms: 60_000,
            wall_ms: 0,
        };
        assert_eq!(
            place(&tap, &boots),
            Some(Placed::Approximate {
                at_ms: EARLIEST_PLAUSIBLE_MS + 60_000,
                not_before_ms: EARLIEST_PLAUSIBLE_MS + 60_000,
                not_after_ms: T - 100_000 - 540_000,
            })
        );
    }
}
