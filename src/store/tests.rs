//! The store against real SQLite files.

use std::path::PathBuf;

use rusqlite::Connection;

use super::*;
use crate::clock::placement::{Anchor, BootReading, Placed};
use crate::clock::timer;
use crate::visit::{CheckIn, after_event};

fn steady(ms: i64) -> SteadyMs {
    SteadyMs::from_millis(ms)
}

fn wall(ms: i64) -> WallMs {
    WallMs::from_millis(ms)
}

async fn temp_db(name: &str) -> (PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!("gym-checkin-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.db");
    let store = Store::open(&path).await.unwrap();
    (path, store)
}

/// A trusted event of `kind` for `tag`, tapped at `at` (wall and steady time alike).
fn event(tag: &str, kind: Kind, at: i64) -> (NewEvent, TagState) {
    let event = NewEvent {
        reader: "entrance".into(),
        raw_id: "0C000621A5".into(),
        tag: tag.into(),
        tag_format: None,
        kind,
        tapped_at: wall(at),
        tapped_steady: steady(at),
        boot: 1,
        time: TimeQuality::Trusted,
        automatic: false,
    };
    let state = after_event(
        kind,
        CheckIn {
            steady: steady(at),
            at: Some(wall(at)),
        },
    );
    (event, state)
}

async fn record(store: &Store, events: Vec<(NewEvent, TagState)>) -> Vec<i64> {
    let batch = Batch::of(events, wall(0));
    store.record_batch(batch).await.unwrap().ids
}

/// Whether the database thread has made its write that starts the log over.
fn started_over(conn: &Connection) -> bool {
    conn.query_row("SELECT checkpointed_at_ms FROM maintenance", [], |row| {
        row.get::<_, Option<i64>>(0)
    })
    .unwrap()
    .is_some()
}

