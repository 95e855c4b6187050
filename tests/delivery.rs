//! The delivery worker against the stand-in EGYM, with a real SQLite file: each row of
//! the README's outcome table, per-tag order, and the client-side rate limit.

mod common;

use std::time::Duration;

use common::{
    FakeEgym, LONG, Member, Mode, POLL, TestDir, entrance_tap, member, now_ms, poll_every,
    wait_until,
};
use gym_checkin::clock::Clock;
use gym_checkin::delivery::{LateAdmission, RecorderLinks, Settings, Worker};
use gym_checkin::egym::Client;
use gym_checkin::egym::fake::Calls;
use gym_checkin::egym::{ApiKey, ApiKeySource};
use gym_checkin::liveness::Liveness;
use gym_checkin::screen::Listeners;
use gym_checkin::screen::Screen;
use gym_checkin::store::{Admission, EventRow, Store};
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
    /// Asks the worker, as the watchdog does; it answers between two looks for what to start.
    liveness: Liveness,
    worker: tokio::task::JoinHandle<()>,
}

fn settings() -> Settings {
    Settings {
        rate_per_second: 100.0,
        account_cache_ttl: Duration::from_secs(3600),
        unknown_tag_retry_window: Duration::from_secs(3600),
        admission_window: Duration::from_secs(900),
        late_admission: LateAdmission::Admit,
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
    let dir = TestDir::new(name);
    let store = Store::open(&dir.path("outbox.db")).await.unwrap();
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
    let clock = common::trusted_clock();
    let worker = Worker::new(
        store.clone(),
        client,
        clock.clone(),
        settings,
        ApiKeySource::Literal(key.clone()),
        key,
        RecorderLinks {
            listeners: Listeners {
                screen: Screen::new(clock.clone()),
                metrics: Default::default(),
            },
            recorded: recorded_events,
            corrections: corrections_out,
        },
    );
    let (stop, stopping) = watch::channel(false);
    let mut liveness = Liveness::default();
    let pulse = liveness.register("delivery");
    let worker = tokio::spawn(worker.run(stopping, pulse));
    Setup {
        _dir: dir,
        store,
        fake,
        clock,
        recorded,
        corrections,
        stop,
        liveness,
        worker,
    }
}

impl Setup {
    async fn record(&self, tag: &str, kind: Kind, tapped_at_ms: i64) -> i64 {
        let (mut event, state) = entrance_tap(tag, kind, tapped_at_ms);
        event.boot = self.clock.boot().id;
        let id = self
            .store
            .record_event(event, state, tapped_at_ms)
            .await
            .unwrap();
        self.recorded.send_replace(id);
        id
    }

    async fn row(&self, id: i64) -> EventRow {
        self.store.event(id).await.unwrap().unwrap()
    }

    async fn wait_for(&self, id: i64, what: &str, done: impl Fn(&EventRow) -> bool) -> EventRow {
        let found = poll_every(POLL, LONG, || async {
            let row = self.row(id).await;
            done(&row).then_some(row)
        })
        .await;
        match found {
            Some(row) => row,
            None => panic!(
                "event {id} never became {what}: {:#?}\n{:#?}",
                self.row(id).await,
                self.fake.received()
            ),
        }
    }

    async fn wait_state(&self, id: i64, state: &str) -> EventRow {
        self.wait_for(id, state, |row| row.state == state).await
    }

    /// Waits until the worker has looked again for what it may start, after all that was done
    /// before this call. It answers a question between two looks; an answer to a question asked
    /// after another was answered comes from a later turn of its loop, so the second answer
    /// below is preceded by a look made after the first.
    async fn worker_looked_again(&self) {
        for _ in 0..2 {
            let _ = self.liveness.check_and_ask();
            assert!(
                wait_until(LONG, || self.liveness.check_and_ask().is_empty()).await,
                "the worker does not answer"
            );
        }
    }

    /// Stops the worker; the requests it had in flight are finished (EGYM has them) when this
    /// returns.
    async fn stop_worker(&mut self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut self.worker)
            .await
            .unwrap()
            .unwrap();
    }

    async fn stop(mut self) {
        self.stop_worker().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_answer_marks_the_event_delivered_with_its_account() {
    let s = setup("delivered", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    let tapped = now_ms() - 5_000;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_on_the_schedule_stored_in_the_row() {
    let s = setup("retry", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(503));
    let id = s.record("0xAABBCCDD", Kind::CheckOut, now_ms()).await;
    let row = s.wait_for(id, "retried", |row| row.attempts >= 1).await;
    assert_eq!(row.state, "pending");
    assert_eq!(row.last_status, Some(503));
    assert_eq!(row.last_error_code.as_deref(), Some("injected"));
    s.fake.set_mode(Mode::Normal);
    let row = s.wait_state(id, "delivered").await;
    assert!(row.attempts >= 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_4xx_rejects_the_event_and_keeps_egyms_answer() {
    let s = setup("rejected", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(422));
    let id = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
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
    // Rejected is final: a later event of the card, which would wait behind it were it still
    // open, is delivered, and nothing more was sent for it.
    let sent = s.fake.received().len();
    s.fake.set_mode(Mode::Normal);
    let later = s.record("0xAABBCCDD", Kind::CheckOut, now_ms()).await;
    s.wait_state(later, "delivered").await;
    assert_eq!(
        calls(&s.fake)[sent..],
        [
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-1/checkouts".to_string(), Some(204)),
        ]
    );
    assert_eq!(s.row(id).await.attempts, row.attempts);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tag_waits_on_a_slow_schedule() {
    let s = setup("unknown", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    let first = s.record("0x0A0B0C0D0E", Kind::CheckIn, now_ms()).await;
    let row = s.wait_state(first, "unknown_tag").await;
    assert_eq!(row.last_status, Some(404));
    assert!(
        row.next_attempt_steady_ms > s.clock.steady_ms() + 60_000,
        "slow schedule: {row:?}"
    );
    // A later tap of the same card waits behind the first, in order: a member's tap after it is
    // delivered, and the card's tap, older, is not even tried.
    let second = s.record("0x0A0B0C0D0E", Kind::CheckOut, now_ms()).await;
    let member = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
    s.wait_state(member, "delivered").await;
    assert_eq!(s.row(second).await.attempts, 0);
    let asked_about_card = s
        .fake
        .received()
        .iter()
        .filter(|r| r.lookup_rfid() == Some("0x0A0B0C0D0E"))
        .count();
    assert_eq!(asked_about_card, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tag_is_rejected_once_its_window_is_over_and_the_answer_is_cached() {
    let settings = Settings {
        unknown_tag_retry_window: Duration::ZERO,
        ..settings()
    };
    let s = setup("unknown-window", &[], settings, KEY).await;
    let first = s.record("0x0A0B0C0D0E", Kind::CheckIn, now_ms()).await;
    let second = s.record("0x0A0B0C0D0E", Kind::CheckOut, now_ms()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_pauses_delivery_and_drops_nothing() {
    let mut s = setup(
        "refused",
        &[("0xAA", "acc-1"), ("0xBB", "acc-2")],
        settings(),
        "wrong-key",
    )
    .await;
    let a = s.record("0xAA", Kind::CheckIn, now_ms()).await;
    let b = s.record("0xBB", Kind::CheckIn, now_ms()).await;
    let paused = poll_every(POLL, LONG, || async {
        s.store.status().await.unwrap().paused_since_ms
    })
    .await;
    assert!(paused.is_some(), "{:?}", calls(&s.fake));
    // More taps while paused: they wait too. The worker looks again for what it may start, and
    // is stopped, its requests in flight finished.
    let c = s.record("0xAA", Kind::CheckOut, now_ms()).await;
    s.worker_looked_again().await;
    s.stop_worker().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
            Some(("acc-stale".into(), None)),
            s.clock.steady_ms(),
        )
        .await
        .unwrap();
    let id = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tags_events_arrive_in_order_while_tags_go_side_by_side() {
    let tags = [("0x01", "acc-1"), ("0x02", "acc-2"), ("0x03", "acc-3")];
    let s = setup("order", &tags, settings(), KEY).await;
    let start = now_ms() - 60_000;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        ids.push(s.record(&m.rfid, Kind::CheckIn, now_ms()).await);
    }
    for id in ids {
        s.wait_state(id, "delivered").await;
    }
    let times: Vec<i64> = s.fake.received().iter().map(|r| r.at_ms).collect();
    assert_eq!(
        times.len(),
        24 + 4,
        "lookups, check-ins and four admissions"
    );
    // However the requests fall, no stretch of time holds more than the bucket allows (with
    // 20 ms for the distance between the client's clock reading and the server's).
    for i in 0..times.len() {
        for j in i..times.len() {
            let span_s = ((times[j] - times[i]) as f64 + 20.0) / 1000.0;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_falling_due_later_wakes_the_idle_worker_by_itself() {
    let s = setup("due-later", &[("0xAABBCCDD", "acc-1")], settings(), KEY).await;
    s.fake.set_mode(Mode::Status(503));
    let id = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let id = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
    let row = s.wait_state(id, "delivered").await;
    assert_eq!(row.admission, Some(Admission::Admitted));
    let out = s.record("0xAABBCCDD", Kind::CheckOut, now_ms()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let tapped = now_ms();
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
            checked_in_steady_ms: tapped
        }
    );
    // Finished: a check-out of the card after it, which would wait behind it were it still
    // open, is delivered; nothing more was sent for it, and no check-in ever was.
    let out = s.record("0xAABBCCDD", Kind::CheckOut, now_ms()).await;
    s.wait_state(out, "delivered").await;
    assert_eq!(
        calls(&s.fake),
        vec![
            ("/api/v2/accounts/rfid/0xAABBCCDD".to_string(), Some(200)),
            ("/api/v2/accounts/acc-x/admissions".to_string(), Some(403)),
            ("/api/v2/accounts/acc-x/checkouts".to_string(), Some(204)),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let id = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let id = s.record("0xAABBCCDD", Kind::CheckIn, now_ms()).await;
    let paused = poll_every(POLL, LONG, || async {
        s.store.status().await.unwrap().paused_since_ms
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_wellpass_tap_is_admitted_late_or_skipped_as_configured() {
    let twenty_minutes_ago = now_ms() - 20 * 60_000;
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
