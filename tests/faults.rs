//! Faults a front-desk box meets, injected into the real binary: SIGKILL at random moments, a
//! rate-limited, refusing, stalling or failing EGYM, unknown cards, bursts of frames.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const CHAOS_DRAIN_SECS: u64 = 100;

fn tags(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("0x0A{i:08X}"), format!("acc-{i}")))
        .collect()
}

fn members(tags: &[(String, String)]) -> Vec<Member> {
    tags.iter()
        .map(|(tag, account)| member(tag, account))
        .collect()
}

/// `n` tags for a backlog, one more that a member taps while it drains (the live tag, with its
/// account), and the stand-in EGYM with a member for each.
async fn backlog_and_live_tag(n: usize) -> (Vec<(String, String)>, (String, String), FakeEgym) {
    let mut tags = tags(n + 1);
    let fake = start_egym(members(&tags)).await;
    let live = tags.pop().unwrap();
    (tags, live, fake)
}

/// One pending check-in of each of `tags` in the database in `dir`, recorded a minute ago;
/// returns how many.
async fn seed_one_each(dir: &TestDir, tags: &[(String, String)]) -> usize {
    let names: Vec<String> = tags.iter().map(|(tag, _)| tag.clone()).collect();
    seed_backlog(&dir.path("gym-checkin.db"), &names, 1).await
}

/// Types `tag`'s hex digits and a newline into a line reader.
fn type_tag(pty: &mut Pty, tag: &str) {
    pty.write(format!("{}\n", tag.trim_start_matches("0x")).as_bytes());
}

/// Whether EGYM has accepted a check-in or check-out of `account`.
fn accepted_visit_of(account: &str) -> impl Fn(&[Received]) -> bool + '_ {
    move |received| {
        received
            .iter()
            .any(|r| r.status == Some(204) && r.visit().is_some_and(|(a, _)| a == account))
    }
}

