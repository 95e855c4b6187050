//! Time: one clock, handed to every part that needs it.
//!
//! A front-desk box may have no battery-backed clock. It boots with the time of its last shutdown
//! (or 1970), gets the true time only when a time service reaches the network (hours later in an
//! outage, exactly when the outbox matters), and may then be stepped. So two times are kept apart:
//! - **Steady time** ([`Now::steady`], a [`SteadyMs`]) counts real elapsed time in milliseconds. It follows
//!   the kernel's `CLOCK_BOOTTIME`, which no step of the wall clock moves, and carries on across
//!   restarts (see [`placement::steady_at_start`]). Retry schedules, the unknown-tag window, the
//!   account cache's age, the repeat window and `auto-checkout-after` are counted in it.
//! - **Wall time** ([`Now::wall`], a [`WallMs`]), and whether it is right ([`trust`]): the time EGYM is told a member tapped,
//!   and the local time `closing-time` is read in. A tap made while the wall clock is not trusted
//!   is recorded at once and held; it is placed once the time is known ([`placement`]).
//!
//! Pure parts take times as arguments. The [`Clock`] reads them, through a [`TimeSource`]: the
//! system's, or [`ManualSource`], which tests drive.

mod format;
pub mod placement;
mod time;
pub mod trust;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use format::{
    duration_text, local_day, local_time, rfc3339, rfc3339_ms, signed_duration, zone_name,
};
pub use placement::{Anchor, BootReading};
pub use time::{SteadyMs, WallMs};
pub use trust::{EARLIEST_PLAUSIBLE, KernelSync, Trust, TrustRule, TrustSource};

/// The environment variable that names the boot (the unit sets it to systemd's `%b`, because
/// `ProcSubset=pid` hides `/proc/sys/kernel/random/boot_id` from the service).
pub const BOOT_ID_ENV: &str = "GYM_CHECKIN_BOOT_ID";
const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// A wall-clock step this large or larger is logged.
const STEP_LOG_MS: i64 = 1_000;

/// Where the clock's readings come from.
pub trait TimeSource: Send + Sync + fmt::Debug {
    /// The wall clock.
    fn wall(&self) -> WallMs;
    /// Milliseconds since the boot (`CLOCK_BOOTTIME`): never stepped, counts suspend too.
    fn boottime_ms(&self) -> i64;
    /// The boot's id, if it can be read.
    fn boot_id(&self) -> Option<String>;
    /// The kernel's clock state, read only (`adjtimex` with no modes), or the errno it failed with.
    fn kernel_sync(&self) -> Result<KernelSync, i32>;
    fn path_exists(&self, path: &Path) -> bool;
}

/// This machine's clocks.
#[derive(Debug, Default)]
pub struct SystemSource;

impl TimeSource for SystemSource {
    fn wall(&self) -> WallMs {
        wall_now()
    }

