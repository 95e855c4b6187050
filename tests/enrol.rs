//! `gym-checkin enrol` through the real binary: an EM4100 reader on a pseudo-terminal, the
//! stand-in EGYM on loopback, the real database. With the service stopped (the command reads
//! the reader and makes the waiting tap due for the next start) and running (the service hands
//! the command the next card on its reader, and delivers the waiting tap at once), and every
//! refusal staff can meet.

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gym_checkin::egym::fake::Card;

/// A card no member has yet, as an RDM6300 reads it.
const NEW_CARD: &str = "0A0B0C0D0E";
/// Alex's card.
const ALEX_CARD: &str = "0C000621A5";
/// The reader's debounce: the same card again after this long is a new presentation.
const DEBOUNCE: Duration = Duration::from_millis(100);

fn members() -> Vec<Member> {
    vec![
        Member::new(&format!("0x{ALEX_CARD}"), "acc-alex", "Alex Quillfeather"),
        Member::without_card("acc-pat", "Pat Member").email("pat@example.invalid"),
    ]
}

/// A gym with the stand-in EGYM and a reader `desk` on a pty, which sends `HITAG1` as its
/// `tagFormat`.
async fn gym(name: &str) -> (TestDir, FakeEgym, Pty, std::path::PathBuf) {
    let dir = TestDir::new(name);
    let fake = start_egym(members()).await;
    let pty = Pty::open();
    let reader = serial_reader(
        "desk",
        &pty.slave_path,
        "em4100",
        &format!(
            "debounce = \"{}ms\"\negym-tag-format = \"HITAG1\"",
            DEBOUNCE.as_millis()
        ),
    );
    let config = write_config(&dir, &fake.base_url(), "", &reader);
    (dir, fake, pty, config)
}