/// Posts answered 2xx, keyed by (account, timestamp), with how often each was received.
fn accepted_posts(received: &[Received]) -> HashMap<(String, i64), usize> {
    let mut posts = HashMap::new();
    for (account, _, timestamp) in visits(received) {
        *posts.entry((account, timestamp)).or_insert(0) += 1;
    }
    posts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tap_logged_as_recorded_survives_sigkill_at_random_moments() {
    const ROUNDS: usize = 30;
    let seed = 0x5EED_2026_u64;
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = TestDir::new("chaos");
    let tags = tags(8);
    let fake = start_egym(members(&tags)).await;
    fake.set_mode(Mode::Random { seed });
    let mut pty = Pty::open();
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(6.0, 60, "1s"),
        r#"repeat-window = "0s""#,
        &serial_reader("desk", &pty.slave_path, "line", r#"debounce = "10ms""#),
    );
    let mut recorded = Vec::new();
    let mut written = 0;
    for _ in 0..ROUNDS {
        let mut daemon = Daemon::start(&config);
        daemon.wait_for_event("reader_connected", LONG).await;
        // Taps stream in; the kill comes at a random moment among them.
        let taps = rng.usize(2..=8);
        let kill_after = rng.usize(0..=taps);
        for i in 0..taps {
            if i == kill_after {
                break;
            }
            let (tag, _) = &tags[rng.usize(0..tags.len())];
            pty.write(format!("{}\r\n", tag.trim_start_matches("0x")).as_bytes());
            written += 1;
            // The seeded gaps between taps and before the kill are what this test injects.
            // A wall-clock wait on purpose.
            tokio::time::sleep(Duration::from_millis(rng.u64(15..120))).await;
        }
        // A wall-clock wait on purpose (as above).
        tokio::time::sleep(Duration::from_millis(rng.u64(0..80))).await;
        daemon.signal(libc::SIGKILL);
        daemon.wait_exit(LONG).await;
        recorded.extend(daemon.recorded());
    }

    // EGYM recovers; the last start must deliver everything that was ever logged as recorded.
    fake.set_mode(Mode::Normal);
    let account_of = |short: &str| {
        let (_, account) = tags
            .iter()
            .find(|(tag, _)| tag.ends_with(&short[short.len() - 4..]))
            .unwrap();
        account.clone()
    };
    let wanted: Vec<(String, i64)> = recorded
        .iter()
        .map(|t| (account_of(&t.tag), t.tapped_at_ms))
        .collect();
    let daemon = Daemon::start(&config);
    let (_, received) = fake
        .wait_for(Duration::from_secs(CHAOS_DRAIN_SECS), |received| {
            let posts = accepted_posts(received);
            wanted.iter().all(|key| posts.contains_key(key))
        })
        .await;
    let posts = accepted_posts(&received);
    let lost: Vec<&(String, i64)> = wanted
        .iter()
        .filter(|key| !posts.contains_key(*key))
        .collect();
    let duplicates: usize = posts.values().map(|n| n - 1).sum();
    println!(
        "chaos (seed {seed:#x}): rounds {ROUNDS}, taps written {written}, recorded {}, lost {}, duplicates {duplicates}, requests {}",
        recorded.len(),
        lost.len(),
        received.len()
    );
    if !lost.is_empty() {
        // Where the lost taps are, for the failure message.
        let conn = rusqlite::Connection::open(dir.path("gym-checkin.db")).unwrap();
        let mut stmt = conn
            .prepare("SELECT id, tag, kind, tapped_at_ms, state, attempts, next_attempt_at_ms - ?1, last_error FROM events WHERE state != 'delivered'")
            .unwrap();
        let rows: Vec<String> = stmt
            .query_map([now_ms()], |row| {
                Ok(format!(
                    "id {} {} {} at {} {} attempts {} due in {} ms: {:?}",
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<String>>(7)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        println!("undelivered rows:\n{}", rows.join("\n"));
    }
    assert!(
        lost.is_empty(),
        "recorded taps never delivered: {lost:?}\n{}",
        daemon.lines().join("\n")
    );
    assert!(
        duplicates <= ROUNDS,
        "{duplicates} duplicates for {ROUNDS} kills"
    );
    assert!(
        recorded.len() >= ROUNDS,
        "too few taps were recorded to prove anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_at_egyms_rate_without_a_single_429() {
    let (rate, burst) = (50.0, 20);
    let dir = TestDir::new("drain");
    let tags = tags(150);
    let fake = start_egym(members(&tags)).await;
    let events = seed_one_each(&dir, &tags).await;
    let pty = Pty::open();
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(rate, burst, "5s"),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    fake.set_rate_limit(rate, burst);
    let daemon = Daemon::start(&config);
    let (ok, received) = fake
        .wait_for(Duration::from_secs(60), |r| count_visits(r) == events)
        .await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let requests = received.len();
    let too_many = received.iter().filter(|r| r.status == Some(429)).count();
    let drain_s =
        (received.last().unwrap().at_ms - received.first().unwrap().at_ms) as f64 / 1000.0;
    let bound_s = (requests as f64 - f64::from(burst)) / rate;
    println!(
        "drain: {requests} requests in {drain_s:.2} s, the bucket allows {bound_s:.2} s, 429s: {too_many}"
    );
    assert_eq!(too_many, 0);
    assert!(
        drain_s >= bound_s * 0.95,
        "faster than the bucket allows: {drain_s:.2} s < {bound_s:.2} s"
    );
    assert!(
        drain_s <= bound_s * 1.5 + 1.5,
        "far slower than the bucket allows: {drain_s:.2} s vs {bound_s:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_shared_with_another_box_slows_the_client_down_and_everything_lands() {
    let dir = TestDir::new("shared-key");
    let tags = tags(60);
    let fake = start_egym(members(&tags)).await;
    let events = seed_one_each(&dir, &tags).await;
    let pty = Pty::open();
    // This box may send 40 per second, but the other box leaves it only 10.
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(40.0, 40, "5s"),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    fake.set_rate_limit(10.0, 10);
    let daemon = Daemon::start(&config);
    let (ok, received) = fake
        .wait_for(Duration::from_secs(120), |r| count_visits(r) == events)
        .await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let too_many = received.iter().filter(|r| r.status == Some(429)).count();
    let drain_s =
        (received.last().unwrap().at_ms - received.first().unwrap().at_ms) as f64 / 1000.0;
    println!(
        "shared key: {} requests ({too_many} answered 429) in {drain_s:.1} s; EGYM allows 10/s, the box was configured for 40/s",
        received.len()
    );
    // Once slowed down, the client stays near EGYM's rate: 429s are a small share.
    assert!(
        too_many * 4 < received.len(),
        "{too_many} of {} requests answered 429",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tap_goes_ahead_of_a_draining_backlog() {
    let dir = TestDir::new("live-first");
    let (tags, (live_tag, live_account), fake) = backlog_and_live_tag(100).await;
    let backlog = seed_one_each(&dir, &tags).await;
    let mut pty = Pty::open();
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(6.0, 6, "5s"),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let (started, received) = fake.wait_for(LONG, |r| r.len() >= 10).await;
    assert!(started, "the backlog is not being sent: {received:#?}");
    let tapped = Instant::now();
    type_tag(&mut pty, &live_tag);
    let (ok, received) = fake.wait_for(LONG, accepted_visit_of(&live_account)).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let latency = tapped.elapsed();
    let backlog_left = backlog - count_visits(&received);
    println!(
        "live tap reached EGYM in {:.2} s with {backlog_left} of {backlog} backlog events still to go",
        latency.as_secs_f64()
    );
    assert!(
        latency < Duration::from_secs(5),
        "the live tap waited {latency:?}"
    );
    assert!(
        backlog_left > 50,
        "the backlog was nearly drained; the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tap_goes_ahead_of_a_backlog_left_by_an_outage_a_few_seconds_ago() {
    let dir = TestDir::new("live-after-outage");
    let (tags, (live_tag, live_account), fake) = backlog_and_live_tag(100).await;
    fake.set_rate_limit(10.0, 10);
    fake.set_mode(Mode::Down);
    let mut pty = Pty::open();
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(10.0, 10, "5s"),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    // 100 members tap during a short outage; EGYM returns seconds later.
    for (tag, _) in &tags {
        type_tag(&mut pty, tag);
    }
    daemon
        .wait_for_events("tap_recorded", tags.len(), LONG)
        .await;
    // The outage is seen after all of them were recorded: they are a backlog. (Ended before any
    // attempt failed, it would have been no outage to the service, and the 100 taps as live as
    // the new one.)
    let failed = |daemon: &Daemon| {
        daemon
            .lines()
            .iter()
            .filter(|l| field(l, "event") == Some("delivery_failed"))
            .count()
    };
    let failed_before = failed(&daemon);
    daemon
        .wait_for_events("delivery_failed", failed_before + 2, LONG)
        .await;
    fake.set_mode(Mode::Normal);
    // The backlog drains at EGYM's 10 requests per second: two for each event.
    let (draining, received) = fake.wait_for(LONG, |r| count_visits(r) >= 3).await;
    assert!(draining, "the backlog does not drain: {received:#?}");
    let tapped = Instant::now();
    type_tag(&mut pty, &live_tag);
    // A rate-limit answer in the drain just after the tap is no outage: the tap stays live.
    daemon
        .wait_for_events("tap_recorded", tags.len() + 1, LONG)
        .await;
    fake.answer_next(
        gym_checkin::egym::fake::Calls::Visits,
        1,
        429,
        "tooManyRequests",
    );
    let (ok, received) = fake.wait_for(LONG, accepted_visit_of(&live_account)).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let latency = tapped.elapsed();
    let backlog_left = (tags.len() + 1).saturating_sub(count_visits(&received));
    println!(
        "a new tap after an outage reached EGYM in {:.2} s, with {backlog_left} of {} backlog events still to go",
        latency.as_secs_f64(),
        tags.len()
    );
    // Behind the backlog it would wait for more than 50 events at 10 requests per second.
    assert!(
        latency < Duration::from_secs(5),
        "the new tap waited {latency:?} behind the backlog\n{}",
        daemon.lines().join("\n")
    );
    assert!(
        backlog_left > 50,
        "the backlog was nearly drained; the test proves nothing"
    );
    // None but the one answered on purpose above (if it came before the new tap's check-in).
    assert!(
        received.iter().filter(|r| r.status == Some(429)).count() <= 1,
        "EGYM's rate limit was hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_made_while_delivery_is_held_off_goes_first_when_it_resumes() {
    let dir = TestDir::new("live-during-hold");
    let (tags, (live_tag, live_account), fake) = backlog_and_live_tag(100).await;
    let backlog = seed_one_each(&dir, &tags).await;
    // EGYM is overloaded: it answers 503, and the worker holds off for the retry delay.
    fake.set_mode(Mode::Status(503));
    let mut pty = Pty::open();
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(10.0, 10, "5s"),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let (failing, received) = fake
        .wait_for(LONG, |r| {
            r.iter().filter(|r| r.status == Some(503)).count() >= 6
        })
        .await;
    assert!(failing, "fewer than 6 answers 503: {received:#?}");
    fake.set_mode(Mode::Normal);
    // A member taps while the worker still holds off.
    let tapped = Instant::now();
    type_tag(&mut pty, &live_tag);
    let (ok, received) = fake.wait_for(LONG, accepted_visit_of(&live_account)).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let backlog_left = (backlog + 1).saturating_sub(count_visits(&received));
    println!(
        "a tap made during a hold reached EGYM {:.2} s later, with {backlog_left} of {backlog} backlog events still to go",
        tapped.elapsed().as_secs_f64()
    );
    assert!(
        backlog_left >= backlog - 8,
        "the tap waited behind the backlog: {backlog_left} of {backlog} left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_pauses_delivery_until_the_key_file_is_corrected() {
    let dir = TestDir::new("refused-key");
    let tags = tags(3);
    let fake = FakeEgym::start(members(&tags), "the-right-key")
        .await
        .unwrap();
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        r#"repeat-window = "0s""#,
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    for (tag, _) in &tags {
        type_tag(&mut pty, tag);
    }
    daemon.wait_for_events("tap_recorded", 3, LONG).await;
    daemon.wait_for_event("delivery_paused", LONG).await;
    let status = status_json(&config);
    assert_eq!(status["delivery_paused"], true, "{status}");
    assert!(
        status["delivery_paused_reason"]
            .as_str()
            .unwrap()
            .contains("missingPermission"),
        "{status}"
    );
    assert_eq!(status["events"]["pending"], 3, "{status}");
    assert_eq!(status["events"]["rejected"], 0, "{status}");
    let paused_lines = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("delivery paused"))
        .count();
    assert_eq!(paused_lines, 1);

    // The key file is corrected; no restart. It is read again with the next probe.
    std::fs::write(dir.path("api-key"), "the-right-key\n").unwrap();
    let fixed = Instant::now();
    let (ok, received) = fake
        .wait_for(Duration::from_secs(60), |r| count_visits(r) == 3)
        .await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    println!(
        "delivery resumed {:.1} s after the key was corrected",
        fixed.elapsed().as_secs_f64()
    );
    // While paused, nothing was sent: only requests already in flight were refused, and the
    // probe came a whole probe interval after the first refusal.
    let refused = received
        .iter()
        .take_while(|r| r.status == Some(403))
        .count();
    assert!(
        (1..=3).contains(&refused) && received[refused..].iter().all(|r| r.status != Some(403)),
        "{refused} requests refused: {received:#?}"
    );
    let probe_interval_ms = gym_checkin::delivery::PAUSE_PROBE_INTERVAL.as_millis() as i64;
    assert!(
        received[refused].at_ms >= received[0].at_ms + probe_interval_ms,
        "probed {} ms after the first refusal",
        received[refused].at_ms - received[0].at_ms
    );
    daemon.wait_for_event("delivery_resumed", LONG).await;
    assert_eq!(status_json(&config)["delivery_paused"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_card_tapped_ten_times_costs_a_few_lookups_and_is_explained() {
    let dir = TestDir::new("unknown-card");
    // One member, whose card is tapped last.
    let fake = start_egym(vec![member("0x0D00A1B2C3", "acc-member")]).await;
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        r#"repeat-window = "0s""#,
        &serial_reader(
            "front-desk",
            &pty.slave_path,
            "line",
            r#"debounce = "10ms""#,
        ),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    for n in 1..=10 {
        pty.write(b"0C000621A5\n");
        let tapped = daemon.wait_for_tap(n).await;
        // The next tap of the card is a new presentation.
        wait_until_past(tapped_at_ms(&tapped) + 10).await;
    }
    daemon.wait_for_event("unknown_tag", LONG).await;
    // A member taps after them: their events are older, and would be sent no later than the
    // member's if any of them could be.
    pty.write(b"0D00A1B2C3\n");
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    daemon.wait_for_line("outcome=\"delivered\"", LONG).await;
    let lookups = received
        .iter()
        .filter(|r| r.lookup_rfid().is_some_and(|rfid| rfid.ends_with("21A5")))
        .count();
    println!("10 taps of an unknown card: {lookups} lookups");
    assert!(lookups <= 2, "{lookups} lookups for 10 taps");
    // The journal says the card shortened; its renderings, the whole id in every form, are for
    // staff, in `status` (and on the staff page).
    let lines = daemon.lines();
    let warning = lines.iter().find(|l| l.contains("unknown tag")).unwrap();
    assert!(warning.contains("tag=0x…21A5"), "{warning}");
    assert!(
        !warning.contains("0C000621A5") && !warning.contains("renderings="),
        "the full tag is a credential: {warning}"
    );
    let status = status_json(&config);
    let card = &status["unknown_cards"][0];
    assert_eq!(card["rfid"], "0x0C000621A5", "{status}");
    assert_eq!(card["reader"], "front-desk", "{status}");
    let renderings: Vec<String> = card["renderings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["name"].as_str().unwrap(),
                r["value"].as_str().unwrap()
            )
        })
        .collect();
    for rendering in [
        "hex=0C000621A5",
        "hex-reversed=A52106000C",
        "low32-dec10=0000401829",
        "w26-facility,card=006,08613",
    ] {
        assert!(
            renderings.iter().any(|r| r == rendering),
            "{rendering} missing from {renderings:?}"
        );
    }
    assert_eq!(status["events"]["unknown_tag"], 1, "{status}");
    // The other nine wait behind the first for the card's enrolment, not for delivery.
    assert_eq!(status["events"]["waiting_for_enrolment"], 9, "{status}");
    assert_eq!(status["events"]["pending"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_rejects_the_event_and_is_counted_in_status() {
    let dir = TestDir::new("rejected");
    let tags = tags(1);
    let fake = start_egym(members(&tags)).await;
    fake.set_mode(Mode::Status(422));
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    type_tag(&mut pty, &tags[0].0);
    daemon.wait_for_event("rejected", LONG).await;
    let status = status_json(&config);
    assert_eq!(status["events"]["rejected"], 1, "{status}");
    assert_eq!(status["rejections"][0]["status"], 422, "{status}");
    assert_eq!(
        status["rejections"][0]["error_code"], "injected",
        "{status}"
    );
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 422 injected: injected failure"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_egym_costs_one_timeout_per_try_and_taps_go_on_being_recorded() {
    let dir = TestDir::new("stalled");
    let tags = tags(4);
    let fake = start_egym(members(&tags)).await;
    fake.set_mode(Mode::Stall);
    let mut pty = Pty::open();
    let config = write_config_with(
        &dir,
        &fake.base_url(),
        &egym_limits(50.0, 50, "1s"),
        r#"repeat-window = "0s""#,
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let started = Instant::now();
    for (n, (tag, _)) in tags.iter().enumerate() {
        type_tag(&mut pty, tag);
        daemon.wait_for_events("tap_recorded", n + 1, LONG).await;
    }
    daemon.wait_for_events("delivery_failed", 2, LONG).await;
    let elapsed = started.elapsed().as_secs_f64();
    let failures: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| field(l, "event") == Some("delivery_failed"))
        .collect();
    assert!(
        failures.iter().all(|l| l.contains("timed out")),
        "{failures:#?}"
    );
    let requests = fake.received().len();
    println!("stalled EGYM: {requests} requests in {elapsed:.1} s with a 1 s timeout");
    // Each try waits out its timeout; the worker holds back after each failure.
    assert!(
        (requests as f64) <= elapsed / 1.0 * 4.0 + 4.0,
        "{requests} requests in {elapsed:.1} s"
    );
    fake.set_mode(Mode::Normal);
    let (ok, _) = fake
        .wait_for(Duration::from_secs(60), |r| count_visits(r) == 4)
        .await;
    assert!(ok, "{}", daemon.lines().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_thousand_frames_on_two_readers_loses_nothing() {
    const FRAMES: usize = 1_000;
    let dir = TestDir::new("burst");
    let fake = start_egym(Vec::new()).await;
    fake.set_mode(Mode::Down);
    let mut ptys = [Pty::open(), Pty::open()];
    let readers: String = ptys
        .iter()
        .enumerate()
        .map(|(i, pty)| serial_reader(&format!("reader-{i}"), &pty.slave_path, "em4100", ""))
        .collect();
    let config = write_config(&dir, &fake.base_url(), r#"repeat-window = "0s""#, &readers);
    let daemon = Daemon::start(&config);
    daemon.wait_for_events("reader_connected", 2, LONG).await;
    let bursts: Vec<Vec<u8>> = (0..2)
        .map(|reader| {
            (0..FRAMES)
                .flat_map(|n| em4100_frame(&format!("{reader:02X}{n:08X}")))
                .collect()
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (pty, burst) in ptys.iter_mut().zip(&bursts) {
            scope.spawn(move || pty.write(burst));
        }
    });
    daemon
        .wait_for_events("tap_recorded", 2 * FRAMES, Duration::from_secs(120))
        .await;
    println!(
        "burst: {} frames on 2 readers recorded in {:.2} s",
        2 * FRAMES,
        started.elapsed().as_secs_f64()
    );
    let conn = rusqlite::Connection::open(dir.path("gym-checkin.db")).unwrap();
    let (events, tags): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT tag) FROM events",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((events, tags), (2 * FRAMES as i64, 2 * FRAMES as i64));
}

/// The database's disk fails (`fault`: enospc, erofs or eio, see the shim) while taps come in.
async fn taps_survive_a_failing_disk(name: &str, fault: &str) {
    let dir = TestDir::new(name);
    let tags = tags(3);
    let fake = start_egym(members(&tags)).await;
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let switch = dir.path("disk-fault");
    let daemon = Daemon::start_with_disk_fault_env(&config, &switch, &[READER_DEBUG]);
    daemon.wait_for_event("reader_connected", LONG).await;
    let tap = |pty: &mut Pty, i: usize| type_tag(pty, &tags[i].0);
    tap(&mut pty, 0);
    // Delivered and marked so before the disk fails (else its mark fails, and it is sent again).
    daemon.wait_for_event("delivered", LONG).await;

    std::fs::write(&switch, fault).unwrap();
    let mut written_ms = vec![now_ms()];
    tap(&mut pty, 1);
    daemon
        .wait_for_line("cannot write to the database", LONG)
        .await;
    // Typed twice: the reader says the second (within the debounce) once it has handed the
    // first to the recorder.
    written_ms.push(now_ms());
    tap(&mut pty, 2);
    tap(&mut pty, 2);
    daemon
        .wait_for_line("same card still presented", LONG)
        .await;
    // The recorder tries again, with the second tap or by its own schedule, and fails again.
    let failed = disk_faults_injected(&switch);
    assert!(
        wait_until(LONG, || disk_faults_injected(&switch) > failed).await,
        "the recorder did not try again"
    );
    assert_eq!(
        daemon.recorded().len(),
        1,
        "a tap was logged as recorded while the disk failed"
    );
    let errors = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("cannot write to the database"))
        .count();
    assert_eq!(errors, 1, "one loud line, not one per retry");

    let disk_back = now_ms();
    std::fs::remove_file(&switch).unwrap();
    let recovered = daemon
        .wait_for_line("the database can be written again", LONG)
        .await;
    assert_eq!(field(&recovered, "held"), Some("2"), "{recovered}");
    daemon.wait_for_events("tap_recorded", 3, LONG).await;
    let recorded = daemon.recorded();
    for (tap, written) in recorded[1..].iter().zip(&written_ms) {
        // Read while the disk failed, stamped then, written later.
        assert!(
            (tap.tapped_at_ms - written).abs() < 1_000 && tap.tapped_at_ms < disk_back,
            "{tap:?}"
        );
    }
    let (ok, received) = fake
        .wait_for(Duration::from_secs(60), |r| count_visits(r) == 3)
        .await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    // Different tags may arrive in either order; each with its own tap time.
    let mut stamps: Vec<i64> = visits(&received).iter().map(|(_, _, t)| *t).collect();
    let mut expected: Vec<i64> = recorded.iter().map(|t| t.tapped_at_ms).collect();
    stamps.sort_unstable();
    expected.sort_unstable();
    assert_eq!(stamps, expected);
    println!(
        "{name}: 2 taps held in memory while the disk failed, recorded and delivered after it recovered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_survive_a_full_disk() {
    taps_survive_a_failing_disk("disk-full", "enospc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_survive_a_read_only_filesystem() {
    taps_survive_a_failing_disk("disk-read-only", "erofs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_survive_a_failing_fsync() {
    taps_survive_a_failing_disk("disk-fsync", "eio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_that_cannot_be_kept_is_said_and_counted_and_changes_no_visit() {
    let dir = TestDir::new("memory-full");
    let mut pty = Pty::open();
    // EGYM is out of reach throughout: delivery only retries, cheaply.
    let config = write_config(
        &dir,
        "http://127.0.0.1:9",
        "repeat-window = \"0s\"",
        &serial_reader("desk", &pty.slave_path, "line", "debounce = \"0ms\""),
    );
    let switch = dir.path("disk-fault");
    let daemon = Daemon::start_with_disk_fault(&config, &switch);
    daemon.wait_for_event("reader_connected", LONG).await;
    std::fs::write(&switch, "enospc").unwrap();
    // The disk is full: 10,000 taps fill the memory buffer, then one more cannot be kept.
    let held = gym_checkin::recorder::MAX_HELD;
    let taps: String = (0..held).map(|i| format!("0B{i:08X}\n")).collect();
    pty.write(taps.as_bytes());
    daemon
        .wait_for_line("cannot write to the database", LONG)
        .await;
    pty.write(b"0C000621A5\n");
    daemon.wait_for_event("tap_lost", LONG).await;

    std::fs::remove_file(&switch).unwrap();
    daemon
        .wait_for_line("the database can be written again", LONG)
        .await;
    daemon
        .wait_for_events("tap_recorded", held, Duration::from_secs(60))
        .await;
    let status = status_json(&config);
    assert_eq!(status["lost"], 1, "{status}");
    assert_eq!(status["events"]["pending"], held as u64, "{status}");
    // The lost tap was a check-in that never happened: the member's next tap is one.
    pty.write(b"0C000621A5\n");
    daemon.wait_for_events("tap_recorded", held + 1, LONG).await;
    let last = daemon.recorded().pop().unwrap();
    assert_eq!(
        (last.tag.as_str(), last.kind.as_str()),
        ("0x…21A5", "checkin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_is_refused_and_left_untouched() {
    let dir = TestDir::new("damaged-db");
    let tags = tags(40);
    let db = dir.path("gym-checkin.db");
    let tag_names: Vec<String> = tags.iter().map(|(t, _)| t.clone()).collect();
    seed_backlog(&db, &tag_names, 5).await;
    // Checkpointed; now damage the header of every page after the first (the schema).
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4 * 4096, "{} bytes", bytes.len());
    for page in bytes.chunks_mut(4096).skip(1) {
        page[..16].fill(0xA5);
    }
    std::fs::write(&db, &bytes).unwrap();
    let pty = Pty::open();
    let config = write_config(
        &dir,
        "http://127.0.0.1:9",
        "",
        &serial_reader("desk", &pty.slave_path, "line", ""),
    );
    let mut daemon = Daemon::start(&config);
    let status = daemon.wait_exit(LONG).await;
    assert_eq!(status.code(), Some(1));
    let log = daemon.lines().join("\n");
    assert!(
        log.contains(&format!(
            "{} is not a gym-checkin database or is damaged",
            db.display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the damaged file was changed"
    );

    // And a file that is no database at all.
    let notes = b"not a database\n".repeat(1000);
    std::fs::write(&db, &notes).unwrap();
    let mut daemon = Daemon::start(&config);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(1));
    let log = daemon.lines().join("\n");
    assert!(log.contains("is not a gym-checkin database"), "{log}");
    assert_eq!(std::fs::read(&db).unwrap(), notes);
}
