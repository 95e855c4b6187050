//! Whether the wall clock can be trusted: `[clock] trusted-when`.
//!
//! [`decide`] is pure: it takes what was read ([`Probes`]) and the rule, and says whether the
//! wall clock is right, which source decided, and why, in words for the journal and `status`.
//! [`probe`] reads the inputs through the clock's [`TimeSource`](super::TimeSource), the seam
//! tests drive.
//!
//! Under the shipped unit the kernel's own answer is out of reach: `ProtectClock=yes` makes even a
//! read-only `adjtimex` fail with EPERM. `synchronized` then asks systemd-timesyncd (Debian's and
//! Raspberry Pi OS's time service), whose flag file `/run/systemd/timesync/synchronized` exists
//! once it has set the clock. When neither can answer, the clock is trusted as it is, and that is
//! said, rather than hold every tap for ever.

use std::fmt;
use std::path::{Path, PathBuf};

use super::WallMs;

/// Nothing is ever sent to EGYM stamped before this (2020-01-01T00:00:00Z), and a wall clock
/// showing an earlier time is never trusted, whatever `trusted-when` says: it has not been set.
pub const EARLIEST_PLAUSIBLE: WallMs = WallMs::from_millis(1_577_836_800_000);

/// The kernel's estimate of its clock's error, in microseconds, past which a synchronised clock
/// is no longer trusted (the time service has lost its source for hours).
pub const MAX_ERROR_US: i64 = 16_000_000;

/// systemd-timesyncd's runtime directory, present while it runs.
pub const TIMESYNCD_DIR: &str = "/run/systemd/timesync";
/// The file systemd-timesyncd creates once it has synchronised the clock.
pub const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";

/// Time services whose presence can be seen from inside the unit, by a path they create while
/// they run: if none is there, a clock the kernel calls unsynchronised may never be set.
pub const TIME_SERVICES: &[(&str, &str)] = &[
    ("systemd-timesyncd", TIMESYNCD_DIR),
    ("chrony", "/run/chrony"),
    ("ntpd", "/run/ntpd.pid"),
    ("ntpsec", "/run/ntpsec"),
    ("openntpd", "/run/ntpd.sock"),
];

/// `[clock] trusted-when`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustRule {
    /// The kernel says a time service (NTP, PTP, GPS) has set the clock.
    Synchronized,
    /// Always: a box with a good battery-backed clock.
    Always,
    /// While this file exists.
    File(PathBuf),
}

impl TrustRule {
    /// Parses `synchronized`, `always` or `file:/absolute/path`.
    pub fn parse(text: &str) -> Result<TrustRule, String> {
        match text {
            "synchronized" => Ok(TrustRule::Synchronized),
            "always" => Ok(TrustRule::Always),
            _ => match text.strip_prefix("file:") {
                Some(path) if Path::new(path).is_absolute() => {
                    Ok(TrustRule::File(PathBuf::from(path)))
                }
                Some(path) => Err(format!(
                    "{path:?} must be an absolute path, e.g. \"file:{TIMESYNCD_FLAG}\""
                )),
                None => Err(format!(
                    "unknown value {text:?}, expected one of: synchronized, always, \"file:PATH\""
                )),
            },
        }
    }
}

impl fmt::Display for TrustRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustRule::Synchronized => f.write_str("synchronized"),
            TrustRule::Always => f.write_str("always"),
            TrustRule::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// What `adjtimex` (read only) says of the kernel's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSync {
    /// `STA_UNSYNC` is set: no time service has set the clock (or it has given up).
    pub unsynchronized: bool,
    /// The kernel's maximum error estimate, in microseconds.
    pub max_error_us: i64,
}

/// What was read to decide trust; only what the rule needs is filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probes {
    /// The kernel's answer, or the errno `adjtimex` failed with (EPERM under `ProtectClock=`).
    pub kernel: Option<Result<KernelSync, i32>>,
    /// Whether systemd-timesyncd's runtime directory exists, and its flag file.
    pub timesyncd_running: bool,
    pub timesyncd_synchronized: bool,
    /// For `file:PATH`: whether PATH exists.
    pub file_exists: Option<bool>,
}