fn ids_in(events: Vec<OpenEvent>) -> Vec<i64> {
    events.into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn the_log_is_checkpointed_and_started_over_between_jobs() {
    let (path, store) = temp_db("log").await;
    // 600 commits of 10 events on new tags: several thousand pages through the log.
    for batch in 0..600 {
        let events = (0..10)
            .map(|i| {
                let at = batch * 10 + i;
                event(&format!("0x{at:010X}"), Kind::CheckIn, at)
            })
            .collect();
        record(&store, events).await;
    }
    let conn = Connection::open(&path).unwrap();
    let wal_path = path.with_extension("db-wal");
    // The header's checkpoint sequence number counts the times the log started over.
    let restarts = || {
        let wal = std::fs::read(&wal_path).unwrap();
        u32::from_be_bytes(wal[12..16].try_into().unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while restarts() < 3 && std::time::Instant::now() < deadline {
        timer::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(restarts() >= 3, "the log started over {} times", restarts());
    // By the database thread's own write, not by the next commit that came along.
    assert!(
        started_over(&conn),
        "the log was never started over on purpose"
    );
    // Started over, the log is overwritten in place instead of growing with every commit.
    let frames = (std::fs::metadata(&wal_path).unwrap().len() as usize - 32) / (4096 + 24);
    assert!(
        frames < checkpoint::CHECKPOINT_PAGES as usize * 3 / 2,
        "the log has {frames} frames"
    );
    let events: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(events, 6000);
}

#[tokio::test]
async fn only_the_oldest_open_event_of_a_tag_is_claimed() {
    let (_path, store) = temp_db("claim").await;
    let a1 = record(&store, vec![event("0xAA", Kind::CheckIn, 1)]).await[0];
    let b1 = record(&store, vec![event("0xBB", Kind::CheckIn, 2)]).await[0];
    let a2 = record(&store, vec![event("0xAA", Kind::CheckOut, 3)]).await[0];
    assert_eq!(
        ids_in(store.claim_due(steady(10), 0, 10).await.unwrap()),
        vec![a1, b1]
    );
    // The head of 0xAA waits for a retry: its later event must wait behind it.
    store
        .schedule_retry(a1, steady(100), Answer::default())
        .await
        .unwrap();
    assert_eq!(
        ids_in(store.claim_due(steady(10), 0, 10).await.unwrap()),
        vec![b1]
    );
    assert_eq!(
        store.next_due_after(steady(0)).await.unwrap(),
        Some(steady(2))
    );
    assert_eq!(
        store.next_due_after(steady(2)).await.unwrap(),
        Some(steady(100))
    );
    store
        .mark_delivered(b1, "acc".into(), 204, wall(5))
        .await
        .unwrap();
    assert_eq!(
        store.next_due_after(steady(10)).await.unwrap(),
        Some(steady(100))
    );
    assert_eq!(
        ids_in(store.claim_due(steady(100), 0, 10).await.unwrap()),
        vec![a1]
    );
    store
        .mark_delivered(a1, "acc".into(), 204, wall(6))
        .await
        .unwrap();
    assert_eq!(
        ids_in(store.claim_due(steady(100), 0, 10).await.unwrap()),
        vec![a2]
    );
    store
        .mark_rejected(
            a2,
            Answer {
                status: Some(400),
                error_code: Some("bad".into()),
                message: "no".into(),
            },
            wall(7),
        )
        .await
        .unwrap();
    assert_eq!(store.next_due_after(steady(0)).await.unwrap(), None);
    let counts = store.event_counts().await.unwrap();
    assert_eq!(
        counts,
        EventCounts {
            pending: 0,
            waiting_for_enrolment: 0,
            unknown_tag: 0,
            delivered: 2,
            rejected: 1
        }
    );
}

/// The outbox's states as the module's diagram draws them: a retry keeps an `unknown_tag`
/// event `unknown_tag` (it never goes back to `pending`), and such an event ends delivered.
#[tokio::test]
async fn a_retry_keeps_an_unknown_tag_event_in_its_state_until_it_is_delivered() {
    let (_path, store) = temp_db("unknown-tag-states").await;
    let id = record(&store, vec![event("0xCC", Kind::CheckIn, 1)]).await[0];
    let state = |row: Option<EventRow>| row.unwrap().state.as_str();
    assert_eq!(state(store.event(id).await.unwrap()), "pending");
    let not_found = Answer {
        status: Some(404),
        error_code: Some("notFound".into()),
        message: "no member".into(),
    };
    store
        .mark_unknown_tag(id, steady(10), steady(1), not_found)
        .await
        .unwrap();
    assert_eq!(state(store.event(id).await.unwrap()), "unknown_tag");
    let unavailable = Answer {
        status: Some(503),
        error_code: None,
        message: "unavailable".into(),
    };
    store
        .schedule_retry(id, steady(20), unavailable)
        .await
        .unwrap();
    let row = store.event(id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("unknown_tag", 2));
    assert_eq!(
        ids_in(store.claim_due(steady(20), 0, 10).await.unwrap()),
        vec![id]
    );
    store
        .mark_delivered(id, "acc".into(), 204, wall(30))
        .await
        .unwrap();
    assert_eq!(state(store.event(id).await.unwrap()), "delivered");
}

/// A card enrolled from the box: its unknown event is due at once (it was due an hour on), the
/// "no member has it" the cache held is forgotten under every `tagFormat`, and another card's
/// events and cached answer are left as they were.
#[tokio::test]
async fn an_enrolled_card_s_waiting_taps_are_due_at_once_and_its_cached_answer_forgotten() {
    let (_path, store) = temp_db("card-enrolled").await;
    let ids = record(
        &store,
        vec![
            event("0xCC", Kind::CheckIn, 1_000),
            event("0xCC", Kind::CheckOut, 2_000),
            event("0xDD", Kind::CheckIn, 3_000),
        ],
    )
    .await;
    for id in [ids[0], ids[2]] {
        store
            .mark_unknown_tag(id, steady(3_600_000), steady(5_000), not_found())
            .await
            .unwrap();
    }
    let mifare = Some(TagFormat::Mifare);
    for (tag, format) in [("0xCC", None), ("0xCC", mifare), ("0xDD", None)] {
        store
            .cache_account(tag.into(), format, None, steady(5_000))
            .await
            .unwrap();
    }
    assert!(
        store
            .claim_due(steady(10_000), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let waiting = store.open_events_of("0xCC".into()).await.unwrap();
    assert_eq!(ids_in(waiting), vec![ids[0], ids[1]]);

    assert_eq!(store.card_enrolled("0xCC".into()).await.unwrap(), 2);
    // Due at once: at its own tap's steady time, earlier than any now.
    assert_eq!(
        ids_in(store.claim_due(steady(10_000), 0, 10).await.unwrap()),
        vec![ids[0]]
    );
    assert_eq!(
        store.event(ids[0]).await.unwrap().unwrap().state.as_str(),
        "unknown_tag"
    );
    for format in [None, mifare] {
        let cached = store.cached_account("0xCC".into(), format).await.unwrap();
        assert_eq!(cached, None, "{format:?}");
    }
    assert!(
        store
            .cached_account("0xDD".into(), None)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.event(ids[2]).await.unwrap().unwrap().next_attempt,
        steady(3_600_000)
    );
    // A card with no taps waiting: nothing to do, and said so.
    assert_eq!(store.card_enrolled("0xEE".into()).await.unwrap(), 0);
}

fn not_found() -> Answer {
    Answer {
        status: Some(404),
        error_code: None,
        message: "no member has this tag".into(),
    }
}

/// (pending delivery, waiting for an enrolment, unknown tag) and the oldest pending tap.
async fn waiting(store: &Store) -> ((u64, u64, u64), Option<i64>) {
    let status = store.status().await.unwrap();
    let e = status.events;
    (
        (e.pending, e.waiting_for_enrolment, e.unknown_tag),
        status.oldest_pending.map(SteadyMs::as_millis),
    )
}

/// Taps behind an event EGYM does not know wait for the card's enrolment: they are counted
/// apart from those pending delivery, and the oldest pending tap is not one of them, until the
/// unknown event is delivered (the card enrolled) or given up.
#[tokio::test]
async fn taps_behind_an_unknown_card_wait_for_its_enrolment_not_for_delivery() {
    let (_path, store) = temp_db("waiting-enrolment").await;
    let ids = record(
        &store,
        vec![
            event("0xCC", Kind::CheckIn, 100),
            event("0xCC", Kind::CheckOut, 200),
            event("0xDD", Kind::CheckIn, 300),
        ],
    )
    .await;
    assert_eq!(waiting(&store).await, ((3, 0, 0), Some(100)));
    store
        .mark_unknown_tag(ids[0], steady(10_000), steady(100), not_found())
        .await
        .unwrap();
    assert_eq!(waiting(&store).await, ((1, 1, 1), Some(300)));
    // A tap recorded behind it waits too; one of another card does not.
    let later = record(
        &store,
        vec![
            event("0xCC", Kind::CheckIn, 400),
            event("0xEE", Kind::CheckIn, 500),
        ],
    )
    .await;
    assert_eq!(waiting(&store).await, ((2, 2, 1), Some(300)));
    let staff = store.staff(10, None).await.unwrap();
    assert_eq!(
        staff
            .unknown
            .iter()
            .map(|(row, n)| (row.id, *n))
            .collect::<Vec<_>>(),
        vec![(ids[0], 2)]
    );
    let marked: Vec<i64> = staff
        .taps
        .iter()
        .filter(|t| t.behind_unknown)
        .map(|t| t.id)
        .collect();
    assert_eq!(marked, vec![later[0], ids[1]]);
    // The card is enrolled: the unknown event is delivered, and the taps behind it are
    // pending delivery again, the oldest first.
    store
        .mark_delivered(ids[0], "acc".into(), 204, wall(1_000))
        .await
        .unwrap();
    assert_eq!(waiting(&store).await, ((4, 0, 0), Some(200)));
    assert!(
        store
            .staff(10, None)
            .await
            .unwrap()
            .taps
            .iter()
            .all(|t| !t.behind_unknown)
    );

    // Another card stays unknown for the whole window: its event is rejected, and the tap
    // behind it is pending delivery (it is asked about anew).
    let more = record(
        &store,
        vec![
            event("0xFF", Kind::CheckIn, 600),
            event("0xFF", Kind::CheckOut, 700),
        ],
    )
    .await;
    store
        .mark_unknown_tag(more[0], steady(10_000), steady(600), not_found())
        .await
        .unwrap();
    assert_eq!(waiting(&store).await, ((4, 1, 1), Some(200)));
    store
        .mark_rejected(more[0], not_found(), wall(2_000))
        .await
        .unwrap();
    assert_eq!(waiting(&store).await, ((5, 0, 0), Some(200)));
}

/// A database that already held taps waiting behind an unknown card when this version came:
/// the migration marks them, and counts them.
#[tokio::test]
async fn the_migration_marks_taps_already_waiting_behind_an_unknown_card() {
    let dir = std::env::temp_dir().join(format!("gym-checkin-store-{}-v7", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v7.db");
    // Migration 8 marks them: the database is left as the migrations before it made it.
    let before_this_version = 7;
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for migration in &schema::MIGRATIONS[..before_this_version] {
            tx.execute_batch(migration).unwrap();
        }
        tx.pragma_update(None, "user_version", before_this_version as i64)
            .unwrap();
        tx.execute_batch(
            "INSERT INTO events (reader, raw_id, tag, kind, tapped_at_ms, recorded_at_ms,
                                 next_attempt_steady_ms, tapped_steady_ms, state)
             VALUES ('entrance', 'CC', '0xCC', 'checkin', 100, 100, 0, 100, 'unknown_tag'),
                    ('entrance', 'CC', '0xCC', 'checkout', 200, 200, 0, 200, 'pending'),
                    ('entrance', 'CC', '0xCC', 'checkin', 300, 300, 0, 300, 'pending'),
                    ('entrance', 'DD', '0xDD', 'checkin', 400, 400, 0, 400, 'pending');",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    assert_eq!(waiting(&store).await, ((1, 2, 1), Some(400)));
}

/// The staff page's lists from the visit state and the admissions: who is in (the longest in
/// first, a first Wellpass visit flagged), and today's admissions by member.
#[tokio::test]
async fn the_staff_page_lists_who_is_in_and_counts_todays_wellpass_admissions_by_member() {
    let (_path, store) = temp_db("staff-inside").await;
    let ids = record(
        &store,
        vec![
            event("0xAA", Kind::CheckIn, 1_000),
            event("0xBB", Kind::CheckIn, 2_000),
            event("0xCC", Kind::CheckIn, 3_000),
            event("0xCC", Kind::CheckOut, 4_000),
            // Yesterday's visit of 0xDD, admitted then.
            event("0xDD", Kind::CheckIn, 500),
            event("0xDD", Kind::CheckOut, 600),
        ],
    )
    .await;
    store
        .mark_admission(ids[1], Admission::Admitted, None, true)
        .await
        .unwrap();
    store
        .mark_admission(ids[4], Admission::AdmittedLate, None, false)
        .await
        .unwrap();
    // 0xBB tapped in again later the same day (a second visit): admitted again, one member.
    let again = record(
        &store,
        vec![
            event("0xBB", Kind::CheckOut, 5_000),
            event("0xBB", Kind::CheckIn, 6_000),
        ],
    )
    .await;
    store
        .mark_admission(again[1], Admission::Admitted, None, false)
        .await
        .unwrap();
    let staff = store
        .staff(10, Some((wall(1_000), wall(10_000))))
        .await
        .unwrap();
    let inside: Vec<(&str, Option<WallMs>, bool)> = staff
        .inside
        .iter()
        .map(|m| (m.tag.as_str(), m.since, m.first_admission))
        .collect();
    // 0xBB's visit now began at 6 000, without a first admission: that was the earlier visit.
    assert_eq!(
        inside,
        vec![
            ("0xAA", Some(wall(1_000)), false),
            ("0xBB", Some(wall(6_000)), false)
        ]
    );
    assert_eq!(
        staff.wellpass_today,
        status::AdmissionsOfDay {
            members: 1,
            admissions: 2
        }
    );
    assert!(
        staff
            .taps
            .iter()
            .any(|t| t.id == ids[1] && t.first_admission)
    );
    // The day before counts its own.
    let yesterday = store.staff(10, Some((wall(0), wall(1_000)))).await.unwrap();
    assert_eq!(yesterday.wellpass_today.members, 1);
}

/// `status` is read from counts and indexes: none of its queries, nor the staff page's
/// count of the taps behind an unknown card, walks the events table itself.
#[tokio::test]
async fn status_reads_no_event_row_it_does_not_need() {
    let (path, store) = temp_db("status-plans").await;
    record(&store, vec![event("0xCC", Kind::CheckIn, 100)]).await;
    drop(store);
    let conn = Connection::open(&path).unwrap();
    for sql in [
        status::OLDEST_PENDING,
        status::LAST_DELIVERY,
        status::WAITING_BEHIND,
        status::UNKNOWN_CARDS,
        status::INSIDE,
        status::ADMITTED_BETWEEN,
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(
                rusqlite::params_from_iter(
                    ["0xCC", "1"].into_iter().take(sql.matches('?').count()),
                ),
                |row| row.get::<_, String>(3),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // A scan of `events_unknown` walks the events of unknown cards alone, few and short-lived.
        assert!(
            plan.iter().all(|step| (!step.starts_with("SCAN events")
                || step == "SCAN events USING INDEX events_unknown")
                && (step.contains("INDEX") || !step.contains("events"))),
            "{sql}: {plan:?}"
        );
    }
}

#[tokio::test]
async fn live_taps_go_ahead_of_the_backlog_and_each_tag_keeps_its_order() {
    let (_path, store) = temp_db("live").await;
    // A backlog: three tags, the first already retried, and a second event of the second tag.
    let backlog = record(
        &store,
        vec![
            event("0x01", Kind::CheckIn, 1),
            event("0x02", Kind::CheckIn, 2),
            event("0x03", Kind::CheckIn, 3),
            event("0x02", Kind::CheckOut, 4),
        ],
    )
    .await;
    store
        .schedule_retry(backlog[0], steady(5), Answer::default())
        .await
        .unwrap();
    // Then, with delivery working again, a tap of a new tag and a new tap of the first tag.
    let live = record(
        &store,
        vec![
            event("0x04", Kind::CheckIn, 6),
            event("0x01", Kind::CheckOut, 7),
        ],
    )
    .await;
    let backlog_through = backlog[3];
    // The live tap of a new tag first; the first tag's new tap waits behind its retried head;
    // then the backlog, oldest first, each tag's head only.
    assert_eq!(
        ids_in(
            store
                .claim_due(steady(10), backlog_through, 10)
                .await
                .unwrap()
        ),
        vec![live[0], backlog[0], backlog[1], backlog[2]]
    );
    // Without a backlog mark (everything counts as live), plain id order.
    assert_eq!(
        ids_in(store.claim_due(steady(10), 0, 3).await.unwrap()),
        vec![backlog[1], backlog[2], live[0]]
    );
}

#[tokio::test]
async fn only_delivered_events_tapped_before_the_cutoff_are_pruned_in_batches() {
    let (path, store) = temp_db("prune").await;
    let events = (0..30)
        .map(|i| event(&format!("0x{i:010X}"), Kind::CheckIn, i * 100))
        .collect();
    let ids = record(&store, events).await;
    // 25 delivered, the first 20 of them tapped before the cutoff; 5 still pending.
    for &id in &ids[..25] {
        store
            .mark_delivered(id, "acc".into(), 204, wall(5000))
            .await
            .unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    let mut pruned = Vec::new();
    loop {
        let n = store
            .prune_events(PruneClass::Delivered, wall(2000), 8)
            .await
            .unwrap();
        pruned.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(pruned, vec![8, 8, 4, 0]);
    // Far too few pages for a checkpoint of their own: pruning started the log over.
    assert!(started_over(&conn), "pruning left its pages in the log");
    let left: Vec<(i64, String)> = conn
        .prepare("SELECT id, state FROM events ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected: Vec<(i64, String)> = ids[20..]
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, if i < 5 { "delivered" } else { "pending" }.to_string()))
        .collect();
    assert_eq!(left, expected);
    // The counts the triggers keep follow the rows, deletions included.
    assert_eq!(
        store.event_counts().await.unwrap(),
        EventCounts {
            pending: 5,
            waiting_for_enrolment: 0,
            unknown_tag: 0,
            delivered: 5,
            rejected: 0
        }
    );
}

#[tokio::test]
async fn events_and_visit_state_survive_reopening() {
    let (path, store) = temp_db("reopen").await;
    let (e, state) = event("0xAA", Kind::CheckIn, 1);
    store.record_event(e, state, wall(1)).await.unwrap();
    store
        .cache_account(
            "0xAA".into(),
            None,
            Some(("acc-1".into(), crate::visit::Membership::Other)),
            steady(1),
        )
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    let visits = store.visits().await.unwrap();
    assert_eq!(visits["0xAA"].state, state);
    assert_eq!(store.claim_due(steady(5), 0, 10).await.unwrap().len(), 1);
    let cached = store
        .cached_account("0xAA".into(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached.account_id.as_deref(), Some("acc-1"));
    assert_eq!(
        store
            .cached_account("0xAA".into(), Some(TagFormat::Mifare))
            .await
            .unwrap(),
        None
    );
}

const DAY: i64 = 86_400_000;
/// 2026-11-29T00:00:00Z.
const T: i64 = 1_796_083_200_000 - DAY;

fn reading(boot_id: &str, boottime_ms: i64, wall_ms: i64, trusted: bool) -> BootReading {
    BootReading {
        boot_id: boot_id.into(),
        boottime_ms,
        wall: wall(wall_ms),
        trusted,
    }
}

fn anchor(wall_ms: i64, steady_ms: i64) -> Anchor {
    Anchor {
        wall: wall(wall_ms),
        steady: steady(steady_ms),
    }
}

/// A tap held for the clock: made in `boot` at steady `steady_ms`, the clock reading `wall_ms`.
fn held(tag: &str, kind: Kind, boot: i64, steady_ms: i64, wall_ms: i64) -> (NewEvent, TagState) {
    let (mut e, _) = event(tag, kind, 0);
    e.boot = boot;
    e.tapped_steady = steady(steady_ms);
    e.tapped_at = wall(wall_ms);
    e.time = TimeQuality::Untrusted;
    let state = after_event(
        kind,
        CheckIn {
            steady: steady(steady_ms),
            at: None,
        },
    );
    (e, state)
}

#[tokio::test]
async fn held_taps_wait_with_their_tags_and_are_placed_once_the_clock_is_trusted() {
    let (_path, store) = temp_db("held").await;
    // A new database: steady time starts at the wall time, whatever it reads.
    let stale = T - 3 * DAY;
    let (boot, earlier) = store
        .register_boot(reading("boot-a", 10_000, stale, false))
        .await
        .unwrap();
    assert_eq!((boot.offset_ms, earlier), (stale - 10_000, None));
    let s = stale;
    let ids = record(
        &store,
        vec![
            held("0xAA", Kind::CheckIn, boot.id, s + 1_000, s + 1_000),
            // A later event of the same tag, trusted: it waits behind the held one.
            {
                let (mut e, state) = event("0xAA", Kind::CheckOut, s + 9_000);
                e.boot = boot.id;
                (e, state)
            },
            held("0xCC", Kind::CheckIn, boot.id, s + 2_000, s + 2_000),
        ],
    )
    .await;
    assert!(
        store
            .claim_due(steady(s + 20_000), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due_after(steady(0)).await.unwrap(), None);
    assert_eq!(store.status().await.unwrap().clock.held, 2);

    // 60 s after the tap, the clock is stepped to the true time and trusted.
    let trusted = anchor(T + 60_000, s + 61_000);
    let placed = store.place_held(boot.id, trusted).await.unwrap();
    let placed: Vec<(i64, Placed)> = placed.iter().map(|p| (p.id, p.placed)).collect();
    assert_eq!(
        placed,
        vec![
            (ids[0], Placed::Exact(wall(T))),
            (ids[2], Placed::Exact(wall(T + 1_000)))
        ]
    );
    let row = store.event(ids[0]).await.unwrap().unwrap();
    assert_eq!((row.tapped_at, row.time), (wall(T), TimeQuality::Restamped));
    assert_eq!(row.next_attempt, steady(s + 61_000));
    assert_eq!(
        ids_in(store.claim_due(steady(s + 61_000), 0, 10).await.unwrap()),
        vec![ids[0], ids[2]]
    );
    // The visit a placed check-in began has its time now.
    assert_eq!(
        store.visits().await.unwrap()["0xCC"].state.checked_in,
        Some(CheckIn {
            steady: steady(s + 2_000),
            at: Some(wall(T + 1_000))
        })
    );
    let status = store.status().await.unwrap();
    assert_eq!((status.clock.held, status.clock.restamped), (0, 2));
    assert_eq!(
        store.place_held(boot.id, trusted).await.unwrap(),
        vec![],
        "placed once"
    );
}

#[tokio::test]
async fn a_tap_from_a_boot_never_trusted_is_placed_approximately_after_the_next_trusted_one() {
    let (_path, store) = temp_db("approximate").await;
    // Boot A: trusted, seen until steady T + 10 min.
    let (a, _) = store
        .register_boot(reading("boot-a", 5_000, T, true))
        .await
        .unwrap();
    let a_anchor = anchor(T + 600_000, T + 600_000);
    store
        .note_boot(a.id, steady(T + 600_000), Some(a_anchor))
        .await
        .unwrap();
    // Boot B: the clock stale and never trusted; a check-in 2 minutes into it.
    let (b, _) = store
        .register_boot(reading("boot-b", 20_000, T - 30 * DAY, false))
        .await
        .unwrap();
    let b_start = T + 600_000;
    assert_eq!(b.offset_ms, b_start - 20_000, "steady time goes on from A");
    let id = record(
        &store,
        vec![held(
            "0xBB",
            Kind::CheckIn,
            b.id,
            b_start + 120_000,
            T - 30 * DAY,
        )],
    )
    .await[0];
    store
        .note_boot(b.id, steady(b_start + 300_000), None)
        .await
        .unwrap();
    // Boot C: trusted at once, an hour after A was last seen.
    let (c, _) = store
        .register_boot(reading("boot-c", 30_000, T + 600_000 + 3_600_000, true))
        .await
        .unwrap();
    let c_now = T + 600_000 + 3_600_000;
    let c_steady = c.offset_ms + 30_000;
    let placed = store
        .place_held(c.id, anchor(c_now, c_steady))
        .await
        .unwrap();
    // No earlier than A's last trusted time + 2 minutes; placed at the latest it can have been:
    // C's start less the 3 minutes B ran after the tap.
    let not_before = T + 600_000 + 120_000;
    let not_after = c_now - 180_000;
    assert_eq!(
        placed[0].placed,
        Placed::Approximate {
            at: wall(not_after),
            not_before: wall(not_before),
            not_after: wall(not_after)
        }
    );
    let row = store.event(id).await.unwrap().unwrap();
    assert_eq!(
        (row.tapped_at, row.time),
        (wall(not_after), TimeQuality::Approximate)
    );
    assert_eq!(store.status().await.unwrap().clock.approximate, 1);
    // A restart in boot C finds it again, with its trusted reading.
    let (again, anchor) = store
        .register_boot(reading("boot-c", 90_000, 0, false))
        .await
        .unwrap();
    assert_eq!(again, c);
    assert_eq!(anchor.map(|a| a.wall), Some(wall(c_now)));
}

#[tokio::test]
async fn a_row_with_a_kind_no_version_writes_is_an_error_not_a_check_in() {
    let (path, store) = temp_db("damaged").await;
    let id = record(&store, vec![event("0xAA", Kind::CheckOut, 1)]).await[0];
    let conn = Connection::open(&path).unwrap();
    // The CHECK constraint keeps SQL from writing it; a damaged file need not obey it.
    conn.execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    conn.execute("UPDATE events SET kind = 'checkinn' WHERE id = ?1", [id])
        .unwrap();
    let error = store.event(id).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Damaged(detail) if detail.contains("checkinn")),
        "{error}"
    );
    let error = store.claim_due(steady(10), 0, 10).await.unwrap_err();
    assert!(matches!(error, StoreError::Damaged(_)), "{error}");
}

#[tokio::test]
async fn a_tag_format_egym_has_not_is_an_error_not_sent() {
    let (path, store) = temp_db("damaged-format").await;
    let id = record(&store, vec![event("0xAA", Kind::CheckIn, 1)]).await[0];
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE events SET tag_format = 'MIFAR' WHERE id = ?1", [id])
        .unwrap();
    let error = store.claim_due(steady(10), 0, 10).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Damaged(detail) if detail.contains("MIFAR")),
        "{error}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = std::env::temp_dir().join(format!("gym-checkin-store-{}-notdb", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notes.db");
    let content = b"these are someone's notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let error = Store::open(&path).await.unwrap_err();
    assert!(matches!(error, StoreError::NotADatabase { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read(&path).unwrap(), content);
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = std::env::temp_dir().join(format!("gym-checkin-store-{}-newer", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("newer.db");
    let _ = std::fs::remove_file(&path);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(error, StoreError::TooNew { version: 99, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_database_of_schema_4_keeps_its_events_and_times_when_migrated() {
    let dir = std::env::temp_dir().join(format!("gym-checkin-store-{}-v4", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v4.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for migration in &schema::MIGRATIONS[..4] {
            tx.execute_batch(migration).unwrap();
        }
        tx.pragma_update(None, "user_version", 4).unwrap();
        tx.execute_batch(
            "INSERT INTO events (reader, raw_id, tag, kind, tapped_at_ms, recorded_at_ms,
                                 next_attempt_at_ms, attempts)
             VALUES ('entrance', 'AA', '0xAA', 'checkin', 1000, 1000, 61000, 1);
             INSERT INTO events (reader, raw_id, tag, kind, tapped_at_ms, recorded_at_ms,
                                 next_attempt_at_ms, state, finished_at_ms, automatic)
             VALUES ('entrance', 'BB', '0xBB', 'checkout', 2000, 2000, 2000, 'delivered', 3000, 1);
             INSERT INTO visits (tag, inside, last_event_at_ms, checked_in_at_ms)
             VALUES ('0xAA', 1, 1000, 1000);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let row = store.event(1).await.unwrap().unwrap();
    assert_eq!(
        (row.tapped_at, row.time, row.next_attempt),
        (wall(1000), TimeQuality::Trusted, steady(61000))
    );
    // First started after the upgrade with the clock at 1970 (a Pi, before NTP): steady time
    // starts where the stored times end, so the stored retry is a minute away, not decades.
    let (boot, _) = store
        .register_boot(reading("first", 5_000, 0, false))
        .await
        .unwrap();
    let steady_now = boot.offset_ms + 5_000;
    assert_eq!(steady_now, 2000, "the newest stored time: event 2's tap");
    assert_eq!(
        ids_in(
            store
                .claim_due(steady(steady_now + 60_000), 0, 10)
                .await
                .unwrap()
        ),
        vec![1]
    );
    let status = store.status().await.unwrap();
    assert_eq!(
        (
            status.events.pending,
            status.events.delivered,
            status.automatic_checkouts
        ),
        (1, 1, 1)
    );
    assert_eq!(status.oldest_pending, Some(steady(1000)));
    let visit = &store.visits().await.unwrap()["0xAA"];
    assert_eq!(
        visit.state.checked_in,
        Some(CheckIn {
            steady: steady(1000),
            at: Some(wall(1000))
        })
    );
}
