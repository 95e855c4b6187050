//! Moments in the clock's two domains, as types: [`WallMs`] (the wall clock) and [`SteadyMs`]
//! (steady time). Arithmetic stays inside a domain: a moment plus or minus a [`Duration`] is a
//! moment of the same domain, and two moments of one domain give how far apart they are. Nothing
//! adds a wall time to a steady time; the one way across is a trusted reading of the clock
//! ([`super::Anchor::wall_at`]).

use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A duration in whole milliseconds, saturating (durations of this service are far below).
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

macro_rules! moment {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn from_millis(ms: i64) -> $name {
                $name(ms)
            }

            /// Its milliseconds: for a column, a JSON field or a log field.
            pub const fn as_millis(self) -> i64 {
                self.0
            }

            /// How long after `earlier` this is; zero if it is not after.
            pub fn since(self, earlier: $name) -> Duration {
                Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
            }

            /// How many milliseconds after `earlier` this is, negative if before.
            pub const fn millis_since(self, earlier: $name) -> i64 {
                self.0.saturating_sub(earlier.0)
            }

            /// This moment moved by `ms` milliseconds, either way.
            pub const fn shifted(self, ms: i64) -> $name {
                $name(self.0.saturating_add(ms))
            }
        }

        impl Add<Duration> for $name {
            type Output = $name;
            fn add(self, duration: Duration) -> $name {
                $name(self.0.saturating_add(millis(duration)))
            }
        }

        impl AddAssign<Duration> for $name {
            fn add_assign(&mut self, duration: Duration) {
                *self = *self + duration;
            }
        }

        impl Sub<Duration> for $name {
            type Output = $name;
            fn sub(self, duration: Duration) -> $name {
                $name(self.0.saturating_sub(millis(duration)))
            }
        }

        impl SubAssign<Duration> for $name {
            fn sub_assign(&mut self, duration: Duration) {
                *self = *self - duration;
            }
        }
    };
}

moment! {
    /// A moment by the wall clock: milliseconds since the Unix epoch. What EGYM is told a member
    /// tapped, and what people read; right only while the clock is trusted.
    WallMs
}

moment! {
    /// A moment in steady time: milliseconds that count real elapsed time, which no step of the
    /// wall clock moves, carried on across restarts (see [`super::placement`]). Retry schedules,
    /// windows and visit times are kept in it.
    SteadyMs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_move_by_durations_and_are_apart_by_durations() {
        let tap = SteadyMs::from_millis(10_000);
        let later = tap + Duration::from_secs(30);
        assert_eq!(later.as_millis(), 40_000);
        assert_eq!(later.since(tap), Duration::from_secs(30));
        assert_eq!(tap.since(later), Duration::ZERO, "never negative");
        assert_eq!(tap.millis_since(later), -30_000);
        assert_eq!(later - Duration::from_secs(30), tap);
        let stepped = WallMs::from_millis(1_000).shifted(-3_600_000);
        assert_eq!(stepped.as_millis(), -3_599_000);
    }
}