/// Which source decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustSource {
    /// The kernel's NTP state (`adjtimex`).
    Kernel,
    /// systemd-timesyncd's flag file, the kernel's state being out of reach.
    Timesyncd,
    /// `trusted-when = "file:PATH"`.
    File,
    /// `trusted-when = "always"`.
    Always,
    /// Nothing could say: the clock is trusted as it is.
    Undetermined,
    /// The clock reads a time before 2020: it has not been set.
    Implausible,
}

impl TrustSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustSource::Kernel => "kernel",
            TrustSource::Timesyncd => "systemd-timesyncd",
            TrustSource::File => "file",
            TrustSource::Always => "always",
            TrustSource::Undetermined => "undetermined",
            TrustSource::Implausible => "implausible",
        }
    }
}

/// Whether the wall clock is trusted now, which source said so, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trust {
    pub trusted: bool,
    pub source: TrustSource,
    /// Why, in words for the journal and `status`.
    pub detail: String,
}

/// Reads what `rule` needs through `source`.
pub fn probe(source: &dyn super::TimeSource, rule: &TrustRule) -> Probes {
    let mut probes = Probes {
        kernel: None,
        timesyncd_running: false,
        timesyncd_synchronized: false,
        file_exists: None,
    };
    match rule {
        TrustRule::Always => {}
        TrustRule::File(path) => probes.file_exists = Some(source.path_exists(path)),
        TrustRule::Synchronized => {
            let kernel = source.kernel_sync();
            if kernel.is_err() {
                probes.timesyncd_running = source.path_exists(Path::new(TIMESYNCD_DIR));
                probes.timesyncd_synchronized = source.path_exists(Path::new(TIMESYNCD_FLAG));
            }
            probes.kernel = Some(kernel);
        }
    }
    probes
}

/// Decides whether the wall clock, now reading `wall`, is trusted.
pub fn decide(rule: &TrustRule, wall: WallMs, probes: &Probes) -> Trust {
    let trust = |trusted, source, detail: String| Trust {
        trusted,
        source,
        detail,
    };
    if wall < EARLIEST_PLAUSIBLE {
        return trust(
            false,
            TrustSource::Implausible,
            format!(
                "it reads {}, before 2020: it has not been set",
                super::rfc3339(wall)
            ),
        );
    }
    match rule {
        TrustRule::Always => trust(true, TrustSource::Always, "trusted-when = always".into()),
        TrustRule::File(path) => match probes.file_exists {
            Some(true) => trust(
                true,
                TrustSource::File,
                format!("{} exists", path.display()),
            ),
            _ => trust(
                false,
                TrustSource::File,
                format!("{} does not exist", path.display()),
            ),
        },
        TrustRule::Synchronized => match probes.kernel {
            Some(Ok(kernel)) if kernel.unsynchronized => trust(
                false,
                TrustSource::Kernel,
                "the kernel says no time service has set it (not synchronized)".into(),
            ),
            Some(Ok(kernel)) if kernel.max_error_us >= MAX_ERROR_US => trust(
                false,
                TrustSource::Kernel,
                format!(
                    "the kernel's maximum error is {:.1} s, 16 s or more: the time service has lost its source",
                    kernel.max_error_us as f64 / 1e6
                ),
            ),
            Some(Ok(kernel)) => trust(
                true,
                TrustSource::Kernel,
                format!(
                    "the kernel says a time service set it; maximum error {} ms",
                    kernel.max_error_us / 1000
                ),
            ),
            Some(Err(errno)) if probes.timesyncd_running => {
                let hidden = hidden_because(errno);
                if probes.timesyncd_synchronized {
                    trust(
                        true,
                        TrustSource::Timesyncd,
                        format!("systemd-timesyncd has synchronized it ({hidden})"),
                    )
                } else {
                    trust(
                        false,
                        TrustSource::Timesyncd,
                        format!("systemd-timesyncd has not synchronized it yet ({hidden})"),
                    )
                }
            }
            Some(Err(errno)) => trust(
                true,
                TrustSource::Undetermined,
                format!(
                    "cannot tell whether it is synchronized ({}, and systemd-timesyncd is not \
                     running): it is trusted as it is. Set [clock] trusted-when = \"file:PATH\" \
                     to a file your time service creates once it has set the clock",
                    hidden_because(errno)
                ),
            ),
            None => trust(
                true,
                TrustSource::Undetermined,
                "the kernel was not asked: the clock is trusted as it is".into(),
            ),
        },
    }
}

