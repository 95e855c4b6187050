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
//!   The tap is placed at the later bound: it is off by the time between the end of the tap's
//!   boot and the start of the next (a reboot: seconds), where the earlier bound is off by
//!   however long the box was off before the tap's boot (a night), and the wall clock of a box
//!   that booted with a stale time is off by as much. The earlier bound still holds: a tap is
//!   never placed before it.

use super::{EARLIEST_PLAUSIBLE, SteadyMs, WallMs};

/// A trusted wall reading and the steady time it was made at, in one boot: the one way between
/// wall time and steady time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub wall: WallMs,
    pub steady: SteadyMs,
}

impl Anchor {
    /// The wall time at `steady` in the same boot.
    pub fn wall_at(&self, steady: SteadyMs) -> WallMs {
        self.wall.shifted(steady.millis_since(self.steady))
    }

    /// The steady time at `wall`, counting the wall time between as steady time (for the
    /// reading's boot, or for a later one whose clock is trusted too).
    pub fn steady_at(&self, wall: WallMs) -> SteadyMs {
        self.steady.shifted(wall.millis_since(self.wall))
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
    pub start: SteadyMs,
    /// The last steady time the service was seen running in this boot.
    pub seen: SteadyMs,
    pub anchor: Option<Anchor>,
}

/// What the clock read when the service started, to register its boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootReading {
    pub boot_id: String,
    /// The kernel's boot clock, in milliseconds: steady time less the boot's offset.
    pub boottime_ms: i64,
    pub wall: WallMs,
    pub trusted: bool,
}

/// Where steady time stands at the start of a run: `(offset, steady now)`.
/// - In a boot seen before (a restart), steady time goes on exactly where the boot's clock is,
///   downtime included.
/// - In a new boot, it goes on from the last steady time the database knows of (`last_known`:
///   the last moment the previous boot was seen running, its last tap, its last lookup); when the
///   previous boot had a trusted reading and the clock is trusted now, from that reading plus the
///   wall time between them. Otherwise the time the box was off is not counted: steady time
///   undercounts a reboot, never overcounts it, and never goes back.
/// - With no boot recorded (a new database, or one from before steady time, whose times are
///   wall times), it starts at the wall time if the clock is trusted, and never before the last
///   time the database knows of.
pub fn steady_at_start(
    same_boot: Option<&BootRecord>,
    previous: Option<&BootRecord>,
    last_known: Option<SteadyMs>,
    reading: &BootReading,
) -> (i64, SteadyMs) {
    let at_boottime = |offset_ms: i64| SteadyMs::from_millis(reading.boottime_ms + offset_ms);
    if let Some(boot) = same_boot {
        return (boot.offset_ms, at_boottime(boot.offset_ms));
    }
    let known = last_known.max(previous.map(|p| p.seen));
    let by_wall = match previous {
        // Steady time may start anywhere: a new database starts it at the wall time, so that a
        // database written before steady time existed (its times were wall times) goes on
        // from them.
        None => reading
            .trusted
            .then_some(SteadyMs::from_millis(reading.wall.as_millis())),
        Some(previous) => previous
            .anchor
            .filter(|_| reading.trusted)
            .map(|anchor| anchor.steady_at(reading.wall)),
    };
    let steady = match (known, by_wall) {
        (Some(known), Some(by_wall)) => known.max(by_wall),
        (known, by_wall) => known
            .or(by_wall)
            .unwrap_or(SteadyMs::from_millis(reading.wall.as_millis())),
    };
    (steady.as_millis() - reading.boottime_ms, steady)
}

/// A held tap: the boot it was made in and its steady time. (What the untrusted wall clock read
/// is kept in its row, but places nothing.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldTap {
    pub boot: i64,
    pub steady: SteadyMs,
}

/// Where a held tap was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// From its own boot's anchor.
    Exact(WallMs),
    /// Between two bounds (see the module's note).
    Approximate {
        at: WallMs,
        not_before: WallMs,
        not_after: WallMs,
    },
}

impl Placed {
    pub fn at(self) -> WallMs {
        match self {
            Placed::Exact(at) | Placed::Approximate { at, .. } => at,
        }
    }
}

