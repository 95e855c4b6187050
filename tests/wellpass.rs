//! Wellpass (corporate-fitness) members through the real binary: admitted before the check-in,
//! or refused, said in words staff understand, and counted in `status`.

mod common;

use common::*;

const ADMITTED: &str = "0D00A1B2C3";
const EXPIRED: &str = "0D00D4E5F6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wellpass_member_is_admitted_and_an_expired_one_is_turned_away() {
    let dir = TestDir::new("wellpass");
    let fake = start_egym(vec![
        Member::new(&format!("0x{ADMITTED}"), "acc-ok", "Frankie Quillfeather").wellpass(None),
        Member::new(&format!("0x{EXPIRED}"), "acc-expired", "Gabi Zornbrook")
            .wellpass(Some("corporateFitnessMembershipExpired")),
    ])
    .await;
    let mut pty = Pty::open();
    let reader = serial_reader(
        "entrance",
        &pty.slave_path,
        "em4100",
        "debounce = \"100ms\"",
    );
    let config = write_config(&dir, &fake.base_url(), "repeat-window = \"3s\"", &reader);
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;

    pty.write(&em4100_frame(ADMITTED));
    let first = daemon.wait_for_tap(1).await;
    assert_eq!(field(&first, "outcome"), Some("recorded"), "{first}");
    // Tapped again at once (past the debounce, well within the repeat window, however slowly
    // the first visit is delivered): no second visit and no second admission.
    wait_until_past(tapped_at_ms(&first) + 100).await;
    pty.write(&em4100_frame(ADMITTED));
    let again = daemon.wait_for_tap(2).await;
    assert_eq!(field(&again, "outcome"), Some("ignored"), "{again}");
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    pty.write(&em4100_frame(EXPIRED));
    let turned_away = daemon.wait_for_tap(3).await;
    // Refused at the door (EGYM answered within 3 s of the tap), so no check-in is sent.
    let refused = daemon.wait_for_event("admission_refused", LONG).await;
    let admitted = daemon.wait_for_event("admitted", LONG).await;
    let (admitted, refused) = (&admitted, &refused);
    println!("{admitted}\n{refused}");
    assert_eq!(field(admitted, "outcome"), Some("admitted"));
    assert_eq!(field(admitted, "first_admission"), Some("true"));
    assert!(refused.contains("WARN"), "{refused}");
    assert_eq!(
        field(refused, "reason"),
        Some("corporateFitnessMembershipExpired")
    );
    // No name, e-mail or full tag in the log.
    for line in [admitted, refused] {
        assert!(
            !line.contains("Frankie") && !line.contains("Gabi"),
            "{line}"
        );
        assert!(
            !line.contains("example.invalid") && !line.contains(EXPIRED),
            "{line}"
        );
    }
    let received = fake.received();
    assert!(
        !received
            .iter()
            .any(|r| r.visit().is_some_and(|(a, _)| a == "acc-expired")),
        "a check-in was sent for a refused member: {received:#?}"
    );
    assert_eq!(
        received
            .iter()
            .filter(|r| r.admission() == Some("acc-ok"))
            .count(),
        1
    );
    // The account cache keeps the account and its membership type, nothing personal: no name
    // or e-mail address anywhere in the database's files.
    for file in ["gym-checkin.db", "gym-checkin.db-wal"] {
        let bytes = std::fs::read(dir.path(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for personal in [
            "Frankie",
            "Quillfeather",
            "Gabi",
            "Zornbrook",
            "example.invalid",
        ] {
            assert!(!text.contains(personal), "{personal} is in {file}");
        }
        if file == "gym-checkin.db-wal" {
            assert!(text.contains("CORPORATE_FITNESS") || bytes.is_empty());
        }
    }
    let status = status_json(&config);
    assert_eq!(status["admissions"]["admitted"], 1, "{status}");
    assert_eq!(
        status["admissions"]["refused"]["corporateFitnessMembershipExpired"], 1,
        "{status}"
    );
    let text = status_text(&config);
    assert!(
        text.contains("1 × refused: Wellpass membership expired"),
        "{text}"
    );

    // Turned away, the member is not inside: the next tap, once the repeat window is over, is a
    // check-in again, not a check-out.
    wait_until_past(tapped_at_ms(&turned_away) + 3_000).await;
    pty.write(&em4100_frame(EXPIRED));
    daemon.wait_for_events("admission_refused", 2, LONG).await;
    let expired: Vec<Recorded> = daemon
        .recorded()
        .into_iter()
        .filter(|r| r.tag.ends_with("E5F6"))
        .collect();
    assert_eq!(
        expired.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["checkin", "checkin"]
    );
}
