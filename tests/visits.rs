//! Automatic check-out, end to end with the real binary.

mod common;

use common::*;

/// A desk whose visits are checked out `auto_checkout_after` seconds after the check-in.
fn setup(
    dir: &TestDir,
    fake: &FakeEgym,
    pty: &Pty,
    auto_checkout_after: u32,
) -> std::path::PathBuf {
    let reader = serial_reader("entrance", &pty.slave_path, "em4100", "");
    write_config(
        dir,
        &fake.base_url(),
        &format!("repeat-window = \"1s\"\nauto-checkout-after = \"{auto_checkout_after}s\""),
        &reader,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_left_open_is_checked_out_stamped_at_check_in_plus_auto_checkout_after() {
    let dir = TestDir::new("auto-checkout");
    let fake = start_egym(vec![member("0x0C000621A5", "acc-1")]).await;
    let mut pty = Pty::open();
    let config = setup(&dir, &fake, &pty, 3);
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame("0C000621A5"));
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 2).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let visits = visits(&received);
    assert_eq!(
        (visits[0].1.as_str(), visits[1].1.as_str()),
        ("checkins", "checkouts")
    );
    assert_eq!(
        visits[1].2,
        visits[0].2 + 3_000,
        "stamped with the policy time"
    );
    daemon.wait_for_event("auto_checkout", LONG).await;
    let status = status_json(&config);
    assert_eq!(status["automatic_checkouts"], 1, "{status}");
    assert_eq!(status["open_visits"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_out_that_fell_due_while_stopped_is_sent_at_start_with_its_policy_time() {
    let dir = TestDir::new("auto-checkout-downtime");
    let fake = start_egym(vec![
        member("0x0C000621A5", "acc-1"),
        member("0x4B00423C15", "acc-2"),
    ])
    .await;
    let mut pty = Pty::open();
    // Long enough for the stop to come first however slowly the check-in is delivered.
    let config = setup(&dir, &fake, &pty, 6);
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame("0C000621A5"));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    let checked_in = visits(&fake.received())[0].2;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    assert_eq!(
        count_visits(&fake.received()),
        1,
        "checked out before it was due"
    );

    // Stopped until past the due time.
    wait_until_past(checked_in + 6_000).await;
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    // A tap right away: it is decided after the overdue check-out.
    pty.write(&em4100_frame("4B00423C15"));
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 3).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    let checkout = visits(&received)
        .into_iter()
        .find(|(a, what, _)| a == "acc-1" && what == "checkouts")
        .unwrap();
    assert_eq!(
        checkout.2,
        checked_in + 6_000,
        "stamped with the policy time, not the restart time"
    );
    daemon.wait_for_events("tap_recorded", 2, LONG).await;
    let recorded = daemon.recorded();
    assert_eq!(recorded.len(), 2);
    assert_eq!(
        (recorded[0].kind.as_str(), recorded[0].tapped_at_ms),
        ("checkout", checked_in + 6_000)
    );
    assert_eq!(recorded[1].kind, "checkin");
}
