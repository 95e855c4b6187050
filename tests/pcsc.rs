//! A PC/SC reader end to end, with the real pcscd: Debian's `pcscd` with the `vsmartcard-vpcd`
//! driver (a virtual reader), and a virtual card written here that answers GET DATA
//! (`FF CA 00 00 00`) with its UID, as a MIFARE card on an ACR122U does. The test starts its own
//! pcscd on a socket of its own (socket activation, as `pcscd.socket` does), so it can stop it,
//! start it again, and start it with no reader at all, which is what an unplugged USB reader
//! looks like to a client.
#![cfg(feature = "pcsc")]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const UID_7: [u8; 7] = [0x04, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80];
const UID_4: [u8; 4] = [0x26, 0xDE, 0xFA, 0xE7];
/// The ATR an ACR122U gives a MIFARE Classic 1K card.
const ATR: [u8; 20] = [
    0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x6A,
];

/// Two free TCP ports in a row: vpcd listens on one per slot.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free ports in a row");
}

/// pcscd, started on our own socket.
struct Pcscd {
    socket: UnixListener,
    socket_path: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Pcscd {
    fn new(dir: &TestDir) -> Pcscd {
        let socket_path = dir.path("pcscd.comm");
        Pcscd {
            socket: UnixListener::bind(&socket_path).unwrap(),
            socket_path,
            child: None,
            log: dir.path("pcscd.log"),
        }
    }

    /// Starts pcscd with the reader configurations in `conf_dir`.
    fn start(&mut self, conf_dir: &Path) {
        assert!(self.child.is_none());
        let fd = self.socket.as_raw_fd();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "LISTEN_FDS=1 LISTEN_PID=$$ exec pcscd --foreground --debug --config {}",
                conf_dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: dup2 and fcntl are async-signal-safe; they put the listening socket on
        // descriptor 3 (as systemd passes it), without close-on-exec. (A socket that already is
        // descriptor 3 keeps its close-on-exec through dup2 onto itself: it is cleared instead.)
        unsafe {
            command.pre_exec(move || {
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(command.spawn().expect("pcscd (apt-get install pcscd)"));
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A card on the virtual reader: connected to vpcd, it answers as a card does.
struct VirtualCard {
    stream: TcpStream,
}

impl VirtualCard {
    /// Puts a card with `uid` on the reader; `status` is the status word it answers GET DATA
    /// with (`90 00` with its UID).
    fn present(port: u16, uid: &[u8], status: [u8; 2]) -> VirtualCard {
        let stream = poll_blocking(POLL, Some(LONG), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("vpcd on port {port} never listened"));
        let mut reading = stream.try_clone().unwrap();
        let uid = uid.to_vec();
        std::thread::spawn(move || {
            let answer = |message: &[u8]| -> Option<Vec<u8>> {
                match message {
                    // Power off, power on, reset: no answer.
                    [0x00] | [0x01] | [0x02] => None,
                    [0x04] => Some(ATR.to_vec()),
                    [0xFF, 0xCA, 0x00, 0x00, 0x00] if status == [0x90, 0x00] => {
                        Some([&uid[..], &status].concat())
                    }
                    [0xFF, 0xCA, 0x00, 0x00, 0x00] => Some(status.to_vec()),
                    // INS not supported.
                    _ => Some(vec![0x6D, 0x00]),
                }
            };
            let mut length = [0u8; 2];
            while reading.read_exact(&mut length).is_ok() {
                let mut message = vec![0u8; u16::from_be_bytes(length) as usize];
                if reading.read_exact(&mut message).is_err() {
                    return;
                }
                if let Some(reply) = answer(&message) {
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend(reply);
                    if reading.write_all(&framed).is_err() {
                        return;
                    }
                }
            }
        });
        VirtualCard { stream }
    }

    fn remove(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn reader_conf(dir: &Path, port: u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("vpcd"),
        format!(
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:{port}\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID {port}\n"
        ),
    )
    .unwrap();
}

/// Presents a card and waits for tap number `n` (from 1); the milliseconds from the card's
/// presence to the commit.
async fn tap(daemon: &Daemon, port: u16, uid: &[u8], n: usize) -> (VirtualCard, i64) {
    let presented_ms = now_ms();
    let card = VirtualCard::present(port, uid, [0x90, 0x00]);
    daemon.wait_for_events("tap_recorded", n, LONG).await;
    let lines = daemon.lines();
    let line = lines
        .iter()
        .filter(|l| field(l, "event") == Some("tap_recorded"))
        .nth(n - 1)
        .unwrap();
    assert_eq!(
        field(line, "tag").unwrap(),
        gym_checkin::tag::short(&rfid_of(uid)),
        "{line}"
    );
    (card, logged_at_ms(line) - presented_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcsc_reader_through_the_real_pcscd() {
    let dir = TestDir::new("pcsc");
    let port = free_port_pair();
    let with_reader = dir.path("readers");
    let without_reader = dir.path("no-readers");
    reader_conf(&with_reader, port);
    std::fs::create_dir_all(&without_reader).unwrap();
    let mut pcscd = Pcscd::new(&dir);
    pcscd.start(&with_reader);

    let fake = start_egym(vec![
        member(&rfid_of(&UID_7), "acc-7"),
        member(&rfid_of(&UID_4), "acc-4"),
    ])
    .await;
    let config = write_config(
        &dir,
        &fake.base_url(),
        "repeat-window = \"1s\"",
        &pcsc_reader("desk", "virtual pcd"),
    );
    let socket = pcscd.socket_path.to_str().unwrap().to_string();
    // At debug level, the daemon says when the card is taken away.
    let env = [
        ("PCSCLITE_CSOCK_NAME", socket.as_str()),
        ("RUST_LOG", "debug"),
    ];
    let daemon = Daemon::start_with_env(&config, &env);
    daemon.wait_for_event("reader_connected", LONG).await;
    daemon.wait_for_line("PC/SC reader found", LONG).await;
    assert!(
        daemon
            .lines()
            .iter()
            .any(|l| l.contains("pcsc_reader=Virtual PCD 00 00")),
        "{}",
        daemon.lines().join("\n")
    );

    // Idle with no card: the daemon waits in pcscd and polls nothing. Nothing happens while it
    // waits; the CPU it uses is measured over 5 s.
    let idle = Duration::from_secs(5);
    let before = daemon.cpu_time();
    // A wall-clock wait on purpose: the measurement is of time in which nothing happens.
    tokio::time::sleep(idle).await;
    let idle_share = daemon.cpu_time().saturating_sub(before).as_secs_f64() / idle.as_secs_f64();
    println!("PC/SC, no card: {:.3} % of a core", idle_share * 100.0);
    assert!(idle_share < 0.002, "idle CPU {:.3} %", idle_share * 100.0);

    // A tap; the card left on the reader past the debounce is one presentation.
    let mut latencies = Vec::new();
    let (card, ms) = tap(&daemon, port, &UID_7, 1).await;
    latencies.push(ms);
    // Held until the debounce (1.5 s) since it was read is over, then taken away and presented
    // again: a second tap (a check-out, past the repeat window), and no other tap, recorded or
    // ignored, before it.
    wait_until_past(daemon.recorded()[0].tapped_at_ms + 1_500).await;
    card.remove();
    daemon.wait_for_line("card taken away", LONG).await;
    let (card, ms) = tap(&daemon, port, &UID_7, 2).await;
    assert_eq!(daemon.taps().len(), 2, "a card held is one tap");
    latencies.push(ms);
    card.remove();

    // A card the reader cannot read: a clear warning, no tap.
    let card = VirtualCard::present(port, &UID_4, [0x63, 0x00]);
    daemon.wait_for_line("status 63 00", LONG).await;
    card.remove();
    assert_eq!(daemon.recorded().len(), 2);

    // pcscd restarted: the reader is found again, with backoff, and reads.
    pcscd.stop();
    daemon.wait_for_event("reader_disconnected", LONG).await;
    pcscd.start(&with_reader);
    daemon.wait_for_lines("PC/SC reader found", 2, LONG).await;
    let (card, ms) = tap(&daemon, port, &UID_4, 3).await;
    latencies.push(ms);
    card.remove();

    // The reader unplugged (pcscd lists none): `status` says so while it is; then plugged back.
    pcscd.stop();
    pcscd.start(&without_reader);
    daemon.wait_for_events("reader_disconnected", 2, LONG).await;
    let connected = || status_json(&config)["readers"][0]["connected"].as_bool();
    assert!(
        wait_until(LONG, || connected() == Some(false)).await,
        "status never said the reader is gone"
    );
    // The daemon looks for it twice more, and finds none.
    let tries = daemon.lines_with("reader still cannot be opened").len();
    daemon
        .wait_for_lines("reader still cannot be opened", tries + 2, LONG)
        .await;
    assert_eq!(connected(), Some(false), "no reader, yet connected");
    pcscd.stop();
    pcscd.start(&with_reader);
    daemon.wait_for_lines("PC/SC reader found", 3, LONG).await;
    // The card again once the repeat window since its last tap is over: a check-out.
    wait_until_past(daemon.recorded()[2].tapped_at_ms + 1_000).await;
    let (card, ms) = tap(&daemon, port, &UID_4, 4).await;
    latencies.push(ms);
    card.remove();

    let kinds: Vec<String> = daemon.recorded().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["checkin", "checkout", "checkin", "checkout"]);
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) >= 4).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    // PC/SC readers read MIFARE UIDs: that tagFormat by default.
    let lookups: Vec<&Received> = received
        .iter()
        .filter(|r| r.path.contains("/rfid/"))
        .collect();
    assert!(!lookups.is_empty());
    assert!(
        lookups
            .iter()
            .all(|r| r.query.as_deref() == Some("tagFormat=MIFARE")),
        "{lookups:?}"
    );
    println!("PC/SC: card presence to commit, ms: {latencies:?}");
}
