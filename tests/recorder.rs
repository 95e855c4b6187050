//! The recorder on tokio's paused time, with a real SQLite file: the repeat window, automatic
//! check-outs, and taps held for the clock. Its clock ([`TokioSource`]) moves with the timers,
//! so four hours until an automatic check-out pass in no real time, and what the recorder does
//! then is checked in its rows.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::TestDir;
use gym_checkin::clock::{Clock, TokioSource, TrustRule, WallMs, boot_reading};
use gym_checkin::events::{Event, Listeners, Sink};
use gym_checkin::liveness::Pulse;
use gym_checkin::reader::{ReaderMessage, Tap};
use gym_checkin::recorder::Recorder;
use gym_checkin::store::{EventRow, Store, TimeQuality};
use gym_checkin::tag::RawId;
use gym_checkin::visit::{AutoCheckoutPolicy, Direction, Kind};
use tokio::sync::{mpsc, watch};

/// 2026-12-01T10:00:00Z.
const START: i64 = 1_796_083_200_000 + 10 * 3_600_000;
const ALEX: &str = "0x0C000621A5";
const REPEAT_WINDOW: Duration = Duration::from_secs(120);

/// The recorder running on a clock of its own, with the channels a reader and delivery use.
struct Desk {
    _dir: TestDir,
    store: Store,
    source: Arc<TokioSource>,
    clock: Clock,
    taps: mpsc::Sender<ReaderMessage>,
    recorded: watch::Receiver<i64>,
    /// What the recorder emitted.
    heard: Sink,
    stop: watch::Sender<bool>,
    recorder: tokio::task::JoinHandle<()>,
}

/// A desk whose clock is trusted by `rule` (with `flag` as its file, if any), with `policy` for
/// automatic check-outs.
async fn desk(name: &str, rule: TrustRule, policy: Option<AutoCheckoutPolicy>) -> Desk {
    let dir = TestDir::new(name);
    let store = Store::open_for_paused_time(&dir.path("outbox.db"))
        .await
        .unwrap();
    let source = Arc::new(TokioSource::new(START, 5_000, "paused"));
    // The boot registered as the service registers it: held taps are placed by their boot.
    let (reading, _) = boot_reading(source.as_ref(), &rule);
    let (boot, _) = store.register_boot(reading).await.unwrap();
    let clock = Clock::on_tokio(source.clone(), rule, boot);
    let (recorded_out, recorded) = watch::channel(0);
    let heard = Sink::default();
    let listeners = Listeners::unheard().with_sink(heard.clone());
    let recorder = Recorder::new(
        store.clone(),
        clock.clone(),
        REPEAT_WINDOW,
        policy,
        Arc::new(recorded_out),
        listeners,
    )
    .await
    .unwrap();
    let (taps, tap_queue) = mpsc::channel(16);
    let (_corrections, corrections_in) = mpsc::unbounded_channel();
    let (stop, stopping) = watch::channel(false);
    let recorder =
        tokio::spawn(recorder.run(tap_queue, corrections_in, stopping, Pulse::unwatched()));
    Desk {
        _dir: dir,
        store,
        source,
        clock,
        taps,
        recorded,
        heard,
        stop,
        recorder,
    }
}

impl Desk {
    /// Taps `rfid` on a toggle reader now; returns once the recorder has said what it made of
    /// it (recorded or ignored), with the id of the newest event then.
    async fn tap(&mut self, rfid: &str) -> i64 {
        let decided = |events: &[Event]| {
            events
                .iter()
                .filter(|e| matches!(e, Event::TapRecorded(_) | Event::TapIgnored(_)))
                .count()
        };
        let before = decided(&self.heard.events());
        let tap = Tap {
            reader: Arc::from("entrance"),
            raw: RawId::from_hex(rfid.trim_start_matches("0x")).unwrap(),
            rfid: rfid.into(),
            tag_format: None,
            direction: Direction::Toggle,
            at: self.clock.now(),
            repeat: false,
            cut_short: false,
            text: None,
        };
        self.taps.send(ReaderMessage::Tap(tap)).await.unwrap();
        while decided(&self.heard.events()) == before {
            self.settle().await;
        }
        *self.recorded.borrow()
    }

    /// Lets a moment of simulated time pass, in which the recorder takes in what it was sent.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    /// Every event recorded so far, oldest first.
    async fn events(&self) -> Vec<EventRow> {
        let mut rows = Vec::new();
        for id in 1..=*self.recorded.borrow() {
            rows.extend(self.store.event(id).await.unwrap());
        }
        rows
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.recorder.await.unwrap();
    }
}