/// `gym-checkin enrol` running, its output collected as it comes (a question ends in no line
/// break), its standard input a pipe for the answers.
struct Enrol {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Enrol {
    fn start(config: &std::path::Path, args: &[&str]) -> Enrol {
        let mut child = gym_checkin()
            .arg("enrol")
            .args(args)
            .arg("--config")
            .arg(config)
            .env_remove("EGYM_API_KEY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for (stream, sink) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                stdout.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ] {
            readers.push(std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }));
        }
        Enrol {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until standard output holds `text` (or enrol has ended without saying it).
    async fn wait_for(&mut self, text: &str) {
        let said = poll(LONG, || {
            if self.stdout().contains(text) {
                Some(true)
            } else if self.child.try_wait().unwrap().is_some() {
                Some(false)
            } else {
                None
            }
        })
        .await;
        assert_eq!(
            said,
            Some(true),
            "enrol did not say {text:?} (None: not in time, false: it ended); it said:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Its exit code, once it has exited and its output has been read to the end.
    async fn exit_code(mut self) -> (Option<i32>, String, String) {
        drop(self.stdin.take());
        let status = poll(LONG, || self.child.try_wait().unwrap()).await;
        let Some(status) = status else {
            panic!(
                "enrol did not finish:\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status.code(), self.stdout(), self.stderr())
    }
}

impl Drop for Enrol {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `enrol` with `args` to its end, answering nothing.
async fn enrol(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    Enrol::start(config, args).exit_code().await
}

/// The cards added (`POST …/rfids`) the stand-in received.
fn cards_added(fake: &FakeEgym) -> Vec<Received> {
    fake.received()
        .into_iter()
        .filter(|r| r.add_rfid().is_some())
        .collect()
}

/// Taps an unknown card on the running service and waits until EGYM has said it knows no
/// member with it; returns when it was tapped (the time the service recorded).
async fn tap_unknown(daemon: &Daemon, pty: &mut Pty) -> i64 {
    pty.write(&em4100_frame(NEW_CARD));
    daemon.wait_for_event("unknown_tag", LONG).await;
    let recorded = daemon.recorded();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    recorded[0].tapped_at_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_service_stopped_enrol_reads_the_card_and_the_waiting_tap_goes_out_at_the_next_start()
 {
    let (dir, fake, mut pty, config) = gym("enrol-stopped").await;
    // A new member's card is tapped, unknown to EGYM; then the service is stopped.
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let tapped_at_ms = tap_unknown(&daemon, &mut pty).await;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));

    let mut enrol = Enrol::start(
        &config,
        &["--reader", "desk", "--member", "pat@example.invalid"],
    );
    enrol.wait_for("Present the card on reader desk").await;
    pty.write(&em4100_frame(NEW_CARD));
    enrol.wait_for("[y/N]").await;
    let question = enrol.stdout();
    assert!(
        question.contains("Found Pat at EGYM (account acc-pat), with 0 cards enrolled.")
            && question.contains("Enrol the card 0x…0D0E (tagFormat HITAG1) for Pat"),
        "{question}"
    );
    assert!(
        cards_added(&fake).is_empty(),
        "nothing is added before staff confirm"
    );
    enrol.answer("y");
    let (code, stdout, stderr) = enrol.exit_code().await;
    println!("{stdout}");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Enrolled the card 0x…0D0E (tagFormat HITAG1) for Pat at EGYM.")
            && stdout.contains("The service is not running: the tap waiting on it is delivered"),
        "{stdout}"
    );
    // The card as the reader's lookups send it: the same rendering and tagFormat.
    assert_eq!(
        fake.cards("acc-pat"),
        vec![Card {
            account_id: "acc-pat".into(),
            rfid: format!("0x{NEW_CARD}"),
            tag_format: Some("HITAG1".into()),
        }]
    );
    let added = cards_added(&fake);
    assert_eq!(added.len(), 1);
    assert_eq!(
        added[0].body,
        Some(serde_json::json!({ "rfid": format!("0x{NEW_CARD}"), "tagFormat": "HITAG1" }))
    );
    // Never the whole card number on the terminal: it is a member's credential.
    assert!(!stdout.contains(NEW_CARD), "{stdout}");

    // The next start looks the card up at once (not in 5 minutes, its schedule as an unknown
    // card) and delivers the tap with its own time.
    let started = Instant::now();
    let daemon = Daemon::start(&config);
    let (delivered, received) = fake
        .wait_for(LONG, |r| {
            visits(r)
                .iter()
                .any(|(account, what, _)| account == "acc-pat" && what == "checkins")
        })
        .await;
    assert!(delivered, "{:#?}\n{}", received, daemon.lines().join("\n"));
    println!(
        "restart to the waiting tap delivered: {:?}",
        started.elapsed()
    );
    let checkins: Vec<_> = visits(&received)
        .into_iter()
        .filter(|(account, ..)| account == "acc-pat")
        .collect();
    assert_eq!(
        checkins,
        vec![("acc-pat".into(), "checkins".into(), tapped_at_ms)]
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_running_service_enrol_takes_the_next_card_on_its_reader_and_the_waiting_tap_is_delivered_at_once()
 {
    let (_dir, fake, mut pty, config) = gym("enrol-running").await;
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    let tapped_at_ms = tap_unknown(&daemon, &mut pty).await;

    // A command that gives up while the service waits for its card (staff press Ctrl-C): the
    // reader's next card is a member's tap again.
    let mut given_up = Enrol::start(&config, &["--reader", "desk", "--member", "m-acc-pat"]);
    given_up.wait_for("Present the card on reader desk").await;
    daemon.wait_for_event("enrolment_awaits_card", LONG).await;
    // One enrolment waits on a reader at a time: a second is told so.
    let (code, _, stderr) = enrol(&config, &["--reader", "desk", "--member", "m-acc-pat"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("another enrolment is waiting for a card on reader desk"),
        "{stderr}"
    );
    drop(given_up);
    daemon
        .wait_for_event("enrolment_stopped_waiting", LONG)
        .await;
    pty.write(&em4100_frame(ALEX_CARD));
    daemon.wait_for_events("tap_recorded", 2, LONG).await;
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);

    let mut enrolling = Enrol::start(
        &config,
        &["--reader", "desk", "--member", "m-acc-pat", "--yes"],
    );
    enrolling.wait_for("Present the card on reader desk").await;
    // The service holds the card's next presentation for the enrolment: it says so.
    daemon
        .wait_for_events("enrolment_awaits_card", 2, LONG)
        .await;
    // The same card again is a new presentation once the reader's debounce is over.
    wait_until_past(tapped_at_ms + DEBOUNCE.as_millis() as i64).await;
    let presented = Instant::now();
    pty.write(&em4100_frame(NEW_CARD));
    let (code, stdout, stderr) = enrolling.exit_code().await;
    println!("{stdout}");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("The tap waiting on it is looked up again and delivered now"),
        "{stdout}"
    );
    let (delivered, received) = fake
        .wait_for(LONG, |r| {
            visits(r)
                .iter()
                .any(|(account, what, _)| account == "acc-pat" && what == "checkins")
        })
        .await;
    assert!(delivered, "{:#?}\n{}", received, daemon.lines().join("\n"));
    println!(
        "card presented to the waiting tap delivered: {:?}",
        presented.elapsed()
    );
    let pat: Vec<_> = visits(&received)
        .into_iter()
        .filter(|(account, ..)| account == "acc-pat")
        .collect();
    assert_eq!(
        pat,
        vec![("acc-pat".into(), "checkins".into(), tapped_at_ms)]
    );
    // The card was added before it was looked up anew, and the tap posted after that.
    let position = |f: &dyn Fn(&Received) -> bool| received.iter().position(f).unwrap();
    let added = position(&|r| r.add_rfid() == Some("acc-pat"));
    let found = received
        .iter()
        .rposition(|r| r.lookup_rfid().is_some() && r.status == Some(200))
        .unwrap();
    let posted = position(&|r| r.visit().is_some_and(|(account, _)| account == "acc-pat"));
    assert!(added < found && found < posted, "{received:#?}");

    // The presentation went to the enrolment, not to the outbox; the enrolment is logged once,
    // with who asked, the account and the shortened tag.
    let claimed = daemon.wait_for_event("presentation_claimed", LONG).await;
    assert_eq!(field(&claimed, "tag"), Some("0x…0D0E"), "{claimed}");
    assert_eq!(daemon.recorded().len(), 2, "{}", daemon.lines().join("\n"));
    let enrolled = daemon.events("card_enrolled");
    assert_eq!(enrolled.len(), 1, "{}", daemon.lines().join("\n"));
    let line = &enrolled[0];
    assert_eq!(field(line, "account_id"), Some("acc-pat"), "{line}");
    assert_eq!(field(line, "tag"), Some("0x…0D0E"), "{line}");
    assert!(
        line.contains("client=user ") && line.contains("on the control socket"),
        "{line}"
    );
    assert!(!line.contains("Pat") && !line.contains(NEW_CARD), "{line}");

    // Enrolled again: the card is Pat's already, nothing is added, and the service says which
    // cards Pat has, shortened.
    let (code, stdout, stderr) = enrol(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "m-acc-pat",
            "--tag",
            &format!("0x{NEW_CARD}"),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("with 1 card enrolled: 0x…0D0E (HITAG1).")
            && stdout.contains("is enrolled for Pat already: nothing to add at EGYM.")
            && stdout.contains("No taps were waiting on this card"),
        "{stdout}"
    );
    assert!(!stdout.contains(NEW_CARD), "{stdout}");
    assert_eq!(cards_added(&fake).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_refuses_a_card_of_another_member_an_unknown_member_and_a_key_that_may_not_write_cards()
 {
    let (_dir, fake, _pty, config) = gym("enrol-refusals").await;
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;

    // Alex's card, for Pat: said without naming Alex; nothing is written.
    let (code, _, stderr) = enrol(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "pat@example.invalid",
            "--tag",
            &format!("0x{ALEX_CARD}"),
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("card 0x…21A5 is already enrolled for another member at EGYM"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Alex") && !stderr.contains("acc-alex"),
        "{stderr}"
    );

    // A member EGYM does not know.
    let (code, _, stderr) = enrol(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "nobody@example.invalid",
            "--tag",
            &format!("0x{NEW_CARD}"),
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("EGYM knows no member with the e-mail address \"nobody@example.invalid\""),
        "{stderr}"
    );

    // A number that is no card as the reader sends it (the decimal rendering, say).
    let (code, _, stderr) = enrol(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "m-acc-pat",
            "--tag",
            "1904649758",
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("is no card number as a reader sends it"),
        "{stderr}"
    );

    // Not confirmed: nothing is written.
    let mut asked = Enrol::start(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "m-acc-pat",
            "--tag",
            &format!("0x{NEW_CARD}"),
        ],
    );
    asked.wait_for("[y/N]").await;
    asked.answer("n");
    let (code, stdout, _) = asked.exit_code().await;
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("Not confirmed: nothing was changed."),
        "{stdout}"
    );
    assert!(cards_added(&fake).is_empty());

    // A key that may look members up but not write cards: refused as such, logged by the
    // service, and delivery is not paused (the key works for everything else).
    fake.allow_rfid_writes(false);
    let (code, _, stderr) = enrol(
        &config,
        &[
            "--reader",
            "desk",
            "--member",
            "m-acc-pat",
            "--tag",
            &format!("0x{NEW_CARD}"),
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the API key may not write cards (HTTP 403 missingPermission"),
        "{stderr}"
    );
    assert!(fake.cards("acc-pat").is_empty());
    let refused = daemon.wait_for_event("enrolment_refused", LONG).await;
    assert_eq!(field(&refused, "reason"), Some("key_may_not_write_cards"));
    assert_eq!(status_json(&config)["delivery_paused"], false);

    // A reader that is not configured is a usage error.
    let (code, _, stderr) = enrol(
        &config,
        &["--reader", "exit", "--member", "m-acc-pat", "--tag", "0x01"],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!daemon.lines().iter().any(|l| l.contains(API_KEY)));
}
