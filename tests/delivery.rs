//! The delivery worker against the stand-in EGYM, with a real SQLite file: each row of
//! the README's outcome table, per-tag order, and the client-side rate limit.
//!
//! On tokio's paused time: the worker's clock ([`TokioSource`]) and its timers move together,
//! only as far as the worker has to wait, so a retry due in minutes, or an hour of nothing
//! being sent, takes no real time, and no test depends on how fast the machine is.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeEgym, LONG, Member, Mode, TestDir, entrance_tap, member};
use gym_checkin::clock::{Boot, Clock, SteadyMs, TokioSource, TrustRule, WallMs};
use gym_checkin::delivery::{LateAdmission, RecorderLinks, Settings, Worker};
use gym_checkin::egym::Client;
use gym_checkin::egym::fake::Calls;
use gym_checkin::egym::{ApiKey, ApiKeySource};
use gym_checkin::events::Listeners;
use gym_checkin::liveness::Pulse;
use gym_checkin::store::{Admission, EventRow, EventState, Store};
use gym_checkin::visit::{Correction, Kind};
use tokio::sync::{mpsc, watch};

const KEY: &str = "delivery-test-key";

struct Setup {
    _dir: TestDir,
    store: Store,
    fake: FakeEgym,
    clock: Clock,
    recorded: watch::Sender<i64>,
    corrections: mpsc::UnboundedReceiver<Correction>,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

fn settings() -> Settings {
    Settings {
        rate_per_second: 100.0,
        account_cache_ttl: Duration::from_secs(3600),
        unknown_tag_retry_window: Duration::from_secs(3600),
        admission_window: Duration::from_secs(900),
        late_admission: LateAdmission::Admit,
        greeting: Default::default(),
    }
}

async fn setup(name: &str, members: &[(&str, &str)], settings: Settings, key: &str) -> Setup {
    setup_with_burst(name, members, settings, 100, key).await
}

async fn setup_with_burst(
    name: &str,
    members: &[(&str, &str)],
    settings: Settings,
    burst: u32,
    key: &str,
) -> Setup {
    let members = members
        .iter()
        .map(|(rfid, account)| member(rfid, account))
        .collect();
    setup_members(name, members, settings, burst, key).await
}

async fn setup_members(
    name: &str,
    members: Vec<Member>,
    settings: Settings,
    burst: u32,
    key: &str,
) -> Setup {
    setup_with_outbox(name, members, settings, burst, key, &[]).await
}

/// As [`setup_members`], with check-ins of `waiting` in the outbox before the worker starts (a
/// backlog that waited through a restart), tapped a minute ago.
async fn setup_with_outbox(
    name: &str,
    members: Vec<Member>,
    settings: Settings,
    burst: u32,
    key: &str,
    waiting: &[&str],
) -> Setup {
    let dir = TestDir::new(name);
    let store = Store::open_for_paused_time(&dir.path("outbox.db"))
        .await
        .unwrap();
    for tag in waiting {
        let (event, state) = entrance_tap(tag, Kind::CheckIn, START - 60_000);
        store
            .record_event(event, state, WallMs::from_millis(START))
            .await
            .unwrap();
    }
    let fake = FakeEgym::start(members, KEY).await.unwrap();
    let client = Client::new(
        &fake.base_url().parse().unwrap(),
        Duration::from_secs(2),
        settings.rate_per_second,
        burst,
    )
    .unwrap();
    let (recorded, recorded_events) = watch::channel(0);
    let (corrections_out, corrections) = mpsc::unbounded_channel();
    let key = ApiKey::new(key.into());
    let clock = paused_clock();
    let worker = Worker::new(
        store.clone(),
        client,
        clock.clone(),
        settings,
        ApiKeySource::Literal(key.clone()),
        key,
        RecorderLinks {
            listeners: Listeners::unheard(),
            recorded: recorded_events,
            corrections: corrections_out,
        },
    );
    let (stop, stopping) = watch::channel(false);
    let worker = tokio::spawn(worker.run(stopping, Pulse::unwatched()));
    Setup {
        _dir: dir,
        store,
        fake,
        clock,
        recorded,
        corrections,
        stop,
        worker,
    }
}

/// 2026-12-01T00:00:00Z.
const START: i64 = 1_796_083_200_000;

/// A trusted clock on tokio's paused time, starting at `START`; steady time starts at the wall
/// time, as in a new database.
fn paused_clock() -> Clock {
    let source = Arc::new(TokioSource::new(START, 5_000, "paused"));
    let boot = Boot {
        id: 1,
        offset_ms: START - 5_000,
        start: SteadyMs::from_millis(START),
    };
    Clock::on_tokio(source, TrustRule::Always, boot)
}

/// Lets `length` of simulated time pass: every timer of the worker due in it fires.
async fn let_pass(length: Duration) {
    tokio::time::sleep(length).await;
}

impl Setup {
    /// The wall time now, by the worker's clock.
    fn now(&self) -> i64 {
        self.clock.now().wall.as_millis()
    }