fn at(ms: i64) -> WallMs {
    WallMs::from_millis(ms)
}

#[tokio::test(start_paused = true)]
async fn a_tap_within_the_repeat_window_is_ignored_and_the_next_one_after_it_checks_out() {
    let mut desk = desk("repeat", TrustRule::Always, None).await;
    let check_in = desk.tap(ALEX).await;
    tokio::time::sleep(Duration::from_secs(119)).await;
    assert_eq!(desk.tap(ALEX).await, check_in, "ignored within the window");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let check_out = desk.tap(ALEX).await;
    assert_eq!(check_out, check_in + 1);
    let events = desk.events().await;
    let kinds: Vec<(Kind, WallMs)> = events.iter().map(|e| (e.kind, e.tapped_at)).collect();
    // Each stamped with its own time (a moment after each sleep, for the tap's hand-over).
    assert_eq!(kinds[0].0, Kind::CheckIn);
    assert_eq!(kinds[1].0, Kind::CheckOut);
    assert!(kinds[1].1.since(kinds[0].1) >= REPEAT_WINDOW, "{kinds:?}");
    desk.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_visit_left_open_is_checked_out_after_auto_checkout_after_stamped_check_in_plus_it() {
    let policy = AutoCheckoutPolicy {
        after: Some(Duration::from_secs(4 * 3600)),
        closing_time: None,
        time_zone: jiff::tz::TimeZone::UTC,
    };
    let mut desk = desk("auto-after", TrustRule::Always, Some(policy)).await;
    let check_in = desk.tap(ALEX).await;
    let checked_in_at = desk.events().await[0].tapped_at;
    // A minute before it is due: nothing.
    tokio::time::sleep(Duration::from_secs(4 * 3600 - 60)).await;
    assert_eq!(*desk.recorded.borrow(), check_in);
    // Due: checked out by itself, stamped check-in + 4 h, not when it was noticed.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let events = desk.events().await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].kind, Kind::CheckOut);
    assert_eq!(
        events[1].tapped_at,
        checked_in_at + Duration::from_secs(4 * 3600)
    );
    // The member is outside now: the next tap is a check-in again.
    desk.tap(ALEX).await;
    assert_eq!(desk.events().await[2].kind, Kind::CheckIn);
    desk.stop().await;
}

#[tokio::test(start_paused = true)]
async fn closing_time_checks_out_every_open_visit_at_that_local_time() {
    let policy = AutoCheckoutPolicy {
        after: None,
        closing_time: Some((23, 30)),
        time_zone: jiff::tz::TimeZone::UTC,
    };
    let mut desk = desk("closing", TrustRule::Always, Some(policy)).await;
    desk.tap(ALEX).await;
    desk.tap("0x0C0006A4B2").await;
    // 10:00 to 23:30 is 13 h 30 min.
    tokio::time::sleep(Duration::from_secs(13 * 3600 + 1800 + 60)).await;
    let events = desk.events().await;
    let closing = at(START + 13 * 3_600_000 + 1_800_000);
    let checked_out: Vec<(Kind, WallMs)> =
        events[2..].iter().map(|e| (e.kind, e.tapped_at)).collect();
    assert_eq!(
        checked_out,
        [(Kind::CheckOut, closing), (Kind::CheckOut, closing)],
        "{events:?}"
    );
    desk.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tap_held_for_the_clock_is_placed_at_its_true_time_once_the_clock_is_trusted() {
    let flag: PathBuf = Path::new("/run/gym-checkin-test/synchronized").into();
    let mut desk = desk("held", TrustRule::File(flag.clone()), None).await;
    assert!(!desk.clock.trust().trusted);
    let tapped_at = desk.clock.now().wall;
    let id = desk.tap(ALEX).await;
    let row = desk.store.event(id).await.unwrap().unwrap();
    assert_eq!(row.time, TimeQuality::Untrusted);
    // 90 s later the time service sets the clock (a step of a day forward), and says so.
    tokio::time::sleep(Duration::from_secs(90)).await;
    desk.source.manual().step_wall(86_400_000);
    desk.source.manual().set_path(&flag, true);
    assert!(desk.clock.refresh().trust.trusted);
    desk.settle().await;
    let row = desk.store.event(id).await.unwrap().unwrap();
    // Counted back from the trusted clock by the steady time since the tap: the day's step
    // moves it, as the clock was that far behind when the member tapped.
    assert_eq!(row.time, TimeQuality::Restamped);
    assert_eq!(
        row.tapped_at,
        tapped_at + Duration::from_secs(86_400),
        "{row:?}"
    );
    desk.stop().await;
}
