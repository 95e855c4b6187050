//! Readers the host must ask, end to end: the real binary drives an emulated PN532 board and an
//! emulated Elatec TWN4 on pseudo-terminals, and delivers what they read to the stand-in EGYM.

mod common;

use common::readers::{EmulatedReader, Fault};
use common::*;

const MIFARE_4: [u8; 4] = [0x26, 0xDE, 0xFA, 0xE7];
const MIFARE_7: [u8; 7] = [0x04, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80];
const MIFARE_10: [u8; 10] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A];

/// Presents `uid` and waits for its tap to be recorded; the milliseconds from the card's
/// presence to the commit.
async fn tap(daemon: &Daemon, reader: &EmulatedReader, uid: &[u8], taps_before: usize) -> i64 {
    let presented_ms = now_ms();
    reader.present(uid);
    daemon
        .wait_for_events("tap_recorded", taps_before + 1, LONG)
        .await;
    let lines = daemon.lines();
    let line = lines
        .iter()
        .filter(|l| field(l, "event") == Some("tap_recorded"))
        .nth(taps_before)
        .unwrap();
    assert_eq!(
        field(line, "tag").unwrap(),
        gym_checkin::tag::short(&rfid_of(uid)),
        "{line}"
    );
    logged_at_ms(line) - presented_ms
}