/// Places a held tap, given every boot recorded (in id order). `None` while it cannot be placed
/// yet: its boot has no anchor and no later boot has one either.
pub fn place(tap: &HeldTap, boots: &[BootRecord]) -> Option<Placed> {
    let own = boots.iter().position(|b| b.id == tap.boot)?;
    let boot = &boots[own];
    if let Some(anchor) = boot.anchor {
        return Some(Placed::Exact(anchor.wall_at(tap.steady)));
    }
    let since_start = tap.steady.since(boot.start);
    let until_seen = boot.seen.since(tap.steady);
    let last_trusted_before = boots[..own]
        .iter()
        .filter_map(|b| b.anchor.map(|a| a.wall))
        .max()
        .unwrap_or(EARLIEST_PLAUSIBLE);
    let not_before = last_trusted_before.max(EARLIEST_PLAUSIBLE) + since_start;
    let next_start = boots[own + 1..]
        .iter()
        .find_map(|b| b.anchor.map(|anchor| anchor.wall_at(b.start)))?;
    let not_after = next_start - until_seen;
    Some(Placed::Approximate {
        at: not_after.max(not_before),
        not_before,
        not_after,
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
            start: SteadyMs::from_millis(start),
            seen: SteadyMs::from_millis(seen),
            anchor: anchor.map(|(wall, steady)| Anchor {
                wall: WallMs::from_millis(wall),
                steady: SteadyMs::from_millis(steady),
            }),
        }
    }

    fn steady(ms: i64) -> SteadyMs {
        SteadyMs::from_millis(ms)
    }

    fn wall(ms: i64) -> WallMs {
        WallMs::from_millis(ms)
    }

    fn start(
        same: Option<&BootRecord>,
        previous: Option<&BootRecord>,
        known: Option<i64>,
        reading: &BootReading,
    ) -> (i64, i64) {
        let (offset, at) = steady_at_start(same, previous, known.map(steady), reading);
        (offset, at.as_millis())
    }

    #[test]
    fn steady_time_goes_on_across_restarts_and_reboots_and_never_goes_back() {
        let reading = |boottime_ms, wall_ms, trusted| BootReading {
            boot_id: "b".into(),
            boottime_ms,
            wall: wall(wall_ms),
            trusted,
        };
        // A new database: steady time starts at the wall time.
        assert_eq!(
            start(None, None, None, &reading(5_000, T, true)),
            (T - 5_000, T)
        );
        // A database from before steady time, first started with the clock at 1970: steady time
        // starts where its stored times end, so no stored retry is decades away.
        assert_eq!(
            start(None, None, Some(T - 60_000), &reading(5_000, 9_000, false)).1,
            T - 60_000
        );
        assert_eq!(
            start(None, None, Some(T - 60_000), &reading(5_000, T, true)).1,
            T
        );
        // A restart in the same boot: the same offset, so downtime counts.
        let same = BootRecord {
            offset_ms: 1_000_000,
            ..boot(3, 1_000_000, 2_000_000, None)
        };
        assert_eq!(
            start(Some(&same), None, None, &reading(50_000, 0, false)),
            (1_000_000, 1_050_000)
        );
        // A reboot with no trusted readings: on from the last moment the previous one was seen,
        // or from a later tap it made after it was last noted (a power cut).
        let previous = boot(3, 1_000_000, 2_000_000, Some((T, 1_500_000)));
        assert_eq!(
            start(None, Some(&previous), None, &reading(7_000, 0, false)),
            (2_000_000 - 7_000, 2_000_000)
        );
        assert_eq!(
            start(
                None,
                Some(&previous),
                Some(2_040_000),
                &reading(7_000, 0, false)
            )
            .1,
            2_040_000
        );
        // Trusted on both sides: the wall time between them counts.
        assert_eq!(
            start(
                None,
                Some(&previous),
                None,
                &reading(7_000, T + 3_600_000, true)
            ),
            (1_500_000 + 3_600_000 - 7_000, 5_100_000)
        );
        // A trusted clock that says less time passed than the run was seen: never backwards.
        assert_eq!(
            start(
                None,
                Some(&previous),
                None,
                &reading(7_000, T + 1_000, true)
            )
            .1,
            2_000_000
        );
    }

    #[test]
    fn a_tap_from_a_boot_with_a_trusted_reading_is_placed_exactly() {
        // The clock became trusted an hour after the tap, in the same boot.
        let boots = [boot(1, 0, 10_000_000, Some((T + 3_600_000, 3_700_000)))];
        let tap = HeldTap {
            boot: 1,
            steady: steady(100_000),
        };
        assert_eq!(place(&tap, &boots), Some(Placed::Exact(wall(T))));
    }

    #[test]
    fn a_tap_from_a_boot_never_trusted_is_placed_at_the_later_of_its_bounds() {
        // Boot 1 trusted until steady 1,000,000 (wall T); boot 2 never trusted, started at steady
        // 1,000,000 and seen until 1,600,000; boot 3 started at 1,600,000 and trusted at once,
        // its start at T + 2 h: the box was off for an hour and 50 minutes before boot 2.
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
        let tap = HeldTap {
            boot: 2,
            steady: steady(1_200_000),
        };
        // Not before the last trusted time + 200 s into boot 2; not after boot 3's start less the
        // 400 s boot 2 ran after the tap.
        assert_eq!(
            place(&tap, &boots),
            Some(Placed::Approximate {
                at: wall(T + 7_200_000 - 400_000),
                not_before: wall(T + 200_000),
                not_after: wall(T + 7_200_000 - 400_000),
            })
        );
        // Not placeable while no later boot has been trusted.
        assert_eq!(place(&tap, &boots[..2]), None);
        // Bounds that disagree (a trusted reading was itself wrong): never before the lower.
        let wrong = [
            boot(1, 0, 1_000_000, Some((T + 30 * DAY, 1_000_000))),
            boots[1].clone(),
            boots[2].clone(),
        ];
        assert_eq!(
            place(&tap, &wrong).map(Placed::at),
            Some(wall(T + 30 * DAY + 200_000))
        );
    }

    #[test]
    fn with_no_trusted_time_ever_recorded_the_lower_bound_is_2020() {
        let boots = [
            boot(1, 0, 600_000, None),
            boot(2, 600_000, 700_000, Some((T, 700_000))),
        ];
        let tap = HeldTap {
            boot: 1,
            steady: steady(60_000),
        };
        assert_eq!(
            place(&tap, &boots),
            Some(Placed::Approximate {
                at: wall(T - 100_000 - 540_000),
                not_before: EARLIEST_PLAUSIBLE.shifted(60_000),
                not_after: wall(T - 100_000 - 540_000),
            })
        );
    }
}