    fn boottime_ms(&self) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_BOOTTIME
        // exists on every Linux this runs on.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            return 0;
        }
        ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }

    fn boot_id(&self) -> Option<String> {
        let from_env = std::env::var(BOOT_ID_ENV).ok();
        let text = from_env.or_else(|| std::fs::read_to_string(BOOT_ID_FILE).ok())?;
        normalise_boot_id(&text)
    }

    fn kernel_sync(&self) -> Result<KernelSync, i32> {
        // SAFETY: timex is plain data; zeroed, its `modes` is 0, which makes adjtimex read only.
        let mut timex: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: adjtimex reads and writes one timex through a valid pointer.
        let rc = unsafe { libc::adjtimex(&mut timex) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        Ok(KernelSync {
            unsynchronized: timex.status & libc::STA_UNSYNC != 0,
            max_error_us: timex.maxerror,
        })
    }

    fn path_exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// A boot id as systemd's `%b` writes it (32 lowercase hex digits), whether it came from there
/// or from the kernel's file (which adds dashes).
fn normalise_boot_id(text: &str) -> Option<String> {
    let id: String = text
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then_some(id)
}

/// The wall clock now: for what is shown to people (the stand-in EGYM's log of requests,
/// `listen`), never for what the service decides.
pub fn wall_now() -> WallMs {
    WallMs::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

/// A clock for tests: every reading is set by hand.
#[derive(Debug)]
pub struct ManualSource(Mutex<Manual>);

#[derive(Clone, Debug)]
struct Manual {
    wall_ms: i64,
    boottime_ms: i64,
    boot_id: Option<String>,
    kernel: Result<KernelSync, i32>,
    paths: Vec<std::path::PathBuf>,
}

impl ManualSource {
    /// A synchronised clock at `wall_ms`, `boottime_ms` into boot `boot_id`.
    pub fn new(wall_ms: i64, boottime_ms: i64, boot_id: &str) -> ManualSource {
        ManualSource(Mutex::new(Manual {
            wall_ms,
            boottime_ms,
            boot_id: Some(boot_id.into()),
            kernel: Ok(KernelSync {
                unsynchronized: false,
                max_error_us: 1_000,
            }),
            paths: Vec::new(),
        }))
    }

    fn manual(&self) -> MutexGuard<'_, Manual> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Real time passes: both clocks move on.
    pub fn advance(&self, ms: i64) {
        let mut m = self.manual();
        m.wall_ms += ms;
        m.boottime_ms += ms;
    }

    /// The wall clock is stepped; the boot's clock is not.
    pub fn step_wall(&self, ms: i64) {
        self.manual().wall_ms += ms;
    }

    pub fn set_kernel(&self, kernel: Result<KernelSync, i32>) {
        self.manual().kernel = kernel;
    }

    pub fn set_path(&self, path: &Path, exists: bool) {
        let mut m = self.manual();
        m.paths.retain(|p| p != path);
        if exists {
            m.paths.push(path.to_path_buf());
        }
    }
}

impl TimeSource for ManualSource {
    fn wall(&self) -> WallMs {
        WallMs::from_millis(self.manual().wall_ms)
    }
    fn boottime_ms(&self) -> i64 {
        self.manual().boottime_ms
    }
    fn boot_id(&self) -> Option<String> {
        self.manual().boot_id.clone()
    }
    fn kernel_sync(&self) -> Result<KernelSync, i32> {
        self.manual().kernel
    }
    fn path_exists(&self, path: &Path) -> bool {
        self.manual().paths.iter().any(|p| p == path)
    }
}

/// A clock for tests on tokio's paused time: it reads as a [`ManualSource`] moved on by how far
/// tokio's clock has moved since it was made. Under `tokio::time::pause()`, steady time, wall
/// time and every timer then move together, by `tokio::time::advance` or by paused time's
/// auto-advance to the next timer: an hour of retries runs in milliseconds.
#[derive(Debug)]
pub struct TokioSource {
    start: tokio::time::Instant,
    /// The readings at `start`, and what the test sets by hand (steps, trust, paths).
    manual: ManualSource,
}

impl TokioSource {
    /// A synchronised clock at `wall_ms`, `boottime_ms` into boot `boot_id`, now; call it inside
    /// the runtime whose clock it follows.
    pub fn new(wall_ms: i64, boottime_ms: i64, boot_id: &str) -> TokioSource {
        TokioSource {
            start: tokio::time::Instant::now(),
            manual: ManualSource::new(wall_ms, boottime_ms, boot_id),
        }
    }

    /// What the test sets by hand: a step of the wall clock, the kernel's answer, paths.
    pub fn manual(&self) -> &ManualSource {
        &self.manual
    }

    fn elapsed_ms(&self) -> i64 {
        self.start.elapsed().as_millis() as i64
    }
}

impl TimeSource for TokioSource {
    fn wall(&self) -> WallMs {
        self.manual.wall().shifted(self.elapsed_ms())
    }
    fn boottime_ms(&self) -> i64 {
        self.manual.boottime_ms() + self.elapsed_ms()
    }
    fn boot_id(&self) -> Option<String> {
        self.manual.boot_id()
    }
    fn kernel_sync(&self) -> Result<KernelSync, i32> {
        self.manual.kernel_sync()
    }
    fn path_exists(&self, path: &Path) -> bool {
        self.manual.path_exists(path)
    }
}

/// How far the wall time of a reading can be believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WallTime {
    /// The wall clock is trusted.
    Trusted,
    /// The wall clock is not trusted, but was earlier in this boot: the time is the trusted
    /// reading then plus the steady time since.
    FromAnchor,
    /// Not known: the wall clock is not trusted and has not been in this boot.
    Untrusted,
}

/// One reading of the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The wall time, as well as it is known (see `wall_is`).
    pub wall: WallMs,
    pub wall_is: WallTime,
    pub steady: SteadyMs,
}

