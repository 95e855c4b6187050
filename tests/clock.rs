//! The real binary under a wall clock that is wrong, then stepped (libfaketime): taps keep
//! their true times, and no step moves a schedule, a window or a visit.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const ALEX: &str = "0C000621A5";
const BILLIE: &str = "4B00423C15";
const UNKNOWN: &str = "0A0B0C0D0E";

fn em4100_reader(path: &std::path::Path) -> String {
    serial_reader("entrance", path, "em4100", "debounce = \"100ms\"")
}

/// Alex and Billie; the third card, `UNKNOWN`, is no member's.
fn members() -> Vec<Member> {
    vec![
        member(&format!("0x{ALEX}"), "acc-alex"),
        member(&format!("0x{BILLIE}"), "acc-billie"),
    ]
}

fn visit_of(received: &[Received], account: &str) -> Vec<(String, i64)> {
    visits(received)
        .into_iter()
        .filter(|(a, _, _)| a == account)
        .map(|(_, what, at)| (what, at))
        .collect()
}

/// A service whose clock is trusted while the file `synced` exists, with its directory, the
/// stand-in EGYM, an EM4100 reader and its configuration.
async fn trusted_by_file(name: &str) -> (TestDir, FakeEgym, Pty, PathBuf, PathBuf) {
    let dir = TestDir::new(name);
    let fake = start_egym(members()).await;
    let pty = Pty::open();
    let synced = dir.path("synchronized");
    let config = write_config_full(
        &dir,
        &fake.base_url(),
        EGYM_LIMITS,
        "",
        &format!("trusted-when = \"file:{}\"", synced.display()),
        &em4100_reader(&pty.slave_path),
    );
    (dir, fake, pty, synced, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_made_while_the_clock_is_days_behind_reach_egym_with_their_true_times_once_it_is_trusted()
 {
    let (dir, fake, mut pty, synced, config) = trusted_by_file("clock-behind").await;
    // The box booted with the time of a shutdown three days ago, and NTP has not reached it.
    let clock = FakeTime::new(&dir, "-3d");
    let mut daemon = Daemon::start_with_env(&config, &clock.env("boot-behind"));
    daemon.wait_for_event("reader_connected", LONG).await;
    daemon.wait_for_line("clock NOT trusted", LONG).await;

    let alex_tapped = now_ms();
    pty.write(&em4100_frame(ALEX));
    daemon.wait_for_event("tap_recorded", LONG).await;
    let recorded = &daemon
        .lines()
        .into_iter()
        .find(|l| field(l, "event") == Some("tap_recorded"))
        .unwrap();
    assert_eq!(field(recorded, "clock"), Some("untrusted"), "{recorded}");
    let stale: i64 = field(recorded, "tapped_at_ms").unwrap().parse().unwrap();
    assert!(
        (alex_tapped - 3 * 86_400_000 - stale).abs() < 1_000,
        "the untrusted clock read {stale}"
    );
    let status = status_json(&config);
    assert_eq!(status["clock"]["trusted"], false, "{status}");
    assert_eq!(status["clock"]["taps_waiting"], 1, "{status}");
    let text = status_text(&config);
    assert!(
        text.contains("clock: NOT TRUSTED") && text.contains("does not exist; 1 tap waits for it"),
        "{text}"
    );

    // A restart in between, in the same boot; a second tap after it.
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    let daemon = Daemon::start_with_env(&config, &clock.env("boot-behind"));
    daemon.wait_for_event("reader_connected", LONG).await;
    let billie_tapped = now_ms();
    pty.write(&em4100_frame(BILLIE));
    daemon.wait_for_event("tap_recorded", LONG).await;
    assert!(
        fake.received().is_empty(),
        "held taps reached EGYM: {:?}",
        fake.received()
    );

    // NTP reaches the network: the clock is stepped to the true time, then said synchronized.
    clock.set("+0");
    std::fs::write(&synced, "").unwrap();
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 2).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let alex = visit_of(&received, "acc-alex");
    let billie = visit_of(&received, "acc-billie");
    assert_eq!(
        (alex[0].0.as_str(), billie[0].0.as_str()),
        ("checkins", "checkins")
    );
    let errors = [alex[0].1 - alex_tapped, billie[0].1 - billie_tapped];
    println!("re-stamped tap times, error against the true tap time: {errors:?} ms");
    for error in errors {
        assert!(
            error.abs() <= 1_000,
            "re-stamped {error} ms off: {received:#?}"
        );
    }
    assert_eq!(
        daemon
            .lines()
            .iter()
            .filter(|l| l.contains("clock trusted"))
            .count(),
        1,
        "the change is said once"
    );
    daemon.wait_for_events("tap_placed", 2, LONG).await;
    let status = status_json(&config);
    assert_eq!(status["clock"]["trusted"], true, "{status}");
    assert_eq!(status["clock"]["taps_waiting"], 0, "{status}");
    assert_eq!(status["clock"]["restamped"], 2, "{status}");
    assert_eq!(status["clock"]["approximate"], 0, "{status}");
    let text = status_text(&config);
    assert!(
        text.contains(&format!(
            "clock: trusted: {} exists; 2 taps stamped from a trusted reading",
            synced.display()
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_back_of_an_hour_during_an_outage_leaves_retries_due_when_they_were() {
    let dir = TestDir::new("clock-back");
    let fake = start_egym(members()).await;
    fake.set_mode(Mode::Down);
    let mut pty = Pty::open();
    let config = write_config_full(
        &dir,
        &fake.base_url(),
        EGYM_LIMITS,
        "",
        "trusted-when = \"always\"",
        &em4100_reader(&pty.slave_path),
    );
    let clock = FakeTime::new(&dir, "+0");
    let daemon = Daemon::start_with_env(&config, &clock.env("boot-back"));
    daemon.wait_for_event("reader_connected", LONG).await;
    let tapped = now_ms();
    pty.write(&em4100_frame(ALEX));
    // Three failures: the next try is due within 8 s.
    daemon.wait_for_events("delivery_failed", 3, LONG).await;
    clock.set("-1h");
    daemon
        .wait_for_line("wall clock stepped by -1h", LONG)
        .await;
    // Stopped and started again while stepped: the schedule is in the row, in steady time.
    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    let daemon = Daemon::start_with_env(&config, &clock.env("boot-back"));
    daemon.wait_for_event("reader_connected", LONG).await;

    let back = Instant::now();
    fake.set_mode(Mode::Normal);
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let waited = back.elapsed();
    println!("delivered {waited:?} after EGYM returned, the clock stepped back an hour");
    assert!(
        waited < Duration::from_secs(20),
        "the retry waited {waited:?}"
    );
    // The clock, trusted, now says the tap was made an hour earlier than it said then: the
    // stamp would be in the future, so it is counted back from now by the time since the tap.
    let at = visit_of(&received, "acc-alex")[0].1;
    assert!(
        (at - (tapped - 3_600_000)).abs() < 1_000,
        "stamped {at}, tapped {tapped} by the clock before the step"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_forward_of_two_days_moves_no_window_no_cache_age_and_no_check_out() {
    let dir = TestDir::new("clock-forward");
    let fake = start_egym(members()).await;
    let mut pty = Pty::open();
    let config = write_config_full(
        &dir,
        &fake.base_url(),
        &format!("{EGYM_LIMITS}\nunknown-tag-retry-window = \"1h\"\naccount-cache-ttl = \"1h\""),
        "repeat-window = \"5s\"\nauto-checkout-after = \"1h\"",
        "trusted-when = \"always\"",
        &em4100_reader(&pty.slave_path),
    );
    let clock = FakeTime::new(&dir, "+0");
    let daemon = Daemon::start_with_env(&config, &clock.env("boot-forward"));
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame(ALEX));
    pty.write(&em4100_frame(UNKNOWN));
    daemon.wait_for_events("tap_recorded", 2, LONG).await;
    // Read while the clock was still true: the windows below are counted from its time.
    let alex = daemon
        .recorded()
        .into_iter()
        .find(|r| r.tag.ends_with("21A5"));
    let checked_in_ms = alex.unwrap().tapped_at_ms;
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    daemon.wait_for_event("unknown_tag", LONG).await;

    clock.set("+2d");
    // Alex lifts the card and taps again, past the debounce: within the repeat window, whatever
    // the wall clock says.
    wait_until_past(checked_in_ms + 100).await;
    pty.write(&em4100_frame(ALEX));
    let again = daemon.wait_for_tap(3).await;
    assert_eq!(field(&again, "outcome"), Some("ignored"), "{again}");
    daemon
        .wait_for_line("wall clock stepped by +2d", LONG)
        .await;
    // A restart after the step; Billie checks in, and Alex, once the window is over, out.
    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    let daemon = Daemon::start_with_env(&config, &clock.env("boot-forward"));
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame(BILLIE));
    // Billie's tap is decided after any check-out that wrongly fell due with the step: those are
    // made as the service starts, before any tap.
    let billie = daemon.wait_for_tap(1).await;
    assert_eq!(field(&billie, "outcome"), Some("recorded"), "{billie}");
    wait_until_past(checked_in_ms + 5_000).await;
    pty.write(&em4100_frame(ALEX));
    // Anything else that wrongly fell due with the step (a retry of the unknown tag) was due as
    // the service started, and is sent no later than these visits, tapped after the start.
    let (ok, _) = fake.wait_for(LONG, |r| count_visits(r) == 3).await;
    assert!(ok, "{}", daemon.lines().join("\n"));

    let received = fake.received();
    let alex: Vec<String> = visit_of(&received, "acc-alex")
        .into_iter()
        .map(|(what, _)| what)
        .collect();
    assert_eq!(alex, ["checkins", "checkouts"], "{received:#?}");
    let lookups = |tag: &str| {
        received
            .iter()
            .filter(|r| r.lookup_rfid() == Some(&format!("0x{tag}")))
            .count()
    };
    // The cache's hour counts real time: Alex's account is still known.
    assert_eq!(lookups(ALEX), 1, "Alex was looked up again: {received:#?}");
    // The unknown tag is asked about again after 5 minutes of real time, not at once.
    assert_eq!(
        lookups(UNKNOWN),
        1,
        "the unknown tag was asked about again early"
    );
    let status = status_json(&config);
    assert_eq!(status["events"]["unknown_tag"], 1, "{status}");
    assert_eq!(status["events"]["rejected"], 0, "{status}");
    assert_eq!(status["automatic_checkouts"], 0, "{status}");
    // Billie and the unknown card are inside; Alex left.
    assert_eq!(status["open_visits"], 2, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_from_a_boot_that_ended_before_the_clock_was_trusted_is_sent_within_its_bounds() {
    let (dir, fake, mut pty, synced, config) = trusted_by_file("clock-approximate").await;
    let clock = FakeTime::new(&dir, "+0");
    std::fs::write(&synced, "").unwrap();

    // Boot 1: the clock is trusted; the service stops (its last trusted time is written down).
    let mut first = Daemon::start_with_env(&config, &clock.env("boot-1"));
    first.wait_for_line("clock trusted", LONG).await;
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(LONG).await.code(), Some(0));
    let first_stopped = now_ms();

    // Boot 2: the clock is a month behind and never trusted; a tap.
    std::fs::remove_file(&synced).unwrap();
    clock.set("-30d");
    let mut second = Daemon::start_with_env(&config, &clock.env("boot-2"));
    second.wait_for_event("reader_connected", LONG).await;
    let tapped = now_ms();
    pty.write(&em4100_frame(ALEX));
    second.wait_for_event("tap_recorded", LONG).await;
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(LONG).await.code(), Some(0));

    // Boot 3: trusted from the start.
    clock.set("+0");
    std::fs::write(&synced, "").unwrap();
    let third = Daemon::start_with_env(&config, &clock.env("boot-3"));
    third.wait_for_line("clock trusted", LONG).await;
    // Boot 3 began when it first read its clock, just before it said so.
    let third_started = third
        .lines()
        .iter()
        .find(|l| l.contains("clock trusted"))
        .map(|l| logged_at_ms(l))
        .unwrap();
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(ok, "{}", third.lines().join("\n"));
    let sent = visit_of(&received, "acc-alex")[0].1;
    println!(
        "approximate tap time: {} ms from the true time (boot 1 stopped {} ms before the tap)",
        sent - tapped,
        tapped - first_stopped
    );
    assert!(
        first_stopped - 2_000 <= sent && sent <= third_started,
        "sent {sent}: not between boot 1's last trusted time {first_stopped} and boot 3's start {third_started}"
    );
    assert!(
        (sent - tapped).abs() < 5_000,
        "sent {sent}, tapped {tapped}"
    );
    // Placed between bounds, not at a time counted back: an approximate placement.
    let approximate = || {
        third
            .events("tap_placed")
            .iter()
            .any(|l| field(l, "not_before").is_some())
    };
    assert!(
        wait_until(LONG, approximate).await,
        "{}",
        third.lines().join("\n")
    );
    let line = third
        .lines()
        .into_iter()
        .find(|l| field(l, "event") == Some("tap_placed") && field(l, "not_before").is_some())
        .unwrap();
    assert_eq!(field(&line, "clock"), Some("approximate"), "{line}");
    let status = status_json(&config);
    assert_eq!(status["clock"]["approximate"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_can_never_be_trusted_is_said_loudly_at_start() {
    let dir = TestDir::new("clock-never");
    let pty = Pty::open();
    let config = write_config_full(
        &dir,
        "http://127.0.0.1:9",
        EGYM_LIMITS,
        "",
        "trusted-when = \"file:/nonexistent-gym-checkin-dir/synchronized\"",
        &em4100_reader(&pty.slave_path),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let lines = daemon.lines();
    let said = lines
        .iter()
        .find(|l| l.contains("whose directory does not exist"))
        .unwrap_or_else(|| panic!("{}", lines.join("\n")));
    assert!(
        said.contains("ERROR") && said.contains("which may be never"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_taps_are_placed_once_the_database_can_be_written_again() {
    let (dir, fake, mut pty, synced, config) = trusted_by_file("clock-place-retry").await;
    let switch = dir.path("disk-fault");
    let daemon = Daemon::start_with_disk_fault(&config, &switch);
    daemon.wait_for_event("reader_connected", LONG).await;
    let tapped = now_ms();
    pty.write(&em4100_frame(ALEX));
    daemon.wait_for_event("tap_recorded", LONG).await;
    // The clock becomes trusted just as the disk fails: the held tap cannot be placed yet.
    std::fs::write(&switch, "enospc").unwrap();
    std::fs::write(&synced, "").unwrap();
    daemon
        .wait_for_line("cannot place the taps held for the clock", LONG)
        .await;
    std::fs::remove_file(&switch).unwrap();
    // Trust does not change again; the placing is tried again by itself.
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let at = visit_of(&received, "acc-alex")[0].1;
    assert!((at - tapped).abs() < 1_000, "stamped {at}, tapped {tapped}");
    daemon
        .wait_for_line("the taps held for the clock can be placed again", LONG)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_lost_after_it_was_trusted_stamps_taps_and_says_so_rather_than_that_they_wait() {
    let (_dir, fake, mut pty, synced, config) = trusted_by_file("clock-lost").await;
    std::fs::write(&synced, "").unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_for_line("clock trusted", LONG).await;
    daemon.wait_for_event("reader_connected", LONG).await;
    // The time service loses its source.
    std::fs::remove_file(&synced).unwrap();
    daemon.wait_for_line("clock NOT trusted", LONG).await;
    let said = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("clock NOT trusted"))
        .unwrap();
    assert!(
        said.contains("It was trusted earlier in this boot") && !said.contains("held"),
        "{said}"
    );
    let tapped = now_ms();
    pty.write(&em4100_frame(ALEX));
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let at = visit_of(&received, "acc-alex")[0].1;
    assert!((at - tapped).abs() < 1_000, "stamped {at}, tapped {tapped}");
    daemon.wait_for_event("delivered", LONG).await;
    let text = status_text(&config);
    assert!(
        text.contains("clock: NOT TRUSTED")
            && text.contains("no tap waits for it; 1 tap stamped from a trusted reading"),
        "{text}"
    );
    assert!(!text.contains("after the clock became trusted"), "{text}");
}