/// Lookups EGYM got for `uid`, with their `tagFormat`.
fn lookups(received: &[Received], uid: &[u8]) -> Vec<Option<String>> {
    let path = format!("/api/v2/accounts/rfid/{}", rfid_of(uid));
    received
        .iter()
        .filter(|r| r.path == path)
        .map(|r| {
            r.query
                .as_deref()
                .and_then(|q| q.strip_prefix("tagFormat="))
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pn532_board_is_woken_searched_and_read() {
    let dir = TestDir::new("pn532");
    let fake = start_egym(vec![
        member(&rfid_of(&MIFARE_4), "acc-4"),
        member(&rfid_of(&MIFARE_7), "acc-7"),
        member(&rfid_of(&MIFARE_10), "acc-10"),
    ])
    .await;
    let pty = Pty::open();
    let board = EmulatedReader::pn532(&pty);
    // No baud given: a PN532's 115200 is the default for the protocol.
    let config = write_config(
        &dir,
        &fake.base_url(),
        "repeat-window = \"1s\"",
        &serial_reader("entrance", &pty.slave_path, "pn532", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    board.wait_for_searches(3, LONG).await;
    let requests = board.requests();
    assert_eq!(
        requests[..3],
        ["SAMConfiguration", "RFConfiguration", "InListPassiveTarget"],
        "{requests:?}"
    );

    // A 4-byte card, left on the reader for well over the debounce: one presentation.
    let mut latencies = vec![tap(&daemon, &board, &MIFARE_4, 0).await];
    board.wait_for_searches(15, LONG).await;
    assert_eq!(
        daemon.recorded().len(),
        1,
        "a card held on the reader is one tap"
    );
    // Taken away and presented again: a new tap (a check-out, past the repeat window).
    board.remove();
    board.wait_for_searches(3, LONG).await;
    latencies.push(tap(&daemon, &board, &MIFARE_4, 1).await);
    board.remove();
    board.wait_for_searches(3, LONG).await;

    // 7- and 10-byte UIDs, the first read through a spoiled answer, a refused one and a lost
    // one (the faults strike answers that carry the card).
    board.fault(&[Fault::Corrupt, Fault::Refuse, Fault::Drop]);
    latencies.push(tap(&daemon, &board, &MIFARE_7, 2).await);
    assert_eq!(board.faults_left(), 0);
    board.remove();
    board.wait_for_searches(3, LONG).await;
    latencies.push(tap(&daemon, &board, &MIFARE_10, 3).await);
    daemon.wait_for_line("malformed frames skipped", LONG).await;
    let skipped = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("malformed frames skipped"))
        .unwrap();
    assert!(
        field(&skipped, "rejected_frames")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1,
        "{skipped}"
    );

    let kinds: Vec<String> = daemon.recorded().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["checkin", "checkout", "checkin", "checkin"]);
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) >= 4).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    // The protocol's default tagFormat.
    for uid in [&MIFARE_4[..], &MIFARE_7, &MIFARE_10] {
        let formats = lookups(&received, uid);
        assert!(!formats.is_empty(), "no lookup for {}", rfid_of(uid));
        assert!(
            formats.iter().all(|f| f.as_deref() == Some("MIFARE")),
            "{formats:?}"
        );
    }
    assert_eq!(board.bad_requests(), 0, "the daemon sent a malformed frame");
    assert_eq!(
        board.unheard(),
        0,
        "the daemon talked to the chip before waking it"
    );
    println!("PN532: card presence to commit, ms: {latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twn4_is_searched_and_its_tag_types_decide_the_tag_format() {
    let dir = TestDir::new("twn4");
    let legic = [0x0B, 0xAD, 0xC0, 0xDE];
    let hitag = [0x1A, 0x2B, 0x3C, 0x4D];
    let em = [0x01, 0x02, 0xB0, 0xA5, 0xFD];
    let fake = start_egym(vec![
        member(&rfid_of(&MIFARE_4), "acc-mifare"),
        member(&rfid_of(&legic), "acc-legic"),
        member(&rfid_of(&hitag), "acc-hitag"),
        member(&rfid_of(&em), "acc-em"),
    ])
    .await;
    let pty = Pty::open();
    let twn4 = EmulatedReader::twn4(&pty);
    // A reader-wide tagFormat: the tag type the reader reports goes before it.
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader(
            "entrance",
            &pty.slave_path,
            "twn4",
            "egym-tag-format = \"HITAG1\"",
        ),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    twn4.wait_for_searches(2, LONG).await;

    let mut latencies = Vec::new();
    for (i, (id, tag_type)) in [
        (&MIFARE_4[..], 0x80),
        (&legic, 0x83),
        (&hitag, 0x41),
        (&em, 0x40),
    ]
    .into_iter()
    .enumerate()
    {
        let presented_ms = now_ms();
        if i == 1 {
            // A garbled answer, a refused one and a lost one on the way: skipped, counted,
            // asked again.
            twn4.fault(&[Fault::Corrupt, Fault::Refuse, Fault::Drop]);
        }
        twn4.present_typed(id, tag_type);
        daemon.wait_for_events("tap_recorded", i + 1, LONG).await;
        let lines = daemon.lines();
        let line = lines
            .iter()
            .filter(|l| field(l, "event") == Some("tap_recorded"))
            .nth(i)
            .unwrap();
        latencies.push(logged_at_ms(line) - presented_ms);
        assert_eq!(twn4.faults_left(), 0);
        // Held for well over the debounce: still one tap.
        twn4.wait_for_searches(12, LONG).await;
        assert_eq!(daemon.recorded().len(), i + 1, "a card held is one tap");
        twn4.remove();
        twn4.wait_for_searches(3, LONG).await;
    }
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) >= 4).await;
    assert!(ok, "{}", daemon.lines().join("\n"));
    assert_eq!(lookups(&received, &MIFARE_4), [Some("MIFARE".to_string())]);
    assert_eq!(lookups(&received, &legic), [Some("LEGIC".to_string())]);
    assert_eq!(lookups(&received, &hitag), [Some("HITAG1".to_string())]);
    // EGYM has no tagFormat for EM cards: none is sent, whatever the reader's setting.
    assert_eq!(lookups(&received, &em), [None]);
    let skipped = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("malformed frames skipped"))
        .unwrap_or_else(|| panic!("no malformed frame logged:\n{}", daemon.lines().join("\n")));
    assert!(
        field(&skipped, "rejected_frames")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        twn4.bad_requests(),
        0,
        "the daemon sent something that is no SearchTag"
    );
    println!("TWN4: card presence to commit, ms: {latencies:?}");
}