impl Now {
    /// Whether `wall` is the true time.
    pub fn wall_known(&self) -> bool {
        self.wall_is != WallTime::Untrusted
    }
}

/// The timers of the service. Every timer and deadline goes through here (or through
/// [`Clock::sleep_until`] for a moment of steady time), on tokio's clock, which a test pauses and
/// moves: with [`TokioSource`], steady time moves with it.
pub mod timer {
    pub use tokio::time::{Instant, Sleep, sleep, sleep_until, timeout, timeout_at};

    /// Sleeps until `at`, or for ever with none: a timer that may not be set, in a `select!`.
    pub async fn sleep_until_or_never(at: Option<Instant>) {
        match at {
            Some(at) => sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// The boot the service runs in, as registered in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boot {
    /// The database's id for it.
    pub id: i64,
    /// Steady time = boot time + this.
    pub offset_ms: i64,
    /// Steady time when the service first ran in this boot: what came before it was in an
    /// earlier boot.
    pub start: SteadyMs,
}

/// What one refresh of the clock found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub trust: Trust,
    /// The trust before, if it changed.
    pub was: Option<Trust>,
    /// How far the wall clock moved against steady time since the last refresh, if it stepped.
    pub step_ms: Option<i64>,
}

/// The clock. Cheap to clone; every clone reads the same state.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    source: Arc<dyn TimeSource>,
    rule: TrustRule,
    boot: Boot,
    state: Mutex<State>,
    trust_changed: watch::Sender<Trust>,
}

#[derive(Debug)]
struct State {
    trust: Trust,
    /// This boot's latest trusted reading.
    anchor: Option<Anchor>,
    /// The wall time at the last refresh, and the steady time then: a step of the wall clock is
    /// how far it moved against steady time since.
    last_reading: (WallMs, SteadyMs),
}

/// What the service reads before the database knows its boot: the boot, and the clock's trust.
pub fn boot_reading(source: &dyn TimeSource, rule: &TrustRule) -> (BootReading, Trust) {
    let wall = source.wall();
    let trust = trust::decide(rule, wall, &trust::probe(source, rule));
    let reading = BootReading {
        // Without a boot id, each run counts as a boot of its own: steady time then goes on from
        // where the last run was seen, and taps held across a restart are placed approximately.
        boot_id: source
            .boot_id()
            .unwrap_or_else(|| format!("run-{:016x}", fastrand::u64(..))),
        boottime_ms: source.boottime_ms(),
        wall,
        trusted: trust.trusted,
    };
    (reading, trust)
}

impl Clock {
    /// The clock of a run registered as `boot`; `trust` as [`boot_reading`] found it, and this
    /// boot's last trusted reading from an earlier run, if any.
    pub fn new(
        source: Arc<dyn TimeSource>,
        rule: TrustRule,
        boot: Boot,
        trust: Trust,
        anchor: Option<Anchor>,
    ) -> Clock {
        let steady = SteadyMs::from_millis(source.boottime_ms() + boot.offset_ms);
        let wall = source.wall();
        let anchor = if trust.trusted {
            Some(Anchor { wall, steady })
        } else {
            anchor
        };
        let (trust_changed, _) = watch::channel(trust.clone());
        Clock(Arc::new(Inner {
            source,
            rule,
            boot,
            state: Mutex::new(State {
                trust,
                anchor,
                last_reading: (wall, steady),
            }),
            trust_changed,
        }))
    }

    /// The system's clock for a run registered as `boot`.
    pub fn system(rule: TrustRule, boot: Boot, trust: Trust, anchor: Option<Anchor>) -> Clock {
        Clock::new(Arc::new(SystemSource), rule, boot, trust, anchor)
    }

