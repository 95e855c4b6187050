//! Running as a service: systemd notifications and watchdog, `status` while the daemon runs,
//! and `listen`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;

/// A member's card on an EM4100 reader, the stand-in EGYM, and the service started with a
/// notification socket (bound before it starts) and a watchdog of 2 s.
async fn start_notified(name: &str) -> (TestDir, FakeEgym, Pty, NotifySocket, Daemon) {
    let dir = TestDir::new(name);
    let fake = start_egym(vec![member("0x0C000621A5", "acc-1")]).await;
    let pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    );
    let socket_path = dir.path("notify.sock");
    let socket = NotifySocket::bind(&socket_path);
    let daemon = Daemon::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    (dir, fake, pty, socket, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let (_dir, fake, mut pty, socket, mut daemon) = start_notified("notify").await;
    socket.wait_for("READY=1", 1).await;
    socket.wait_for("STATUS=", 1).await;
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame("0C000621A5"));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    // WATCHDOG_USEC = 2 s: a ping every second.
    socket.wait_for("WATCHDOG=1", 3).await;
    let status = socket
        .all()
        .into_iter()
        .rev()
        .find(|(_, m)| m.starts_with("STATUS="))
        .unwrap()
        .1;
    assert!(
        status.contains("pending") && status.contains("readers") && status.contains("delivery"),
        "{status}"
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    assert_eq!(socket.count("STOPPING=1"), 1);
    let ready_at = socket.all().iter().find(|(_, m)| m == "READY=1").unwrap().0;
    let pings: Vec<Instant> = socket
        .all()
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    assert!(pings[0] >= ready_at || pings.len() > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_task_stops_the_watchdog_pings_until_it_moves_again() {
    let (dir, _fake, mut pty, socket, daemon) = start_notified("watchdog-stuck").await;
    daemon.wait_for_event("reader_connected", LONG).await;
    socket.wait_for("WATCHDOG=1", 2).await;
    // Another process holds the database's write lock: the recorder's commit waits (up to the
    // 5 s busy timeout), and the recorder stops answering.
    let blocker = rusqlite::Connection::open(dir.path("gym-checkin.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    pty.write(&em4100_frame("0C000621A5"));
    let stuck = daemon.wait_for_line("tasks are not answering", LONG).await;
    let pings_when_stuck = socket.count("WATCHDOG=1");
    // One ping interval (1 s) from when the watchdog found it stuck, and over well before the
    // busy timeout frees the recorder (5 s after the tap, of which detection takes up to 2 s).
    wait_until_past(logged_at_ms(&stuck) + 1_000).await;
    assert_eq!(
        socket.count("WATCHDOG=1"),
        pings_when_stuck,
        "pinged while a task was stuck"
    );
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    socket.wait_for("WATCHDOG=1", pings_when_stuck + 2).await;
    let line = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("tasks are not answering"))
        .unwrap();
    assert!(line.contains("recorder"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_delivered_pending_and_rejected_events_and_the_readers() {
    let dir = TestDir::new("status");
    let tags = [
        ("0x0A00000001", "acc-1"),
        ("0x0A00000002", "acc-2"),
        ("0x0A00000003", "acc-3"),
    ];
    let fake = start_egym(tags.iter().map(|(t, a)| member(t, a)).collect()).await;
    let mut pty = Pty::open();
    let readers = serial_reader("entrance", &pty.slave_path, "line", "")
        + &serial_reader("exit", &dir.path("not-plugged-in"), "line", "");
    let config = write_config(&dir, &fake.base_url(), "", &readers);
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let tap = |pty: &mut Pty, i: usize| pty.write(format!("{}\n", &tags[i].0[2..]).as_bytes());

    tap(&mut pty, 0);
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    fake.set_mode(Mode::Status(422));
    tap(&mut pty, 1);
    daemon.wait_for_event("rejected", LONG).await;
    fake.set_mode(Mode::Down);
    tap(&mut pty, 2);
    daemon.wait_for_event("delivery_failed", LONG).await;

    let status = status_json(&config);
    assert_eq!(status["events"]["delivered"], 1, "{status}");
    assert_eq!(status["events"]["rejected"], 1, "{status}");
    assert_eq!(status["events"]["pending"], 1, "{status}");
    assert_eq!(status["events"]["unknown_tag"], 0, "{status}");
    assert!(
        status["oldest_pending_age_s"].as_i64().unwrap() < 60,
        "{status}"
    );
    assert!(
        status["last_delivery"].as_str().unwrap().ends_with('Z'),
        "{status}"
    );
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach EGYM"),
        "{status}"
    );
    assert_eq!(status["delivery_paused"], false, "{status}");
    assert_eq!(status["open_visits"], 3, "{status}");
    let readers = status["readers"].as_array().unwrap();
    assert_eq!(readers.len(), 2, "{status}");
    assert_eq!(
        (
            readers[0]["name"].as_str(),
            readers[0]["connected"].as_bool()
        ),
        (Some("entrance"), Some(true))
    );
    assert!(readers[0]["last_read"].as_str().is_some(), "{status}");
    assert_eq!(
        (
            readers[1]["name"].as_str(),
            readers[1]["connected"].as_bool()
        ),
        (Some("exit"), Some(false))
    );
    assert!(readers[1]["last_read"].is_null(), "{status}");

    // The human form says the same.
    let output = gym_checkin()
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    for wanted in [
        "1 pending",
        "1 rejected",
        "1 delivered",
        "HTTP 422",
        "NOT CONNECTED",
        "open visits: 3",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }
    assert!(!text.contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_prints_every_rendering_and_records_nothing() {
    let dir = TestDir::new("listen");
    let mut em = Pty::open();
    let mut line = Pty::open();
    let readers = serial_reader("entrance", &em.slave_path, "em4100", "")
        + &serial_reader("desk", &line.slave_path, "line", "")
        + "id-format = \"decimal\"\nbyte-order = \"reversed\"\negym-tag-format = \"MIFARE\"\n";
    let config = write_config(&dir, "http://127.0.0.1:9", "", &readers);
    let mut child = gym_checkin()
        .args(["listen", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let wait_for = |text: &'static str| {
        let lines = lines.clone();
        async move {
            let all = || lines.lock().unwrap().join("\n");
            let printed = poll(LONG, || Some(all()).filter(|all| all.contains(text))).await;
            printed.unwrap_or_else(|| panic!("{text:?} not printed:\n{}", all()))
        }
    };
    wait_for("[entrance] connected").await;
    wait_for("[desk] connected").await;
    em.write(&em4100_frame("0C000621A5"));
    em.write(&em4100_frame("0C000621A5"));
    let out = wait_for("same presentation").await;
    for wanted in [
        "[entrance] read 0C000621A5 (5 bytes)",
        "sends rfid 0x0C000621A5",
        "low32-dec10",
        "0000401829",
        "w26-facility,card",
        "006,08613",
    ] {
        assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
    }
    line.write(b"1904649758\r\n12345\r\n");
    let out = wait_for("which is not an id").await;
    for wanted in [
        "[desk] read 7186A61E",
        "sends rfid 0x1EA68671 with tagFormat=MIFARE",
        "\"12345\"",
    ] {
        assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
    }
    assert!(!out.contains("cascade tag"), "{out}");
    // A 7-byte UID that the reader cut to its first cascade level (88 04 C4 3B).
    line.write(b"1002701960\r\n");
    let out = wait_for("sends rfid 0x8804C43B").await;
    assert!(
        out.contains("warning: this id is 4 bytes starting with 0x88, the MIFARE cascade tag"),
        "{out}"
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(
        !dir.path("gym-checkin.db").exists(),
        "listen created the database"
    );
    assert!(!lines.lock().unwrap().join("\n").contains(API_KEY));

    let output = gym_checkin()
        .args(["listen", "--reader", "nowhere", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("configured: entrance, desk"));
}

#[test]
fn version_names_the_commit_and_the_target() {
    let output = gym_checkin().arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    // "gym-checkin 0.1.0 (commit 0123456789ab, x86_64-unknown-linux-gnu)"
    let expected_start = format!("gym-checkin {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_start), "{text}");
    let inside = text.trim().strip_prefix(&expected_start).unwrap();
    let (commit, target) = inside.trim_end_matches(')').split_once(", ").unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
    // The target of the binary under test: this machine's, unless another build is tested.
    let arch = std::env::var("GYM_CHECKIN_TEST_ARCH")
        .unwrap_or_else(|_| std::env::consts::ARCH.to_string());
    assert!(
        target.starts_with(&format!("{arch}-")) && target.ends_with("-linux-gnu"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_on_a_reader_the_service_reads_says_so_and_how_to_stop_it() {
    let dir = TestDir::new("listen-busy");
    let fake = start_egym(vec![]).await;
    let pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let output = gym_checkin()
        .args(["listen", "--reader", "entrance", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "reader entrance: the service (pid {}) is running and reads it",
            daemon.pid()
        )) && stderr.contains("sudo systemctl stop gym-checkin"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_left_in_a_serial_port_before_the_service_opened_it_are_no_tap() {
    let dir = TestDir::new("stale-bytes");
    let alex = member("0x0C000621A5", "acc-alex");
    let billie = member("0x0C0006A4B2", "acc-billie");
    let fake = start_egym(vec![alex, billie]).await;
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    );
    // Alex's card was read while nobody had the port open (by `listen` before it stopped, say):
    // the frame waits in the terminal's input buffer.
    pty.write(&em4100_frame("0C000621A5"));
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame("0C0006A4B2"));
    daemon.wait_for_event("tap_recorded", LONG).await;
    let recorded = daemon.recorded();
    // Alex's frame, older and first in the buffer, would have been decided first.
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].tag, "0x…A4B2", "{recorded:?}");
}
