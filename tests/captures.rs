//! Captures as golden tests: every capture under `tests/captures/` replays through the codecs and
//! the presentation logic to the presentations its `.expected` file lists; and `listen --capture`
//! writes captures that replay to what it read.

mod common;

use std::path::{Path, PathBuf};

use common::readers::{EmulatedReader, Fault};
use common::*;
use gym_checkin::reader::capture;
use gym_checkin::tag::TagFormat;

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

fn header_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

#[test]
fn every_capture_replays_to_its_golden_presentations() {
    let mut protocols = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cap"))
        .collect();
    entries.sort();
    for path in &entries {
        let text = std::fs::read_to_string(path).unwrap();
        let golden_path = path.with_extension("expected");
        let golden = std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
        let expected: Vec<&str> = golden
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let replay = capture::replay(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let found: Vec<String> = replay.presented.iter().map(ToString::to_string).collect();
        assert_eq!(found, expected, "{}", path.display());
        // A golden line may also fix what was thrown away: `# rejected: N`.
        if let Some(rejected) = golden.lines().find_map(|l| l.strip_prefix("# rejected: ")) {
            assert_eq!(
                replay.rejected_frames,
                rejected.trim().parse::<u64>().unwrap(),
                "{}",
                path.display()
            );
        }
        protocols.push(
            header_value(&text, "protocol")
                .or(header_value(&text, "driver"))
                .unwrap()
                .to_string(),
        );
    }
    for protocol in ["em4100", "line", "pn532", "twn4"] {
        assert!(
            protocols.iter().any(|p| p == protocol),
            "no capture of a {protocol} reader among {entries:?}"
        );
    }
}

#[test]
fn a_capture_that_is_not_one_says_why() {
    assert!(
        capture::replay("hello")
            .unwrap_err()
            .contains("not a capture")
    );
    let bad_line = "# gym-checkin capture 1\n# reader: x\n0.1 < 0G\n";
    assert!(capture::replay(bad_line).unwrap_err().contains("line 3"));
    let no_protocol = "# gym-checkin capture 1\n# reader: x\n# driver: serial\n0.1 < 00\n";
    assert!(
        capture::replay(no_protocol)
            .unwrap_err()
            .contains("protocol")
    );
}

/// Runs `listen --capture` on `reader` while `drive` makes it read; returns the capture and
/// the ids `listen` printed as read.
async fn capture_with_listen(
    dir: &TestDir,
    reader: &str,
    drive: impl AsyncFnOnce(&Daemon),
) -> (String, Vec<String>) {
    let config = write_config(dir, "http://127.0.0.1:9", "", reader);
    let file = dir.path("reader.cap");
    let listen = Daemon::start_command(
        &[
            "listen",
            "--reader",
            "entrance",
            "--capture",
            file.to_str().unwrap(),
        ],
        &config,
        &[],
    );
    listen.wait_for_line("[entrance] connected", LONG).await;
    drive(&listen).await;
    let mut listen = listen;
    listen.signal(libc::SIGTERM);
    assert!(listen.wait_exit(LONG).await.success());
    let read: Vec<String> = listen
        .lines()
        .iter()
        .filter(|l| l.contains("] read ") && !l.contains("not sent"))
        .map(|l| {
            let id = l.split("] read ").nth(1).unwrap();
            id.split_whitespace().next().unwrap().to_string()
        })
        .collect();
    (std::fs::read_to_string(&file).unwrap(), read)
}

fn replayed_ids(capture_text: &str) -> Vec<String> {
    capture::replay(capture_text)
        .unwrap()
        .presented
        .into_iter()
        .map(|p| p.rfid.trim_start_matches("0x").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_captures_a_pn532_conversation_that_replays_to_what_it_read() {
    let dir = TestDir::new("capture-pn532");
    let pty = Pty::open();
    let board = EmulatedReader::pn532(&pty);
    let reader = serial_reader("entrance", &pty.slave_path, "pn532", "");
    let (text, read) = capture_with_listen(&dir, &reader, async |listen: &Daemon| {
        board.wait_for_searches(2, LONG).await;
        for (i, uid) in [
            &[0x26, 0xDE, 0xFA, 0xE7][..],
            &[4, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80],
        ]
        .into_iter()
        .enumerate()
        {
            if i == 1 {
                board.fault(&[Fault::Corrupt, Fault::Refuse]);
            }
            board.present(uid);
            listen.wait_for_lines("] read ", i + 1, LONG).await;
            board.wait_for_searches(10, LONG).await;
            board.remove();
            listen.wait_for_lines("card taken away", i + 1, LONG).await;
        }
    })
    .await;
    assert_eq!(read, ["26DEFAE7", "04C43BC21C2680"]);
    assert_eq!(replayed_ids(&text), read, "{text}");
    assert!(text.contains(" > "), "the requests are in the capture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_captures_an_em4100_reader_that_replays_to_what_it_read() {
    let dir = TestDir::new("capture-em4100");
    let mut pty = Pty::open();
    let reader = serial_reader("entrance", &pty.slave_path, "em4100", "debounce = \"1s\"");
    let spoiled = b"\x020C000621A58F\x03";
    let (text, read) = capture_with_listen(&dir, &reader, async |listen: &Daemon| {
        // A card held over an RDM6300 repeats its frame, each repeat read before the next comes
        // (the debounce spans all three however slowly they are read); a spoiled frame between.
        pty.write(&em4100_frame("0C000621A5"));
        listen.wait_for_lines("] read ", 1, LONG).await;
        for n in 1..3 {
            pty.write(&em4100_frame("0C000621A5"));
            listen.wait_for_lines("same presentation", n, LONG).await;
        }
        pty.write(spoiled);
        let captured = || {
            std::fs::read_to_string(dir.path("reader.cap"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(" < ").map(|(_, hex)| hex.to_string()))
                .collect::<String>()
        };
        let spoiled_hex: String = spoiled.iter().map(|b| format!("{b:02X}")).collect();
        assert!(
            wait_until(LONG, || captured().contains(&spoiled_hex)).await,
            "the spoiled frame was never read: {}",
            captured()
        );
        pty.write(&em4100_frame("0102B0A5FD"));
        listen.wait_for_lines("] read ", 2, LONG).await;
    })
    .await;
    assert_eq!(read, ["0C000621A5", "0102B0A5FD"]);
    assert_eq!(replayed_ids(&text), read, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_captures_a_twn4_conversation_that_replays_to_what_it_read() {
    let dir = TestDir::new("capture-twn4");
    let pty = Pty::open();
    let twn4 = EmulatedReader::twn4(&pty);
    let reader = serial_reader("entrance", &pty.slave_path, "twn4", "");
    let (text, read) = capture_with_listen(&dir, &reader, async |listen: &Daemon| {
        twn4.wait_for_searches(2, LONG).await;
        for (i, (id, tag_type)) in [
            (&[0x26, 0xDE, 0xFA, 0xE7][..], 0x80),
            (&[0x0B, 0xAD, 0xC0, 0xDE], 0x83),
        ]
        .into_iter()
        .enumerate()
        {
            if i == 1 {
                twn4.fault(&[Fault::Corrupt, Fault::Drop]);
            }
            twn4.present_typed(id, tag_type);
            listen.wait_for_lines("] read ", i + 1, LONG).await;
            twn4.wait_for_searches(10, LONG).await;
            twn4.remove();
            listen.wait_for_lines("card taken away", i + 1, LONG).await;
        }
    })
    .await;
    assert_eq!(read, ["26DEFAE7", "0BADC0DE"]);
    assert_eq!(replayed_ids(&text), read, "{text}");
    let formats: Vec<Option<TagFormat>> = capture::replay(&text)
        .unwrap()
        .presented
        .into_iter()
        .map(|p| p.tag_format)
        .collect();
    assert_eq!(formats, [Some(TagFormat::Mifare), Some(TagFormat::Legic)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_captures_a_line_reader_that_replays_to_what_it_read() {
    let dir = TestDir::new("capture-line");
    let mut pty = Pty::open();
    let reader = serial_reader("entrance", &pty.slave_path, "line", "");
    let (text, read) = capture_with_listen(&dir, &reader, async |listen: &Daemon| {
        // Parallax framing (LF id CR), a line with a control byte, then CR LF.
        pty.write(b"\n0F0184F07A\r");
        pty.write(b"0C00\x0006\r\n");
        listen.wait_for_lines("] read ", 1, LONG).await;
        pty.write(b"0C000621A5\r\n");
        listen.wait_for_lines("] read ", 2, LONG).await;
    })
    .await;
    assert_eq!(read, ["0F0184F07A", "0C000621A5"]);
    assert_eq!(replayed_ids(&text), read, "{text}");
}

#[test]
fn a_replay_follows_reopens_and_says_where_it_stops_following_the_capture() {
    use gym_checkin::reader::pn532::{CHIP_TO_HOST, HOST_TO_CHIP, information_frame};
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<String>();
    let ack = [0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00];
    let answer = |data: &[u8]| hex(&[&ack[..], &information_frame(CHIP_TO_HOST, data)].concat());
    let mut wake = vec![0x55, 0x55];
    wake.extend([0u8; 14]);
    wake.extend(information_frame(HOST_TO_CHIP, &[0x14, 0x01]));
    let configure = information_frame(HOST_TO_CHIP, &[0x32, 0x05, 0xFF, 0x01, 0x02]);
    let search = information_frame(HOST_TO_CHIP, &[0x4A, 0x01, 0x00]);
    let card = answer(&[
        0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x04, 0x26, 0xDE, 0xFA, 0xE7,
    ]);
    // The device opened, the chip woken and configured, a card found: twice, as when a
    // reader is unplugged and plugged back with the card still on it.
    let conversation = |at: f64| {
        format!(
            "{at:.6} open\n{:.6} > {}\n{:.6} < {}\n{:.6} > {}\n{:.6} < {}\n{:.6} > {}\n{:.6} < {card}\n",
            at + 0.001,
            hex(&wake),
            at + 0.004,
            answer(&[0x15]),
            at + 0.005,
            hex(&configure),
            at + 0.006,
            answer(&[0x33]),
            at + 0.007,
            hex(&search),
            at + 0.010,
        )
    };
    let header = "# gym-checkin capture 1\n# reader: entrance\n# driver: serial\n# protocol: pn532\n# baud: 115200\n# id-format: hex\n# id-bytes: all\n# byte-order: as-read\n# egym-tag-format: MIFARE\n# debounce-ms: 1500\n";
    let text = format!("{header}{}{}", conversation(0.0), conversation(5.0));
    let replay = capture::replay(&text).unwrap();
    let found: Vec<String> = replay.presented.iter().map(ToString::to_string).collect();
    assert_eq!(found, ["0x26DEFAE7 MIFARE", "0x26DEFAE7 MIFARE"]);
    assert_eq!(replay.rejected_frames, 0);
    // Without the reopen, the codec would not wake the chip again: the replay says where.
    let no_reopen = text.replacen("5.000000 open\n", "", 1);
    let error = capture::replay(&no_reopen).unwrap_err();
    assert!(
        error.contains("line 18") && error.contains("would send"),
        "{error}"
    );
}