    /// The system's clock for a command that records nothing (`listen`): no boot is registered,
    /// so steady time is the boot's own.
    pub fn unregistered(rule: TrustRule) -> Clock {
        let (_, trust) = boot_reading(&SystemSource, &rule);
        let boot = Boot {
            id: 0,
            offset_ms: 0,
            start: SteadyMs::from_millis(0),
        };
        Clock::system(rule, boot, trust, None)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn boot(&self) -> Boot {
        self.0.boot
    }

    pub fn rule(&self) -> &TrustRule {
        &self.0.rule
    }

    /// Steady time now.
    pub fn steady(&self) -> SteadyMs {
        SteadyMs::from_millis(self.0.source.boottime_ms() + self.0.boot.offset_ms)
    }

    /// The timer deadline at which steady time reaches `at` (at once if it has): the one place
    /// a moment of steady time becomes a tokio timer's deadline.
    pub fn deadline(&self, at: SteadyMs) -> tokio::time::Instant {
        tokio::time::Instant::now() + at.since(self.steady())
    }

    /// Sleeps until steady time reaches `at`.
    pub async fn sleep_until(&self, at: SteadyMs) {
        timer::sleep_until(self.deadline(at)).await;
    }

    /// A clock on [`TokioSource`]: a boot registered as `boot`, the clock trusted by `rule` as
    /// the source says. For tests on paused time.
    pub fn on_tokio(source: Arc<TokioSource>, rule: TrustRule, boot: Boot) -> Clock {
        let (_, trust) = boot_reading(source.as_ref(), &rule);
        Clock::new(source, rule, boot, trust, None)
    }

    /// Reads the clock.
    pub fn now(&self) -> Now {
        let steady = self.steady();
        let wall = self.0.source.wall();
        let state = self.state();
        match (state.trust.trusted, state.anchor) {
            (true, _) => Now {
                wall,
                wall_is: WallTime::Trusted,
                steady,
            },
            (false, Some(anchor)) => Now {
                wall: anchor.wall_at(steady),
                wall_is: WallTime::FromAnchor,
                steady,
            },
            (false, None) => Now {
                wall,
                wall_is: WallTime::Untrusted,
                steady,
            },
        }
    }

    /// The wall time at `steady` in this boot, if the clock has been trusted in it.
    pub fn wall_at(&self, steady: SteadyMs) -> Option<WallMs> {
        self.state().anchor.map(|anchor| anchor.wall_at(steady))
    }

    /// This boot's latest trusted reading.
    pub fn anchor(&self) -> Option<Anchor> {
        self.state().anchor
    }

    pub fn trust(&self) -> Trust {
        self.state().trust.clone()
    }

    /// What an untrusted clock means for taps now, as the log says it: with a trusted reading
    /// earlier in this boot, taps are stamped from it and go out as usual; without, they wait.
    pub fn while_untrusted(&self) -> &'static str {
        if self.anchor().is_some() {
            "It was trusted earlier in this boot: taps are stamped from that reading plus the \
             steady time since, and delivered as usual"
        } else {
            "Taps are recorded and held from EGYM until it is; they are then sent with the time \
             they were made"
        }
    }

    /// Completes each time trust changes; `borrow` it for the trust now.
    pub fn subscribe(&self) -> watch::Receiver<Trust> {
        self.0.trust_changed.subscribe()
    }