fn hidden_because(errno: i32) -> String {
    if errno == libc::EPERM {
        "the kernel cannot be asked: adjtimex is refused (EPERM), as under ProtectClock=".into()
    } else {
        format!(
            "adjtimex failed: {}",
            std::io::Error::from_raw_os_error(errno)
        )
    }
}

/// A warning for when the clock is not trusted and nothing will ever make it so: every tap would
/// be held. `services` are the time services found running (see [`TIME_SERVICES`]); `file_dir_exists`
/// whether the directory of a `file:PATH` rule exists.
pub fn never_trusted_warning(
    rule: &TrustRule,
    trust: &Trust,
    services: &[&str],
    file_dir_exists: bool,
) -> Option<String> {
    if trust.trusted {
        return None;
    }
    let held = "taps are recorded but held from EGYM until the clock is trusted";
    match (rule, trust.source) {
        (TrustRule::Always, TrustSource::Implausible) => Some(format!(
            "{}, and trusted-when = always trusts the clock only once it is set: {held}, which \
             may be never. Set the clock, or use trusted-when = synchronized with a time service",
            trust.detail
        )),
        (TrustRule::Synchronized, _) if services.is_empty() => Some(format!(
            "the clock is not synchronized and no time service seems to be running (looked for {}): \
             {held}, which may be never. Enable one (sudo systemctl enable --now systemd-timesyncd), \
             or set [clock] trusted-when = \"always\" if this box keeps good time by itself",
            TIME_SERVICES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (TrustRule::File(path), _) if !file_dir_exists => Some(format!(
            "trusted-when names {}, whose directory does not exist: {held}, which may be never. \
             Check the path",
            path.display()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_083_200_000;

    fn kernel(unsynchronized: bool, max_error_us: i64) -> Probes {
        Probes {
            kernel: Some(Ok(KernelSync {
                unsynchronized,
                max_error_us,
            })),
            timesyncd_running: false,
            timesyncd_synchronized: false,
            file_exists: None,
        }
    }

    fn refused(timesyncd_running: bool, timesyncd_synchronized: bool) -> Probes {
        Probes {
            kernel: Some(Err(libc::EPERM)),
            timesyncd_running,
            timesyncd_synchronized,
            file_exists: None,
        }
    }

    fn file(exists: bool) -> Probes {
        Probes {
            file_exists: Some(exists),
            ..kernel(false, 0)
        }
    }

    fn check(rule: &str, wall_ms: i64, probes: Probes, expected: (bool, TrustSource), says: &str) {
        let rule = TrustRule::parse(rule).unwrap();
        let trust = decide(&rule, WallMs::from_millis(wall_ms), &probes);
        assert_eq!(
            (trust.trusted, trust.source),
            expected,
            "{rule} {probes:?}: {}",
            trust.detail
        );
        assert!(
            trust.detail.contains(says),
            "{:?} lacks {says:?}",
            trust.detail
        );
    }

    #[test]
    fn trust_follows_the_rule_and_what_was_read() {
        use TrustSource::*;
        let s = "synchronized";
        check(
            s,
            NOW,
            kernel(false, 23_000),
            (true, Kernel),
            "maximum error 23 ms",
        );
        check(
            s,
            NOW,
            kernel(true, 16_000_000),
            (false, Kernel),
            "not synchronized",
        );
        check(s, NOW, kernel(false, 16_000_000), (false, Kernel), "16.0 s");
        check(
            s,
            NOW,
            kernel(false, 15_999_999),
            (true, Kernel),
            "maximum error 15999 ms",
        );
        check("always", NOW, kernel(true, 0), (true, Always), "always");
        let f = "file:/run/systemd/timesync/synchronized";
        check(f, NOW, file(true), (true, File), "exists");
        check(f, NOW, file(false), (false, File), "does not exist");
        // A clock before 2020 has not been set, whatever the rule says.
        check(
            "always",
            0,
            kernel(false, 0),
            (false, Implausible),
            "1970-01-01",
        );
        check(
            s,
            EARLIEST_PLAUSIBLE.as_millis() - 1,
            kernel(false, 0),
            (false, Implausible),
            "2019",
        );
        check(f, 1_000, file(true), (false, Implausible), "before 2020");
    }

    #[test]
    fn with_adjtimex_refused_synchronized_asks_timesyncd_and_else_trusts_the_clock() {
        use TrustSource::*;
        let s = "synchronized";
        check(
            s,
            NOW,
            refused(true, true),
            (true, Timesyncd),
            "ProtectClock",
        );
        check(
            s,
            NOW,
            refused(true, false),
            (false, Timesyncd),
            "not synchronized it yet",
        );
        check(
            s,
            NOW,
            refused(false, false),
            (true, Undetermined),
            "trusted as it is",
        );
        let other = Probes {
            kernel: Some(Err(libc::ENOSYS)),
            ..refused(false, false)
        };
        check(s, NOW, other, (true, Undetermined), "adjtimex failed");
    }

    #[test]
    fn rules_are_parsed_and_bad_ones_explained() {
        assert_eq!(
            TrustRule::parse("synchronized"),
            Ok(TrustRule::Synchronized)
        );
        assert_eq!(TrustRule::parse("always"), Ok(TrustRule::Always));
        assert_eq!(
            TrustRule::parse("file:/run/x"),
            Ok(TrustRule::File("/run/x".into()))
        );
        assert!(
            TrustRule::parse("file:run/x")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            TrustRule::parse("ntp")
                .unwrap_err()
                .contains("expected one of")
        );
        for rule in ["synchronized", "always", "file:/run/x"] {
            assert_eq!(TrustRule::parse(rule).unwrap().to_string(), rule);
        }
    }

    #[test]
    fn a_clock_that_can_never_be_trusted_is_said_loudly() {
        let untrusted = decide(
            &TrustRule::Synchronized,
            WallMs::from_millis(NOW),
            &kernel(true, 16_000_000),
        );
        let warning =
            never_trusted_warning(&TrustRule::Synchronized, &untrusted, &[], true).unwrap();
        assert!(warning.contains("no time service"), "{warning}");
        assert_eq!(
            never_trusted_warning(&TrustRule::Synchronized, &untrusted, &["chrony"], true),
            None,
            "a time service runs: it will set the clock"
        );
        let rule = TrustRule::parse("file:/nowhere/synced").unwrap();
        let missing = decide(&rule, WallMs::from_millis(NOW), &file(false));
        assert!(
            never_trusted_warning(&rule, &missing, &[], false)
                .unwrap()
                .contains("/nowhere/synced")
        );
        assert_eq!(never_trusted_warning(&rule, &missing, &[], true), None);
        let trusted = decide(
            &TrustRule::Always,
            WallMs::from_millis(NOW),
            &kernel(true, 0),
        );
        assert_eq!(
            never_trusted_warning(&TrustRule::Always, &trusted, &[], true),
            None
        );
        // A box at 1970 with no time service, whatever the rule.
        let unset = decide(&TrustRule::Always, WallMs::from_millis(0), &kernel(true, 0));
        assert!(
            never_trusted_warning(&TrustRule::Always, &unset, &[], true)
                .unwrap()
                .contains("1970-01-01")
        );
        let unset = decide(
            &TrustRule::Synchronized,
            WallMs::from_millis(0),
            &kernel(true, 0),
        );
        assert!(
            never_trusted_warning(&TrustRule::Synchronized, &unset, &[], true)
                .unwrap()
                .contains("no time service")
        );
    }
}
