//! `gym-checkin calibrate` through the real binary: a line reader on a pseudo-terminal, the
//! stand-in EGYM with a member whose card was enrolled differently from how the reader writes it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::*;

/// A MIFARE wedge prints the UID 1E A6 86 71 as the decimal of its bytes reversed.
const PRINTED: &str = "1904649758";

/// The member whose card was enrolled as MIFARE.
fn pat() -> Member {
    Member::new("0x1EA68671", "acc-pat", "Pat Member")
        .enrolled_as("MIFARE")
        .email("pat@example.invalid")
}

fn config(dir: &TestDir, fake: &FakeEgym, pty: &Pty) -> std::path::PathBuf {
    // Set up as if the cards were hex: wrong for this reader.
    let reader = serial_reader("desk", &pty.slave_path, "line", "id-format = \"hex\"");
    write_config(dir, &fake.base_url(), "", &reader)
}

/// Runs `calibrate`; once it asks for the card, `present` writes it. Returns the exit code, the
/// standard output and standard error.
async fn calibrate(
    config: &std::path::Path,
    member: &str,
    present: impl FnOnce(),
) -> (Option<i32>, String, String) {
    let mut child = gym_checkin()
        .args([
            "calibrate",
            "--reader",
            "desk",
            "--member",
            member,
            "--config",
        ])
        .arg(config)
        .env_remove("EGYM_API_KEY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let sink = stdout.clone();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let mut present = Some(present);
    let status = poll(LONG, || {
        if present.is_some() && stdout.lock().unwrap().contains("Present the member's card") {
            (present.take().unwrap())();
        }
        child.try_wait().unwrap()
    })
    .await
    .expect("calibrate did not finish");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    // The process has exited: the reading thread ends at the end of its output.
    reader.join().unwrap();
    let stdout = stdout.lock().unwrap().clone();
    (status.code(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_finds_the_settings_under_which_the_card_matches_its_enrolment() {
    let dir = TestDir::new("calibrate-match");
    let fake = start_egym(vec![pat()]).await;
    let mut pty = Pty::open();
    let config = config(&dir, &fake, &pty);
    let (code, stdout, stderr) = calibrate(&config, "pat@example.invalid", || {
        pty.write(format!("{PRINTED}\r\n").as_bytes());
    })
    .await;
    println!("{stdout}");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for line in [
        "id-format = \"decimal\"",
        "id-bytes = \"all\"",
        "byte-order = \"reversed\"",
        "egym-tag-format = \"MIFARE\"",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} missing:\n{stdout}"
        );
    }
    // Records nothing, posts nothing, at most three requests.
    let received = fake.received();
    assert!(received.len() <= 3, "{received:#?}");
    assert!(received.iter().all(|r| r.method == "GET"), "{received:#?}");
    assert!(!dir.path("gym-checkin.db").exists());
    assert!(!stdout.contains(PRINTED) && !stdout.contains("1EA68671"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_shows_both_sides_when_the_card_is_enrolled_nowhere() {
    let dir = TestDir::new("calibrate-none");
    let fake = start_egym(vec![pat()]).await;
    let mut pty = Pty::open();
    let config = config(&dir, &fake, &pty);
    // By membership id this time; the card presented is another one.
    let (code, stdout, stderr) = calibrate(&config, "m-acc-pat", || {
        pty.write(b"1234567890\r\n");
    })
    .await;
    println!("{stdout}");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("No rendering of the card matches"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0x…8671") && stdout.contains("MIFARE"),
        "{stdout}"
    );
    assert!(stdout.contains("Likeliest cause:"), "{stdout}");
    assert!(fake.received().len() <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_says_to_stop_the_service_when_it_has_the_reader() {
    let dir = TestDir::new("calibrate-busy");
    let fake = start_egym(vec![pat()]).await;
    let pty = Pty::open();
    let config = config(&dir, &fake, &pty);
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let (code, stdout, stderr) = calibrate(&config, "pat@example.invalid", || {}).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("reader desk: the service")
            && stderr.contains("sudo systemctl stop gym-checkin"),
        "{stderr}"
    );
    // And a member EGYM does not know.
    drop(daemon);
    let (code, _, stderr) = calibrate(&config, "nobody@example.invalid", || {}).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("EGYM knows no member"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_says_when_egym_refuses_the_key_not_that_the_member_is_unknown() {
    let dir = TestDir::new("calibrate-refused-key");
    let fake = start_egym(vec![pat()]).await;
    fake.set_api_key("a-key-egym-issued-to-another-gym");
    let pty = Pty::open();
    let config = config(&dir, &fake, &pty);
    let (code, stdout, stderr) = calibrate(&config, "pat@example.invalid", || {}).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("EGYM refused the API key (HTTP 403")
            && stderr.contains(&dir.path("api-key").display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("knows no member"), "{stderr}");
    assert!(!stderr.contains(API_KEY), "{stderr}");
}
