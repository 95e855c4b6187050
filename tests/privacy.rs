//! Privacy, end to end with the real binary, the stand-in EGYM and pseudo-terminal readers:
//! `forget` through the running service (rows, memory and the bytes in the files), with a
//! confirmation that names the taps EGYM would never get; `forget` and `export` on the database
//! when no service runs, and refused while a service runs that cannot be asked; who may ask;
//! files only their owner may read, whatever the umask; a journal without whole card ids; and a
//! database of the previous schema, migrated and pruned to the new retention.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

/// A card and its member's account, and another member's.
const CARD: &str = "5A17C39E42";
const RFID: &str = "0x5A17C39E42";
const ACCOUNT: &str = "acc-7f3e91d2";
const OTHER: &str = "0B00C0FFEE";
const OTHER_ACCOUNT: &str = "acc-other-31";

fn reader(path: &Path) -> String {
    serial_reader(
        "entrance",
        path,
        "em4100",
        &format!("debounce = \"{DEBOUNCE_MS}ms\""),
    )
}

/// Runs a command of the binary with `config`, `input` on its standard input.
fn command(args: &[&str], config: &Path, input: &str) -> Output {
    run_as(gym_checkin(), args, config, input)
}

fn run_as(mut command: std::process::Command, args: &[&str], config: &Path, input: &str) -> Output {
    let mut child = command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A command that does not read its input (or has exited) closes the pipe: not an error.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `export` as JSON.
fn export(config: &Path, by: &[&str]) -> serde_json::Value {
    let mut args = vec!["export"];
    args.extend_from_slice(by);
    let output = command(&args, config, "");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "export failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("export printed {stdout:?}: {e}"))
}

/// The reader's debounce (see [`reader`]).
const DEBOUNCE_MS: i64 = 200;

/// Taps `card` once more: a frame, then the recorded tap (the `n`th).
async fn tap(daemon: &Daemon, pty: &mut Pty, card: &str, n: usize) {
    // Past the reader's debounce since the last tap it read, as the service logged it.
    if let Some(last) = daemon.recorded().last() {
        wait_until_past(last.tapped_at_ms + DEBOUNCE_MS).await;
    }
    pty.write(&em4100_frame(card));
    daemon.wait_for_tap(n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_through_the_service_erases_rows_memory_and_every_byte_after_a_confirmation() {
    let dir = TestDir::new("forget-service");
    let fake = start_egym(vec![
        member(RFID, ACCOUNT),
        member(&format!("0x{OTHER}"), OTHER_ACCOUNT),
    ])
    .await;
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "repeat-window = \"0s\"",
        &reader(&pty.slave_path),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    // The member checks in, and so does another; both reach EGYM.
    tap(&daemon, &mut pty, CARD, 1).await;
    tap(&daemon, &mut pty, OTHER, 2).await;
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 2).await;
    assert!(ok, "{received:#?}");
    // EGYM goes out of reach: the member checks out and in again, held in the outbox.
    fake.set_mode(Mode::Down);
    tap(&daemon, &mut pty, CARD, 3).await;
    tap(&daemon, &mut pty, CARD, 4).await;
    let kinds: Vec<String> = daemon.recorded().iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds, ["checkin", "checkin", "checkout", "checkin"]);
    let db = dir.path("gym-checkin.db");
    let forms = id_forms(RFID, ACCOUNT);
    assert_found(&db, &forms);

    // Asked, the answer names what the box holds and the taps EGYM would never get; "no"
    // erases nothing.
    let output = command(&["forget", "--tag", "0x5a17c39e42"], &config, "no\n");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    for wanted in [
        "The box holds, about card 0x5A17C39E42 (asked the running service",
        "3 events, 2 of them not yet delivered to EGYM",
        "1 visit state",
        "1 cached lookup",
        "2 taps not yet delivered would NEVER reach EGYM",
    ] {
        assert!(stdout.contains(wanted), "{wanted:?} missing: {stdout}");
    }
    assert!(stderr.contains("nothing was erased"), "{stderr}");
    assert_eq!(
        export(&config, &["--tag", RFID])["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // "yes": erased, in the database, in the files and in the service's memory.
    let output = command(&["forget", "--tag", CARD], &config, "yes\n");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("Erased: 3 events (2 of them not yet delivered to EGYM), 1 visit state, 1 cached lookup, and what the running service held of it in memory"),
        "{stdout}"
    );
    daemon.wait_for_event("erased", LONG).await;
    let line = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("event=\"erased\""))
        .unwrap();
    for (key, value) in [
        ("events", "3"),
        ("not_delivered", "2"),
        ("visits", "1"),
        ("accounts", "1"),
        ("cards", "1"),
    ] {
        assert_eq!(field(&line, key), Some(value), "{key} in {line}");
    }
    assert!(
        !line.contains(CARD) && !line.contains(ACCOUNT),
        "counts only: {line}"
    );
    assert_eq!(found_in_files(&db, &forms), Vec::<String>::new());
    let held = export(&config, &["--tag", RFID]);
    for part in ["events", "visits", "cached_lookups"] {
        assert_eq!(held[part], serde_json::json!([]), "{part}: {held}");
    }
    // The other member's data is all there.
    assert_eq!(
        export(&config, &["--account", OTHER_ACCOUNT])["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The service forgot the member was inside: the next tap checks in, and the erased taps
    // never reach EGYM.
    fake.set_mode(Mode::Normal);
    tap(&daemon, &mut pty, CARD, 5).await;
    assert_eq!(daemon.recorded()[4].kind, "checkin");
    let (ok, received) = fake.wait_for(LONG, |r| count_visits(r) == 3).await;
    assert!(ok, "{received:#?}");
    let member_visits: Vec<String> = visits(&received)
        .into_iter()
        .filter(|(account, _, _)| account == ACCOUNT)
        .map(|(_, what, _)| what)
        .collect();
    assert_eq!(member_visits, ["checkins", "checkins"]);
    let status = status_json(&config);
    assert_eq!(status["events"]["pending"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_in_a_script_needs_yes() {
    let dir = TestDir::new("forget-script");
    let fake = start_egym(vec![member(RFID, ACCOUNT)]).await;
    let mut pty = Pty::open();
    let config = write_config(&dir, &fake.base_url(), "", &reader(&pty.slave_path));
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    tap(&daemon, &mut pty, CARD, 1).await;
    let (ok, _) = fake.wait_for(LONG, |r| count_visits(r) == 1).await;
    assert!(ok);

    // No answer at all (its input ends): nothing erased, and it says how a script does it.
    let output = command(&["forget", "--tag", RFID], &config, "");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("scripts pass --yes"), "{stderr}");
    assert_eq!(
        export(&config, &["--tag", RFID])["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let output = command(&["forget", "--account", ACCOUNT, "--yes"], &config, "");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Erased: 1 event (0 of them"), "{stdout}");
    assert_eq!(
        export(&config, &["--tag", RFID])["events"],
        serde_json::json!([])
    );

    // Nothing held: said, and no question asked.
    let output = command(&["forget", "--tag", RFID], &config, "");
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(
        stdout.contains("The box holds nothing about card 0x5A17C39E42"),
        "{stdout}"
    );

    // Usage: one of --tag and --account, a card in hex.
    assert_eq!(command(&["forget"], &config, "").status.code(), Some(2));
    assert_eq!(
        command(
            &["export", "--tag", RFID, "--account", ACCOUNT],
            &config,
            ""
        )
        .status
        .code(),
        Some(2)
    );
    let output = command(&["forget", "--tag", "card-1"], &config, "");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).1.contains("is not a card's rfid"),
        "{:?}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_service_forget_and_export_work_on_the_database_and_never_beside_a_service() {
    let dir = TestDir::new("forget-direct");
    let fake = start_egym(vec![member(RFID, ACCOUNT)]).await;
    let mut pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "repeat-window = \"0s\"",
        &reader(&pty.slave_path),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    tap(&daemon, &mut pty, CARD, 1).await;
    tap(&daemon, &mut pty, CARD, 2).await;
    let (ok, _) = fake.wait_for(LONG, |r| count_visits(r) == 2).await;
    assert!(ok);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));

    // The export names the card, its events with the account EGYM gave, and when each goes.
    let held = export(&config, &["--account", ACCOUNT]);
    assert_eq!(held["from"], "database", "{held}");
    assert_eq!(held["cards"], serde_json::json!([RFID]));
    let events = held["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{held}");
    assert_eq!(events[0]["account_id"], ACCOUNT);
    assert_eq!(events[0]["id_as_read"], CARD);
    assert_eq!(events[0]["state"], "delivered");
    assert_eq!(events[1]["kind"], "checkout");
    assert!(events[0]["deleted_after"].is_string(), "{held}");
    assert_eq!(held["visits"][0]["inside"], false, "{held}");
    assert_eq!(held["cached_lookups"][0]["account_id"], ACCOUNT, "{held}");
    assert_eq!(held["retention"]["delivered_events"], "30d 0h", "{held}");

    let db = dir.path("gym-checkin.db");
    let forms = id_forms(RFID, ACCOUNT);
    assert_found(&db, &forms);
    let output = command(&["forget", "--account", ACCOUNT], &config, "yes\n");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("(asked the database (no service runs on it))"),
        "{stdout}"
    );
    assert!(stdout.contains("Erased: 2 events"), "{stdout}");
    assert!(
        stderr.contains("event=\"erased\""),
        "the erasure is logged: {stderr}"
    );
    assert!(!stderr.contains(CARD), "{stderr}");
    assert_eq!(found_in_files(&db, &forms), Vec::<String>::new());

    // A service that runs but cannot be asked (its socket is off) is never bypassed.
    let config_text = std::fs::read_to_string(&config).unwrap();
    let no_socket = dir.path("no-socket.toml");
    let socket_line = format!("socket = \"{}\"", dir.path("gym-checkin.sock").display());
    std::fs::write(
        &no_socket,
        config_text.replace(&socket_line, "socket = \"\""),
    )
    .unwrap();
    let daemon = Daemon::start(&no_socket);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    let output = command(&["forget", "--tag", RFID, "--yes"], &no_socket, "");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the service (pid {}) runs on {} but cannot be asked",
            daemon.pid(),
            db.display()
        )),
        "{stderr}"
    );
    let output = command(&["export", "--tag", RFID], &no_socket, "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).1.contains("cannot be asked"),
        "{:?}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_in_the_group_may_ask_the_status_but_not_forget_or_export() {
    let dir = TestDir::new("forget-who");
    let fake = start_egym(vec![member(RFID, ACCOUNT)]).await;
    let mut pty = Pty::open();
    let config = write_config(&dir, &fake.base_url(), "", &reader(&pty.slave_path));
    let daemon = Daemon::start(&config);
    daemon.wait_for_event("reader_connected", LONG).await;
    tap(&daemon, &mut pty, CARD, 1).await;
    let group = std::fs::metadata(dir.path("gym-checkin.sock"))
        .unwrap()
        .gid();
    let as_staff = || as_unprivileged(&dir, &[group]);

    let output = run_as(as_staff(), &["status", "--json"], &config, "");
    assert!(output.status.success(), "{:?}", text(&output));
    for args in [
        &["forget", "--tag", RFID, "--yes"][..],
        &["export", "--tag", RFID][..],
    ] {
        let output = run_as(as_staff(), args, &config, "");
        let (stdout, stderr) = text(&output);
        if is_root() {
            // Another user (nobody), in the service's group: refused by the service.
            assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
            assert!(
                stderr.contains(&format!(
                    "`gym-checkin {}` works on a member's data: it needs root",
                    args[0]
                )),
                "{stderr}"
            );
        } else {
            // The tests' own user is the service's: it may.
            assert!(output.status.success(), "{stdout}{stderr}");
        }
    }
    if is_root() {
        assert_eq!(
            export(&config, &["--tag", RFID])["events"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_their_owners_alone_whatever_the_umask() {
    let dir = TestDir::new("umask");
    let fake = start_egym(vec![member(RFID, ACCOUNT)]).await;
    let mut pty = Pty::open();
    let config = write_config(&dir, &fake.base_url(), "", &reader(&pty.slave_path));
    // A database an earlier version made as the umask let it.
    let db = dir.path("gym-checkin.db");
    drop(gym_checkin::store::Store::open(&db).await.unwrap());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let umask_000 = ["sh", "-c", "umask 000 && exec \"$@\"", "sh"];
    let daemon = Daemon::start_under(&umask_000, &config);
    daemon.wait_for_event("reader_connected", LONG).await;
    tap(&daemon, &mut pty, CARD, 1).await;
    let mode = |name: &str| {
        std::fs::metadata(dir.path(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for file in [
        "gym-checkin.db",
        "gym-checkin.db-wal",
        "gym-checkin.db-shm",
        "gym-checkin.db.lock",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    assert_eq!(
        mode("gym-checkin.sock"),
        0o660,
        "the group may ask for the status"
    );
    drop(daemon);

    // A new database, and a capture of the reader, under umask 000.
    let fresh = TestDir::new("umask-fresh");
    let fresh_config = write_config(&fresh, &fake.base_url(), "", &reader(&pty.slave_path));
    let capture = fresh.path("reader.cap");
    let daemon = Daemon::start_under(&umask_000, &fresh_config);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    for file in ["gym-checkin.db", "gym-checkin.db-wal", "gym-checkin.db-shm"] {
        let mode = std::fs::metadata(fresh.path(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    drop(daemon);
    let capture_arg = capture.display().to_string();
    let _listen = Daemon::start_command_under(
        &umask_000,
        &["listen", "--reader", "entrance", "--capture", &capture_arg],
        &fresh_config,
    );
    assert!(
        wait_until(LONG, || capture.exists()).await,
        "no capture file"
    );
    let mode = std::fs::metadata(&capture).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a capture holds card ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_keeps_whole_card_ids_only_for_a_setup_session() {
    const UNKNOWN: &str = "0A0B0C0D0E";
    for full_tags in [false, true] {
        let dir = TestDir::new("journal-tags");
        let fake = start_egym(vec![]).await;
        let mut pty = Pty::open();
        let config = write_config(&dir, &fake.base_url(), "", &reader(&pty.slave_path));
        if full_tags {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("[log]\nfull-tags = true\n{text}")).unwrap();
        }
        let daemon = Daemon::start(&config);
        daemon.wait_for_event("reader_connected", LONG).await;
        tap(&daemon, &mut pty, UNKNOWN, 1).await;
        let unknown = daemon.wait_for_event("unknown_tag", LONG).await;
        let log = daemon.lines().join("\n");
        if full_tags {
            assert!(log.contains("full-tags = true"), "said at start: {log}");
            assert!(unknown.contains("renderings="), "{unknown}");
            assert!(unknown.contains(&format!("0x{UNKNOWN}")), "{unknown}");
        } else {
            assert!(!log.contains(UNKNOWN), "a whole id in the journal:\n{log}");
            assert!(unknown.contains("tag=0x…0D0E"), "{unknown}");
            assert!(!unknown.contains("renderings="), "{unknown}");
            // The renderings are in `status`, for staff, as on the staff page.
            let status = status_json(&config);
            let card = &status["unknown_cards"][0];
            assert_eq!(card["rfid"], format!("0x{UNKNOWN}"), "{status}");
            assert!(
                card["renderings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["value"] == UNKNOWN),
                "{status}"
            );
            let text = status_text(&config);
            assert!(text.contains("unknown cards"), "{text}");
            assert!(
                text.contains(&format!("0x{UNKNOWN}  reader entrance")),
                "{text}"
            );
        }
    }
}

/// Inserts an event into a database of an earlier schema, as that version wrote them.
fn old_event(
    conn: &rusqlite::Connection,
    tag: &str,
    state: &str,
    tapped_at_ms: i64,
    account: Option<&str>,
    unknown: bool,
) {
    conn.execute(
        "INSERT INTO events (reader, raw_id, tag, kind, tapped_at_ms, recorded_at_ms, state,
                             next_attempt_steady_ms, tapped_steady_ms, account_id,
                             unknown_since_steady_ms, last_status, finished_at_ms, boot)
         VALUES ('entrance', substr(?1, 3), ?1, 'checkin', ?2, ?2, ?3, ?2, ?2, ?4,
                 CASE WHEN ?5 THEN ?2 END,
                 CASE ?3 WHEN 'delivered' THEN 204 WHEN 'rejected' THEN 422 END,
                 CASE WHEN ?3 IN ('delivered', 'rejected') THEN ?2 + 1000 END, NULL)",
        rusqlite::params![tag, tapped_at_ms, state, account, unknown],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_schema_is_migrated_rewritten_and_pruned_to_the_new_retention() {
    const DAY: i64 = 86_400_000;
    let dir = TestDir::new("privacy-upgrade");
    let db = dir.path("gym-checkin.db");
    let now = now_ms();
    let previous = gym_checkin::store::schema::SECURE_DELETE_SINCE - 1;
    {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        let tx = conn.transaction().unwrap();
        for migration in &gym_checkin::store::schema::MIGRATIONS[..previous] {
            tx.execute_batch(migration).unwrap();
        }
        tx.pragma_update(None, "user_version", previous as i64)
            .unwrap();
        // What that version kept: delivered 40 and 5 days ago; rejected 40 days ago (it never
        // deleted those); a card EGYM never knew, given up 10 days ago; a tap still pending.
        old_event(
            &tx,
            "0x9C31E7A504",
            "delivered",
            now - 40 * DAY,
            Some("acc-old"),
            false,
        );
        old_event(
            &tx,
            "0x0B00000001",
            "delivered",
            now - 5 * DAY,
            Some("acc-recent"),
            false,
        );
        old_event(&tx, "0x8D42F6B613", "rejected", now - 40 * DAY, None, false);
        old_event(&tx, "0x7E53A5C722", "rejected", now - 10 * DAY, None, true);
        old_event(&tx, "0x0E00000001", "pending", now - 40 * DAY, None, false);
        tx.execute_batch(&format!(
            "INSERT INTO accounts (tag, tag_format, account_id, resolved_steady_ms)
             VALUES ('0x9C31E7A504', '', 'acc-old', {old}), ('0x0B00000001', '', 'acc-recent', {recent});
             INSERT INTO visits (tag, inside, last_event_steady_ms, checked_in_steady_ms, reader, raw_id)
             VALUES ('0x9C31E7A504', 0, {old}, NULL, 'entrance', '9C31E7A504'),
                    ('0x0E00000001', 1, {old}, {old}, 'entrance', '0E00000001');",
            old = now - 40 * DAY,
            recent = now - 3_600_000,
        ))
        .unwrap();
        // A card that version pruned, deleting as SQLite does by default: its bytes stay in
        // the file's free space.
        for i in 0..40 {
            old_event(
                &tx,
                "0x5A17C39E42",
                "delivered",
                now - 50 * DAY + i,
                Some("acc-gone-0417"),
                false,
            );
        }
        tx.commit().unwrap();
        conn.execute("DELETE FROM events WHERE tag = '0x5A17C39E42'", [])
            .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let gone = id_forms("0x5A17C39E42", "acc-gone-0417");
    assert_found(&db, &gone);

    let fake = start_egym(vec![]).await;
    fake.set_mode(Mode::Down);
    let pty = Pty::open();
    let config = write_config(&dir, &fake.base_url(), "", &reader(&pty.slave_path));
    let mut daemon = Daemon::start(&config);
    daemon
        .wait_for_line(
            "database rewritten once, so that what earlier versions deleted is gone from the file",
            LONG,
        )
        .await;
    daemon.wait_for_line("event=\"pruned\"", LONG).await;
    let pruned = daemon
        .lines()
        .into_iter()
        .find(|l| l.contains("event=\"pruned\""))
        .unwrap();
    for (key, value) in [
        ("delivered", "1"),
        ("rejected", "1"),
        ("unknown", "1"),
        ("accounts", "1"),
        ("visits", "1"),
    ] {
        assert_eq!(field(&pruned, key), Some(value), "{key}: {pruned}");
    }
    // Gone from the files: what the first prune erased, and what the old version had deleted.
    let mut erased = gone;
    for (card, account) in [
        ("0x9C31E7A504", "acc-old"),
        ("0x8D42F6B613", "acc-none"),
        ("0x7E53A5C722", "acc-none"),
    ] {
        erased.extend(id_forms(card, account));
    }
    assert_eq!(found_in_files(&db, &erased), Vec::<String>::new());
    // What the new retention allows is all there.
    let kept = |card: &str| export(&config, &["--tag", card]);
    assert_eq!(kept("0x0B00000001")["events"][0]["state"], "delivered");
    assert_eq!(
        kept("0x0B00000001")["cached_lookups"][0]["account_id"],
        "acc-recent"
    );
    assert_eq!(kept("0x0E00000001")["events"][0]["state"], "pending");
    assert_eq!(kept("0x0E00000001")["visits"][0]["inside"], true);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        version as usize,
        gym_checkin::store::schema::MIGRATIONS.len()
    );
}