    /// The time services found running (see [`trust::TIME_SERVICES`]).
    pub fn time_services(&self) -> Vec<&'static str> {
        trust::TIME_SERVICES
            .iter()
            .filter(|(_, path)| self.0.source.path_exists(Path::new(path)))
            .map(|(name, _)| *name)
            .collect()
    }

    /// A warning if the clock is not trusted and nothing seems able to make it so.
    pub fn never_trusted_warning(&self) -> Option<String> {
        let file_dir_exists = match &self.0.rule {
            TrustRule::File(path) => path
                .parent()
                .is_some_and(|dir| self.0.source.path_exists(dir)),
            _ => true,
        };
        trust::never_trusted_warning(
            &self.0.rule,
            &self.trust(),
            &self.time_services(),
            file_dir_exists,
        )
    }

    /// Asks again whether the wall clock is trusted; notes a trusted reading as this boot's
    /// anchor, and a step of the wall clock. Tasks waiting on [`subscribe`](Self::subscribe) are
    /// woken if trust changed.
    pub fn refresh(&self) -> Refresh {
        let source = &self.0.source;
        let probes = trust::probe(source.as_ref(), &self.0.rule);
        let steady = self.steady();
        let wall = source.wall();
        let trust = trust::decide(&self.0.rule, wall, &probes);
        let mut state = self.state();
        let (last_wall, last_steady) = std::mem::replace(&mut state.last_reading, (wall, steady));
        let step = wall.millis_since(last_wall) - steady.millis_since(last_steady);
        if trust.trusted {
            state.anchor = Some(Anchor { wall, steady });
        }
        let was = (state.trust.trusted != trust.trusted || state.trust.source != trust.source)
            .then(|| std::mem::replace(&mut state.trust, trust.clone()));
        state.trust.detail.clone_from(&trust.detail);
        drop(state);
        if was.is_some() {
            self.0.trust_changed.send_replace(trust.clone());
        }
        Refresh {
            trust,
            was,
            step_ms: (step.abs() >= STEP_LOG_MS).then_some(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_083_200_000;

    fn clock(source: &Arc<ManualSource>, rule: TrustRule) -> Clock {
        let (reading, trust) = boot_reading(source.as_ref(), &rule);
        let boot = Boot {
            id: 1,
            offset_ms: reading.wall.as_millis() - reading.boottime_ms,
            start: SteadyMs::from_millis(reading.wall.as_millis()),
        };
        Clock::new(source.clone(), rule, boot, trust, None)
    }

    #[test]
    fn steps_of_the_wall_clock_move_wall_time_but_not_steady_time() {
        let source = Arc::new(ManualSource::new(T, 5_000, "b1"));
        let clock = clock(&source, TrustRule::Always);
        let before = clock.now();
        assert_eq!(
            (before.wall, before.wall_is),
            (WallMs::from_millis(T), WallTime::Trusted)
        );
        source.advance(30_000);
        source.step_wall(-3_600_000);
        let after = clock.now();
        assert_eq!(after.steady.millis_since(before.steady), 30_000);
        assert_eq!(after.wall.as_millis(), T + 30_000 - 3_600_000);
        assert_eq!(clock.refresh().step_ms, Some(-3_600_000));
        assert_eq!(clock.refresh().step_ms, None, "a step is said once");
    }

    #[test]
    fn a_clock_trusted_later_in_the_boot_places_earlier_moments_exactly() {
        let source = Arc::new(ManualSource::new(T - 3 * 86_400_000, 5_000, "b1"));
        let flag = Path::new("/run/synced");
        let clock = clock(&source, TrustRule::File(flag.into()));
        let changes = clock.subscribe();
        let tap = clock.now();
        assert_eq!(tap.wall_is, WallTime::Untrusted);
        assert_eq!(clock.wall_at(tap.steady), None);
        // 90 s later, NTP steps the clock to the true time and says so.
        source.advance(90_000);
        source.step_wall(3 * 86_400_000);
        source.set_path(flag, true);
        let refresh = clock.refresh();
        assert!(refresh.trust.trusted && refresh.was.is_some());
        assert!(changes.has_changed().unwrap());
        assert_eq!(clock.wall_at(tap.steady), Some(WallMs::from_millis(T)));
        // Trust lost again: readings are placed from the anchor, not from the wall clock.
        source.set_path(flag, false);
        source.advance(1_000);
        source.step_wall(-500_000);
        clock.refresh();
        let later = clock.now();
        assert_eq!(
            (later.wall.as_millis(), later.wall_is),
            (T + 91_000, WallTime::FromAnchor)
        );
    }

    #[test]
    fn under_protect_clock_trust_comes_from_timesyncd() {
        let source = Arc::new(ManualSource::new(T, 5_000, "b1"));
        source.set_kernel(Err(libc::EPERM));
        source.set_path(Path::new(trust::TIMESYNCD_DIR), true);
        let clock = clock(&source, TrustRule::Synchronized);
        assert_eq!(clock.trust().source, TrustSource::Timesyncd);
        assert!(!clock.trust().trusted);
        source.set_path(Path::new(trust::TIMESYNCD_FLAG), true);
        let refresh = clock.refresh();
        assert!(refresh.trust.trusted, "{}", refresh.trust.detail);
        assert_eq!(refresh.trust.source, TrustSource::Timesyncd);
        assert_eq!(clock.time_services(), vec!["systemd-timesyncd"]);
    }

    #[test]
    fn the_boot_id_reads_the_same_from_the_unit_and_from_the_kernel() {
        // The kernel's file exists on every Linux machine the tests run on.
        let id = SystemSource.boot_id().unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(SystemSource.boottime_ms() > 0);
        assert_eq!(
            normalise_boot_id("C6DF42D8-58A0-45AC-B29C-7955C5237991\n").as_deref(),
            Some("c6df42d858a045acb29c7955c5237991")
        );
        assert_eq!(
            normalise_boot_id("c6df42d858a045acb29c7955c5237991"),
            normalise_boot_id("c6df42d8-58a0-45ac-b29c-7955c5237991")
        );
        assert_eq!(normalise_boot_id(" \n"), None);
        assert_eq!(normalise_boot_id("../etc"), None);
    }
}