    async fn record(&self, tag: &str, kind: Kind, tapped_at_ms: i64) -> i64 {
        let (mut event, state) = entrance_tap(tag, kind, tapped_at_ms);
        event.boot = self.clock.boot().id;
        let id = self
            .store
            .record_event(event, state, WallMs::from_millis(tapped_at_ms))
            .await
            .unwrap();
        self.recorded.send_replace(id);
        id
    }

    /// Waits until event `id`'s row satisfies `done`: it looks at the row after each stretch of
    /// simulated time, from 50 ms, twice as long each time up to 5 s (waits of minutes take
    /// few looks); `LONG` of real time at most.
    async fn wait_for(&self, id: i64, what: &str, done: impl Fn(&EventRow) -> bool) -> EventRow {
        let deadline = Instant::now() + LONG;
        let mut step = Duration::from_millis(50);
        loop {
            let row = self.store.event(id).await.unwrap().unwrap();
            if done(&row) {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "event {id} never became {what}: {row:#?}\n{:#?}",
                self.fake.received()
            );
            let_pass(step).await;
            step = (step * 2).min(Duration::from_secs(5));
        }
    }

    async fn wait_state(&self, id: i64, state: &str) -> EventRow {
        self.wait_for(id, state, |row| row.state.as_str() == state)
            .await
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.worker)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_2xx_answer_marks_the_event_delivered_with_its_account() {
    let s = setup("delivered", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    let tapped = s.now() - 5_000;
    let id = s.record("0xAABBCCDD", Kind::CheckIn, tapped).await;
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.account_id.as_deref(), Some("acc-1"));
    assert_eq!(row.last_status, Some(204));
    assert_eq!(row.attempts, 1);
    let received = s.fake.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].path, "/api/v2/accounts/acc-1/checkins");
    assert_eq!(received[1].timestamp(), Some(tapped));
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_on_the_schedule_stored_in_the_row() {
    let s = setup("retry", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(503));
    let id = s.record("0xAABBCCDD", Kind::CheckOut, s.now()).await;
    let row = s.wait_for(id, "retried", |row| row.attempts >= 1).await;
    assert_eq!(row.state, EventState::Pending);
    assert_eq!(row.last_status, Some(503));
    assert_eq!(row.last_error_code.as_deref(), Some("injected"));
    s.fake.set_mode(Mode::Normal);
    let row = s.wait_state(id, "delivered").await;
    assert!(row.attempts >= 2);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_4xx_rejects_the_event_and_keeps_egyms_answer() {
    let s = setup("rejected", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(422));
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(id, "rejected").await;
    assert_eq!(row.last_status, Some(422));
    assert_eq!(row.last_error_code.as_deref(), Some("injected"));
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("injected failure"),
        "{row:?}"
    );
    // Rejected is final: nothing more is sent, in an hour.
    let sent = s.fake.received().len();
    let_pass(Duration::from_secs(3600)).await;
    assert_eq!(s.fake.received().len(), sent);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_tag_waits_on_a_slow_schedule() {
    let s = setup("unknown", &[], settings(), KEY).await;
    let first = s.record("0x0A0B0C0D0E", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(first, "unknown_tag").await;
    assert_eq!(row.last_status, Some(404));
    assert!(
        row.next_attempt > s.clock.steady() + Duration::from_secs(60),
        "slow schedule: {row:?}"
    );
    // A later tap of the same card waits behind the first, in order: in the minute before the
    // first is asked about again, nothing is sent for either.
    let second = s.record("0x0A0B0C0D0E", Kind::CheckOut, s.now()).await;
    let_pass(Duration::from_secs(60)).await;
    assert_eq!(s.store.event(second).await.unwrap().unwrap().attempts, 0);
    assert_eq!(s.fake.received().len(), 1);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_tag_is_rejected_once_its_window_is_over_and_the_answer_is_cached() {
    let settings = Settings {
        unknown_tag_retry_window: Duration::ZERO,
        ..settings()
    };
    let s = setup("unknown-window", &[], settings, KEY).await;
    let first = s.record("0x0A0B0C0D0E", Kind::CheckIn, s.now()).await;
    let second = s.record("0x0A0B0C0D0E", Kind::CheckOut, s.now()).await;
    for id in [first, second] {
        let row = s.wait_state(id, "rejected").await;
        assert!(
            row.last_error
                .as_deref()
                .unwrap()
                .contains("unknown-tag-retry-window"),
            "{row:?}"
        );
    }
    // EGYM's "no member has this tag" is remembered: one lookup for both events.
    let lookups = s
        .fake
        .received()
        .iter()
        .filter(|r| r.lookup_rfid().is_some())
        .count();
    assert_eq!(lookups, 1);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_pauses_delivery_and_drops_nothing() {
    let s = setup(
        "refused",
        &[("0xAA", "acc-1"), ("0xBB", "acc-2")],
        settings(),
        "wrong-key",
    )
    .await;
    let a = s.record("0xAA", Kind::CheckIn, s.now()).await;
    let b = s.record("0xBB", Kind::CheckIn, s.now()).await;
    let (refused, received) = s
        .fake
        .wait_for(LONG, |r| r.iter().any(|r| r.status == Some(403)))
        .await;
    assert!(refused, "{received:?}");
    // More taps while paused: they wait too, until the next probe (30 s).
    let c = s.record("0xAA", Kind::CheckOut, s.now()).await;
    let_pass(Duration::from_secs(20)).await;
    // Only the requests already in flight when the first 403 came back; nothing after them
    // until the next probe.
    let sent = s.fake.received().len();
    assert!(
        sent <= 2,
        "{sent} requests while paused: a lookup for each tag at most"
    );
    for id in [a, b, c] {
        let row = s.store.event(id).await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.attempts),
            ("pending", 0),
            "{row:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_gone_account_is_looked_up_again_once() {
    let s = setup(
        "account-gone",
        &[("0xAABBCCDD", "acc-new")],
        settings(),
        KEY,
    )
    .await;
    s.store
        .cache_account(
            "0xAABBCCDD".into(),
            None,
            Some(("acc-stale".into(), gym_checkin::visit::Membership::Other)),
            s.clock.steady(),
        )
        .await
        .unwrap();
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.account_id.as_deref(), Some("acc-new"));
    let calls: Vec<(String, Option<u16>)> = s
        .fake
        .received()
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("/api/v2/accounts/acc-stale/checkins".to_string(), Some(404)),
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-new/checkins".to_string(), Some(204)),
        ]
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_tags_events_arrive_in_order_while_tags_go_side_by_side() {
    let tags = [("0x01", "acc-1"), ("0x02", "acc-2"), ("0x03", "acc-3")];
    let s = setup("order", &tags, settings(), KEY).await;
    let start = s.now() - 60_000;
    let mut ids = Vec::new();
    for round in 0..4 {
        for (i, (tag, _)) in tags.iter().enumerate() {
            let kind = if round % 2 == 0 {
                Kind::CheckIn
            } else {
                Kind::CheckOut
            };
            ids.push(s.record(tag, kind, start + round * 1000 + i as i64).await);
        }
    }
    for id in ids {
        s.wait_state(id, "delivered").await;
    }
    let received = s.fake.received();
    for (_, account) in tags {
        let stamps: Vec<(i64, &str)> = received
            .iter()
            .filter_map(|r| {
                r.visit()
                    .filter(|(a, _)| *a == account)
                    .map(|(_, what)| (r.timestamp().unwrap(), what))
            })
            .collect();
        let mut sorted = stamps.clone();
        sorted.sort();
        assert_eq!(stamps, sorted, "{account} out of order");
        let kinds: Vec<&str> = stamps.iter().map(|(_, what)| *what).collect();
        assert_eq!(kinds, ["checkins", "checkouts", "checkins", "checkouts"]);
    }
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_token_bucket_keeps_requests_within_rate_and_burst() {
    // Every third member is a Wellpass member: admissions draw from the same bucket.
    let members: Vec<Member> = (0..12)
        .map(|n| {
            let member = member(&format!("0x{n:02X}"), &format!("acc-{n}"));
            if n % 3 == 0 {
                member.wellpass(None)
            } else {
                member
            }
        })
        .collect();
    let (rate, burst) = (10.0, 3);
    let settings = Settings {
        rate_per_second: rate,
        ..settings()
    };
    let s = setup_members("bucket", members.clone(), settings, burst, KEY).await;
    let mut ids = Vec::new();
    for m in &members {
        ids.push(s.record(&m.rfid, Kind::CheckIn, s.now()).await);
    }
    for id in ids {
        s.wait_state(id, "delivered").await;
    }
    let start = s.fake.received()[0].at;
    let times: Vec<i64> = s
        .fake
        .received()
        .iter()
        .map(|r| r.at.duration_since(start).as_millis() as i64)
        .collect();
    assert_eq!(
        times.len(),
        24 + 4,
        "lookups, check-ins and four admissions"
    );
    // However the requests fall, no stretch of time holds more than the bucket allows (on
    // paused time, the client's clock and the server's are one).
    for i in 0..times.len() {
        for j in i..times.len() {
            let span_s = (times[j] - times[i]) as f64 / 1000.0;
            let allowed = f64::from(burst) + rate * span_s;
            assert!(
                (j - i + 1) as f64 <= allowed + 1e-9,
                "{} requests in {span_s:.3} s (allowed {allowed:.1}): {times:?}",
                j - i + 1
            );
        }
    }
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_falling_due_later_wakes_the_idle_worker_by_itself() {
    let s = setup("due-later", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(503));
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    s.wait_for(id, "retried", |row| row.attempts >= 1).await;
    // Nothing else happens: no tap, nothing in flight. Only the stored due time brings the
    // worker back.
    s.fake.set_mode(Mode::Normal);
    s.wait_state(id, "delivered").await;
    s.stop().await;
}

fn wellpass_settings(late: LateAdmission) -> Settings {
    Settings {
        late_admission: late,
        ..settings()
    }
}

/// (path, status) of every request received.
fn calls(fake: &FakeEgym) -> Vec<(String, Option<u16>)> {
    fake.received()
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_wellpass_check_in_is_admitted_first_and_only_once_however_often_it_is_posted() {
    let wellpass = Member::new("0xAABBCCDD", "acc-w", "W Member").wellpass(None);
    let s = setup_members(
        "wellpass-admitted",
        vec![wellpass],
        wellpass_settings(LateAdmission::Admit),
        100,
        KEY,
    )
    .await;
    // The first post of the check-in fails: it is retried, the admission is not.
    s.fake.answer_next(Calls::Visits, 1, 503, "unavailable");
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.admission, Some(Admission::Admitted));
    let out = s.record("0xAABBCCDD", Kind::CheckOut, s.now()).await;
    s.wait_state(out, "delivered").await;
    assert_eq!(
        calls(&s.fake),
        vec![
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-w/admissions".to_string(), Some(200)),
            ("/api/v2/accounts/acc-w/checkins".to_string(), Some(503)),
            ("/api/v2/accounts/acc-w/checkins".to_string(), Some(204)),
            // A check-out needs no admission.
            ("/api/v2/accounts/acc-w/checkouts".to_string(), Some(204)),
        ]
    );
    let status = s.store.status().await.unwrap();
    assert_eq!(status.admissions, vec![("admitted".to_string(), None, 1)]);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_wellpass_admission_sends_no_check_in_and_finishes_the_event() {
    let expired = Member::new("0xAABBCCDD", "acc-x", "X Member")
        .wellpass(Some("corporateFitnessMembershipExpired"));
    let mut s = setup_members(
        "wellpass-refused",
        vec![expired],
        wellpass_settings(LateAdmission::Admit),
        100,
        KEY,
    )
    .await;
    let tapped = s.now();
    let id = s.record("0xAABBCCDD", Kind::CheckIn, tapped).await;
    let row = s.wait_state(id, "rejected").await;
    assert_eq!(row.admission, Some(Admission::Refused));
    assert_eq!(
        row.admission_reason.as_deref(),
        Some("corporateFitnessMembershipExpired")
    );
    assert_eq!(row.last_status, Some(403));
    // The recorder hears that the member was turned away.
    let correction = tokio::time::timeout(LONG, s.corrections.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        correction,
        Correction::NotAdmitted {
            tag: "0xAABBCCDD".into(),
            checked_in: SteadyMs::from_millis(tapped)
        }
    );
    // Finished: nothing more is sent in an hour, and no check-in ever was.
    let_pass(Duration::from_secs(3600)).await;
    assert_eq!(
        calls(&s.fake),
        vec![
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-x/admissions".to_string(), Some(403)),
        ]
    );
    let status = s.store.status().await.unwrap();
    assert_eq!(
        status.admissions,
        vec![(
            "refused".to_string(),
            Some("corporateFitnessMembershipExpired".to_string()),
            1
        )]
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refusal_after_the_member_was_told_will_sync_finds_them_inside_and_the_visit_is_sent() {
    let expired = Member::new("0xAABBCCDD", "acc-x", "X Member")
        .wellpass(Some("corporateFitnessMembershipExpired"));
    let mut s = setup_members(
        "wellpass-refused-inside",
        vec![expired],
        wellpass_settings(LateAdmission::Admit),
        100,
        KEY,
    )
    .await;
    // The first attempt fails (the screen said "Checked in, will sync"); EGYM refuses on the
    // second, well within admission-window.
    s.fake.answer_next(Calls::Lookups, 1, 503, "unavailable");
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.admission, Some(Admission::RefusedLate));
    assert_eq!(
        row.admission_reason.as_deref(),
        Some("corporateFitnessMembershipExpired")
    );
    assert_eq!(
        calls(&s.fake),
        vec![
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(503)),
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-x/admissions".to_string(), Some(403)),
            ("/api/v2/accounts/acc-x/checkins".to_string(), Some(204)),
        ]
    );
    // The member is inside: the recorder is not told otherwise.
    assert!(s.corrections.try_recv().is_err());
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_refused_on_an_admission_pauses_delivery_like_on_any_other_call() {
    let wellpass = Member::new("0xAABBCCDD", "acc-w", "W Member").wellpass(None);
    let s = setup_members(
        "wellpass-key",
        vec![wellpass],
        wellpass_settings(LateAdmission::Admit),
        100,
        KEY,
    )
    .await;
    s.fake
        .answer_next(Calls::Admissions, 10, 403, "missingPermission");
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let store = &s.store;
    let paused = common::poll_every(Duration::from_millis(20), LONG, || async move {
        store.status().await.unwrap().paused_since
    })
    .await;
    assert!(paused.is_some(), "{:?}", calls(&s.fake));
    let row = s.store.event(id).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.attempts, row.admission),
        ("pending", 0, None)
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_old_wellpass_tap_is_admitted_late_or_skipped_as_configured() {
    let members = vec![
        Member::new("0x01", "acc-1", "One").wellpass(None),
        Member::new("0x02", "acc-2", "Two").wellpass(Some("corporateFitnessGymNotInNetwork")),
    ];
    // late = "admit": asked when EGYM is reached; a refusal is late, and the check-in is sent.
    let s = setup_members(
        "wellpass-late-admit",
        members.clone(),
        wellpass_settings(LateAdmission::Admit),
        100,
        KEY,
    )
    .await;
    let twenty_minutes_ago = s.now() - 20 * 60_000;
    let one = s.record("0x01", Kind::CheckIn, twenty_minutes_ago).await;
    let two = s.record("0x02", Kind::CheckIn, twenty_minutes_ago).await;
    assert_eq!(
        s.wait_state(one, "delivered").await.admission,
        Some(Admission::AdmittedLate)
    );
    let row = s.wait_state(two, "delivered").await;
    assert_eq!(row.admission, Some(Admission::RefusedLate));
    assert_eq!(
        row.admission_reason.as_deref(),
        Some("corporateFitnessGymNotInNetwork")
    );
    assert_eq!(
        s.fake
            .received()
            .iter()
            .filter(|r| r.admission().is_some())
            .count(),
        2
    );
    s.stop().await;

    // late = "skip": not asked; counted as skipped.
    let s = setup_members(
        "wellpass-late-skip",
        members,
        wellpass_settings(LateAdmission::Skip),
        100,
        KEY,
    )
    .await;
    let twenty_minutes_ago = s.now() - 20 * 60_000;
    let one = s.record("0x01", Kind::CheckIn, twenty_minutes_ago).await;
    assert_eq!(
        s.wait_state(one, "delivered").await.admission,
        Some(Admission::Skipped)
    );
    assert!(s.fake.received().iter().all(|r| r.admission().is_none()));
    let status = s.store.status().await.unwrap();
    assert_eq!(status.admissions, vec![("skipped".to_string(), None, 1)]);
    s.stop().await;
}

/// When each request of `fake` arrived, in simulated seconds since `since`.
fn seconds_since(fake: &FakeEgym, since: tokio::time::Instant) -> Vec<f64> {
    fake.received()
        .iter()
        .map(|r| r.at.duration_since(since).as_secs_f64())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_with_full_jitter_up_to_the_cap() {
    let s = setup("backoff", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(503));
    let start = tokio::time::Instant::now();
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    s.wait_for(id, "retried ten times", |row| row.attempts >= 10)
        .await;
    // The n-th retry waits a random time up to 2^(n-1) s, never more than 5 minutes: the
    // worker's timer fires when the row says, in steady time, which moves with the timers.
    let tried = seconds_since(&s.fake, start);
    assert!(tried.len() >= 10, "{tried:?}");
    for n in 1..10 {
        let gap = tried[n] - tried[n - 1];
        let ceiling = 2f64.powi(n as i32 - 1).min(300.0);
        assert!(gap <= ceiling + 1e-3, "retry {n} after {gap} s: {tried:?}");
    }
    // EGYM answers again: the event goes at its next due time, nothing else brings it.
    s.fake.set_mode(Mode::Normal);
    let row = s.wait_state(id, "delivered").await;
    assert!(row.attempts >= 11, "{row:?}");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_tag_is_asked_about_at_5_10_20_minutes_then_rejected_when_its_window_ends() {
    let settings = Settings {
        unknown_tag_retry_window: Duration::from_secs(3600),
        ..settings()
    };
    let s = setup("unknown-schedule", &[], settings, KEY).await;
    let start = tokio::time::Instant::now();
    let id = s.record("0x0A0B0C0D0E", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(id, "rejected").await;
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("unknown-tag-retry-window")),
        "{row:?}"
    );
    // Retries at 5, 15, 35 and 75 minutes (5, 10, 20, 40 apart). EGYM's "no member" is
    // believed for 10 minutes, so the retry at 5 minutes asks nobody; the others look the tag
    // up, and the one at 75 minutes finds the hour over.
    let minutes: Vec<i64> = seconds_since(&s.fake, start)
        .iter()
        .map(|s| (s / 60.0).round() as i64)
        .collect();
    assert_eq!(minutes, [0, 15, 35, 75], "{minutes:?}");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_live_tap_goes_ahead_of_a_backlog_that_waited_through_a_restart() {
    let tags: Vec<(String, String)> = (0..40)
        .map(|n| (format!("0x{n:02X}"), format!("acc-{n}")))
        .collect();
    let members: Vec<Member> = tags
        .iter()
        .map(|(t, a)| member(t, a))
        .chain([member("0xFF", "acc-live")])
        .collect();
    let waiting: Vec<&str> = tags.iter().map(|(t, _)| t.as_str()).collect();
    // A slow bucket: the backlog takes seconds to drain.
    let settings = Settings {
        rate_per_second: 10.0,
        ..settings()
    };
    let s = setup_with_outbox("live-first", members, settings, 5, KEY, &waiting).await;
    let posts = |received: &[gym_checkin::egym::fake::Received]| -> Vec<String> {
        received
            .iter()
            .filter_map(|r| r.visit().map(|(account, _)| account.to_string()))
            .collect()
    };
    // The backlog drains, at 10 requests a second (a lookup and a post each); a member taps
    // when five of its posts have gone.
    let (draining, received) = s
        .fake
        .wait_for(LONG, |received| posts(received).len() >= 5)
        .await;
    assert!(draining, "{received:?}");
    let before = posts(&received).len();
    let live = s.record("0xFF", Kind::CheckIn, s.now()).await;
    s.wait_state(live, "delivered").await;
    let sent = posts(&s.fake.received());
    let live_at = sent.iter().position(|a| a == "acc-live").unwrap();
    // Only posts already under way (a few are in flight at once) went between the tap and its
    // own post; most of the backlog was still waiting.
    assert!(
        live_at - before <= 4,
        "{} backlog posts went between the live tap and its post: {sent:?}",
        live_at - before
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_answer_egym_sent_but_that_cannot_be_read_is_said_so_and_tried_again() {
    let s = setup("unreadable", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    // A 200 to the lookup whose body holds no account.
    s.fake.answer_next(Calls::Lookups, 1, 200, "garbled");
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let row = s.wait_for(id, "tried", |row| row.attempts >= 1).await;
    assert_eq!(row.state, EventState::Pending);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("EGYM answered HTTP 200, but its answer cannot be read"),
        "{error}"
    );
    assert!(!error.contains("cannot reach EGYM"), "{error}");
    let status = s.store.status().await.unwrap();
    assert!(
        status
            .last_error
            .is_some_and(|e| e.contains("cannot be read")),
        "status says what happened"
    );
    // Tried again on its own backoff, and delivered.
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.attempts, 2);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_admission_whose_answer_cannot_be_read_is_not_asked_again() {
    let wellpass = Member::new("0xAABBCCDD", "acc-w", "W Member").wellpass(None);
    let s = setup_members(
        "admission-unreadable",
        vec![wellpass],
        wellpass_settings(LateAdmission::Admit),
        100,
        KEY,
    )
    .await;
    // EGYM admits (200) with a body that cannot be read, and the check-in fails once.
    s.fake.answer_next(Calls::Admissions, 1, 200, "garbled");
    s.fake.answer_next(Calls::Visits, 1, 503, "unavailable");
    let id = s.record("0xAABBCCDD", Kind::CheckIn, s.now()).await;
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.admission, Some(Admission::Admitted));
    assert_eq!(
        calls(&s.fake),
        vec![
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-w/admissions".to_string(), Some(200)),
            ("/api/v2/accounts/acc-w/checkins".to_string(), Some(503)),
            ("/api/v2/accounts/acc-w/checkins".to_string(), Some(204)),
        ]
    );
    s.stop().await;
}
