//! Nothing fails silently: one service per database, a task that ends or panics stops the
//! service loudly, and a stop is a stop whatever the readers are doing.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const ALEX: &str = "0C000621A5";

/// A configuration with one EM4100 reader on `pty`, against `fake`.
fn em4100_config(dir: &TestDir, fake: &FakeEgym, pty: &Pty) -> std::path::PathBuf {
    write_config(
        dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_on_one_database_refuses_to_start_and_names_the_first() {
    let dir = TestDir::new("second-instance");
    let fake = start_egym(vec![member("0x0C000621A5", "acc-alex")]).await;
    let mut pty = Pty::open();
    let config = em4100_config(&dir, &fake, &pty);
    let first = Daemon::start(&config);
    first.wait_for_line("gym-checkin running", LONG).await;

    let mut second = Daemon::start(&config);
    let status = second.wait_exit(LONG).await;
    let log = second.lines().join("\n");
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(
        log.contains(&format!("pid {}", first.pid()))
            && log.contains("sudo systemctl stop gym-checkin"),
        "the message names the holder and what to do:\n{log}"
    );

    // Run by hand beside the packaged service, whose API key is a systemd credential, `run` has
    // no key of its own: it still says that a service runs, not that the key is missing.
    let keyless = dir.path("keyless.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let without_key: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("api-key-file"))
        .collect();
    std::fs::write(&keyless, without_key.join("\n")).unwrap();
    let mut by_hand = Daemon::start(&keyless);
    let status = by_hand.wait_exit(LONG).await;
    let log = by_hand.lines().join("\n");
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(log.contains(&format!("pid {}", first.pid())), "{log}");

    // The first goes on alone: a tap reaches EGYM once.
    pty.write(&em4100_frame(ALEX));
    let (delivered, received) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(delivered, "{received:?}");
    first.wait_for_event("delivered", LONG).await;
    assert_eq!(count_visits(&fake.received()), 1);

    // status works beside it, and says who runs.
    let status = status_json(&config);
    assert_eq!(status["service"]["running"], true, "{status}");
    assert_eq!(status["service"]["pid"], first.pid(), "{status}");

    // A SIGKILL leaves nothing stale: the next service starts on the same database at once.
    first.signal(libc::SIGKILL);
    let mut first = first;
    first.wait_exit(LONG).await;
    let third = Daemon::start(&config);
    third.wait_for_line("gym-checkin running", LONG).await;
    assert_eq!(status_json(&config)["service"]["pid"], third.pid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdin_reader_whose_input_ends_stops_the_service_with_an_error() {
    let dir = TestDir::new("stdin-ends");
    let fake = start_egym(vec![member("0x0C000621A5", "acc-alex")]).await;
    let config = write_config(&dir, &fake.base_url(), "", &stdin_reader("desk"));
    let mut daemon = Daemon::start_with_input(&config, Stdio::piped(), &[]);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    let mut input = daemon.stdin().unwrap();
    input.write_all(format!("{ALEX}\n").as_bytes()).unwrap();
    daemon.wait_for_event("tap_recorded", LONG).await;
    drop(input);
    let status = daemon.wait_exit(LONG).await;
    let log = daemon.lines().join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    let ended = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("ERROR") && l.contains("task=reader desk"))
        .unwrap_or_else(|| panic!("no ERROR naming the reader's task:\n{log}"));
    assert!(ended.contains("systemd starts it again"), "{ended}");
    // The tap read before the end was recorded, and is delivered at the next start.
    assert_eq!(daemon.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdin_reader_on_dev_null_is_a_configuration_problem() {
    let dir = TestDir::new("stdin-null");
    let fake = start_egym(vec![]).await;
    let config = write_config(&dir, &fake.base_url(), "", &stdin_reader("desk"));
    let mut daemon = Daemon::start(&config);
    let status = daemon.wait_exit(LONG).await;
    let log = daemon.lines().join("\n");
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("readers[0].driver: standard input is /dev/null"),
        "{log}"
    );
    assert!(
        !dir.path("gym-checkin.db").exists(),
        "nothing was set up before the problem was found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_is_named_and_the_process_ends() {
    let dir = TestDir::new("panic");
    let fake = start_egym(vec![]).await;
    let pty = Pty::open();
    let config = em4100_config(&dir, &fake, &pty);
    // Debug builds (the one the tests run) make the named task panic on request.
    let mut daemon = Daemon::start_with_env(&config, &[("GYM_CHECKIN_TEST_PANIC", "delivery")]);
    let status = daemon.wait_exit(LONG).await;
    let log = daemon.lines().join("\n");
    // panic = "abort": the process ends by SIGABRT, which systemd's Restart= covers.
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{log}");
    assert!(
        daemon
            .lines()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("task delivery panicked")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_service_while_a_stdin_reader_waits_for_a_line() {
    let dir = TestDir::new("stdin-sigterm");
    let fake = start_egym(vec![]).await;
    let config = write_config(&dir, &fake.base_url(), "", &stdin_reader("desk"));
    let mut daemon = Daemon::start_with_input(&config, Stdio::piped(), &[]);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    // Standard input stays open and silent: the reader waits in a read nothing will end.
    let _input = daemon.stdin().unwrap();
    daemon.signal(libc::SIGTERM);
    // Well inside the unit's TimeoutStopSec=15s, after which systemd would SIGKILL it.
    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.lines().join("\n"));
}
