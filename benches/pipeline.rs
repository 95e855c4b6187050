//! `cargo bench --bench pipeline`: how close gym-checkin comes to its physical bounds, measured
//! in one run on one machine. Prints a table, then (last line) one JSON object with the figures.
//!
//! - the cost of durability on this disk: a bare SQLite insert + commit (WAL, synchronous=FULL),
//!   made at the taps' pace, between them; back to back too, for reference;
//! - a tap: frame written into a pseudo-terminal until its event is committed (the daemon's
//!   "tap recorded" log line, stamped on the database thread right after the commit), 20 per
//!   second and in a burst;
//! - a tap until the stand-in EGYM on loopback has the check-in (tag already cached);
//! - the same taps with 300,000 delivered events in the outbox while `status` is read, and the
//!   status query itself on that database;
//! - a tap's commit until its answer reaches a member screen's event stream;
//! - a backlog of 3,000 events of 1,000 tags drained against EGYM's token bucket, with 10 ms of
//!   latency per request, against the time the bucket allows;
//! - memory after the drain, CPU while idle with two readers connected;
//! - claiming due events with 1,000,000 delivered and 10,000 pending rows, and the database's
//!   size per 100,000 events;
//! - pruning 30 days' events from 300,000 (each batch's pause of the database thread, and taps
//!   committed meanwhile), and the one-time rewrite of such a database at an upgrade
//!   (`cargo bench --bench pipeline -- privacy` runs these alone).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use gym_checkin::clock::{SteadyMs, WallMs};
use gym_checkin::store::{Batch, Store};
use gym_checkin::visit::{Kind, after_auto_checkout};

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// The time in a log line's leading RFC 3339 stamp, in milliseconds since the epoch.
fn log_time_ms(line: &str) -> f64 {
    let stamp = line.split_whitespace().next().unwrap();
    let ts: jiff::Timestamp = stamp.parse().unwrap();
    ts.as_nanosecond() as f64 / 1e6
}

fn now_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as f64
        / 1e6
}

/// An EM4100 reader, its debounce short enough for a burst.
fn reader(name: &str, path: &std::path::Path) -> String {
    serial_reader(name, path, "em4100", "debounce = \"10ms\"")
}

fn egym(rate: f64, burst: u32) -> String {
    egym_limits(rate, burst, "5s")
}

/// A bare table on a file in `dir`, WAL and synchronous=FULL: the floor's. Bare SQLite on
/// purpose, not the store: it is what the service's commits are held to.
fn floor_db(dir: &TestDir, name: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.path(name)).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT, at INTEGER);",
    )
    .unwrap();
    conn
}

/// One bare insert + commit; its time in milliseconds.
fn floor_commit(conn: &rusqlite::Connection, i: usize) -> f64 {
    let start = Instant::now();
    conn.execute(
        "INSERT INTO t (tag, at) VALUES (?1, ?2)",
        rusqlite::params![format!("0x{i:010X}"), i as i64],
    )
    .unwrap();
    start.elapsed().as_secs_f64() * 1000.0
}

/// The figures: printed as a table as they come, kept for the closing JSON line.
struct Figures {
    json: serde_json::Map<String, serde_json::Value>,
}

impl Figures {
    /// A row of the table only (a reference figure, not one of the JSON keys).
    fn show(&self, label: &str, value: f64) {
        println!("  {label:<72} {value:>10.3}");
    }

    fn add(&mut self, key: &str, label: &str, value: f64) {
        self.show(label, value);
        self.json.insert(
            key.to_string(),
            serde_json::json!((value * 1000.0).round() / 1000.0),
        );
    }
}

/// Taps at 20 per second and, halfway between two taps (when the daemon has long finished with
/// the last one), a bare commit in `dir`: the floor, paid at the same pace and at the same
/// moments as the taps. Returns when each tap was written, how long each took to be committed
/// (the daemon's "tap recorded" line), and the floor's commits. `recorded_before` taps were
/// logged before.
async fn tap_run(
    daemon: &Daemon,
    pty: &mut Pty,
    tags: &[(String, String)],
    dir: &TestDir,
    recorded_before: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let before = daemon.lines().len();
    let mut written = Vec::with_capacity(TAPS);
    let mut floor = Vec::with_capacity(TAPS);
    let floor_conn = floor_db(dir, "floor.db");
    let mut interval = tokio::time::interval(Duration::from_millis(25));
    for i in 0..TAPS {
        interval.tick().await;
        written.push(now_ms_f64());
        pty.write(&em4100_frame(&tags[i % tags.len()].0));
        interval.tick().await;
        floor.push(floor_commit(&floor_conn, i));
    }
    daemon
        .wait_for_lines(
            "tap recorded",
            recorded_before + TAPS,
            Duration::from_secs(60),
        )
        .await;
    let durable: Vec<f64> = daemon.lines()[before..]
        .iter()
        .filter(|l| l.contains("tap recorded"))
        .zip(&written)
        .map(|(l, w)| log_time_ms(l) - w)
        .collect();
    (written, durable, floor)
}

/// Taps per run.
const TAPS: usize = 1000;

/// A member screen: the event stream, and when each event's first answer arrived.
struct ScreenStream {
    arrivals: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScreenStream {
    async fn open(url: &str) -> ScreenStream {
        let mut response = reqwest::get(url).await.unwrap();
        let arrivals = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let sink = arrivals.clone();
        let task = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                let at = now_ms_f64();
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(view) = serde_json::from_str::<serde_json::Value>(data) else {
                        continue;
                    };
                    if let Some(id) = view["event_id"].as_i64() {
                        sink.lock().unwrap().entry(id).or_insert(at);
                    }
                }
            }
        });
        ScreenStream { arrivals, task }
    }

    fn first_arrivals(&self) -> std::collections::HashMap<i64, f64> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Drop for ScreenStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where [`fill`] loads a database: a RAM disk, where the store's commits cost no fsync.
const RAM_DISK: &str = "/dev/shm";
/// Events [`fill`] records in one transaction, then marks delivered.
const FILL_BATCH: usize = 10_000;
/// Events [`fill`] marks delivered at once, so that the database thread always has the next
/// one waiting.
const FILL_MARKERS: usize = 8;

/// Fills the outbox at `db` through the store, as the service would have: `delivered` delivered
/// events finished a second ago, then `pending` pending ones, of 200,000 tags, whose members
/// are all outside again (a gym has a few hundred inside at most).
///
/// Events are recorded a batch at a time, and each batch's delivered at once, as the service
/// delivers taps soon after it records them. The store commits each event marked delivered on
/// its own, with an fsync: on a virtio disk that alone takes about 0.5 ms an event, ten minutes
/// for the largest fill. So the database is loaded on a RAM disk, when there is one, and copied
/// into place, then synced: otherwise the first fsync measured would be the one that writes out
/// the whole load.
async fn fill(db: &std::path::Path, delivered: usize, pending: usize) {
    let now = gym_checkin::clock::wall_now().as_millis();
    fill_tapped(db, delivered, pending, |i| now - 3_600_000 + i as i64).await;
}

/// As [`fill`], the `i`th event tapped at `tapped_at(i)` (wall and steady time alike) and
/// delivered a second later.
async fn fill_tapped(
    db: &std::path::Path,
    delivered: usize,
    pending: usize,
    tapped_at: impl Fn(usize) -> i64,
) {
    let ram = std::path::Path::new(RAM_DISK);
    let load_dir = ram.is_dir().then(|| {
        let dir = TestDir(ram.join(format!("gym-checkin-bench-fill-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        dir
    });
    let loaded = match &load_dir {
        Some(dir) => dir.path("fill.db"),
        None => db.to_path_buf(),
    };
    let store = Store::open(&loaded).await.unwrap();
    let now = gym_checkin::clock::wall_now().as_millis();
    let total = delivered + pending;
    for first in (0..total).step_by(FILL_BATCH) {
        let events: Vec<_> = (first..total.min(first + FILL_BATCH))
            .map(|i| {
                let tag = format!("0x0E{:08X}", i % 200_000);
                let (event, state) = entrance_tap(&tag, Kind::CheckIn, tapped_at(i));
                (event, after_auto_checkout(state))
            })
            .collect();
        let finished: Vec<i64> = events
            .iter()
            .map(|(e, _)| e.tapped_at.as_millis() + 1000)
            .collect();
        let batch = Batch::of(events, WallMs::from_millis(now));
        let ids = store.record_batch(batch).await.unwrap().ids;
        let to_deliver: Vec<(i64, i64)> = ids
            .iter()
            .copied()
            .zip(finished)
            .take(delivered.saturating_sub(first).min(ids.len()))
            .collect();
        let mut markers = tokio::task::JoinSet::new();
        for chunk in to_deliver.chunks(to_deliver.len().div_ceil(FILL_MARKERS).max(1)) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            markers.spawn(async move {
                for (id, finished) in chunk {
                    store
                        .mark_delivered(id, "acc".into(), 204, WallMs::from_millis(finished))
                        .await
                        .unwrap();
                }
            });
        }
        markers.join_all().await;
    }
    // The store's thread closes the database once the store is dropped: with its last
    // checkpoint, and the log removed, the file alone holds the load.
    drop(store);
    let log = std::path::PathBuf::from(format!("{}-wal", loaded.display()));
    let deadline = Instant::now() + LONG;
    while log.exists() {
        assert!(
            Instant::now() < deadline,
            "the filled database was not closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if load_dir.is_some() {
        std::fs::copy(&loaded, db).unwrap();
    }
    std::fs::File::open(db).unwrap().sync_all().unwrap();
}

/// Pruning 30 days' worth of delivered events from a database of 300,000, as the pruner does:
/// batch after batch, each one job of the database thread, then the log emptied; meanwhile a
/// tap is committed every 20 ms through the same store, and each one's wait is measured. And
/// the one-time rewrite (`VACUUM`) a database of the previous schema gets at its upgrade.
async fn privacy_figures(f: &mut Figures) {
    const ROWS: usize = 300_000;
    const DAY: i64 = 86_400_000;
    let dir = TestDir::new("bench-prune");
    let db = dir.path("gym-checkin.db");
    let now = gym_checkin::clock::wall_now().as_millis();
    // 60 days of taps, evenly: half of them are older than keep-delivered (30 days).
    fill_tapped(&db, ROWS, 0, |i| {
        now - 60 * DAY + (i as i64) * (60 * DAY / ROWS as i64)
    })
    .await;
    let size_mb = std::fs::metadata(&db).unwrap().len() as f64 / 1e6;

    // The rewrite at upgrade, on a copy (bare SQLite: the store does the same VACUUM).
    let copy = dir.path("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
        .unwrap();
    let start = Instant::now();
    conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let vacuum_s = start.elapsed().as_secs_f64();
    drop(conn);

    let store = Store::open(&db).await.unwrap();
    let tapping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let taps = {
        let (store, tapping) = (store.clone(), tapping.clone());
        tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut i = 0;
            while tapping.load(std::sync::atomic::Ordering::Relaxed) {
                let tag = format!("0x0F{i:08X}");
                let (event, state) = entrance_tap(&tag, Kind::CheckIn, now + i as i64);
                let start = Instant::now();
                store
                    .record_batch(Batch::of(vec![(event, state)], WallMs::from_millis(now)))
                    .await
                    .unwrap();
                waits.push(start.elapsed().as_secs_f64() * 1000.0);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            waits
        })
    };
    // A second of taps before the prune: the same taps' commits with nothing else to wait for.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cutoff = WallMs::from_millis(now - 30 * DAY);
    let mut batches = Vec::new();
    let mut pruned = 0;
    let started = Instant::now();
    loop {
        let start = Instant::now();
        let n = store
            .prune_events(
                gym_checkin::store::PruneClass::Delivered,
                cutoff,
                gym_checkin::daemon::PRUNE_BATCH,
            )
            .await
            .unwrap();
        batches.push(start.elapsed().as_secs_f64() * 1000.0);
        pruned += n;
        if n < gym_checkin::daemon::PRUNE_BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    assert!(store.empty_log().await.unwrap(), "the log was emptied");
    let emptied_ms = start.elapsed().as_secs_f64() * 1000.0;
    let prune_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tapping.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut waits = taps.await.unwrap();
    let longest_batch = batches.iter().copied().fold(0.0, f64::max);
    let longest_wait = waits.iter().copied().fold(0.0, f64::max);
    f.show(
        "database of 300,000 delivered events over 60 days (MB)",
        size_mb,
    );
    f.add(
        "prune_30d_events",
        "prune of 30 days' events at 300,000 rows: events deleted",
        pruned as f64,
    );
    f.add(
        "prune_30d_s",
        "prune of 30 days' events at 300,000 rows: whole round (s)",
        prune_s,
    );
    f.add(
        "prune_30d_batch_p50_ms",
        "prune of 30 days' events: a batch of 500 (one job), p50 (ms)",
        percentile(&mut batches, 50.0),
    );
    f.add(
        "prune_30d_longest_pause_ms",
        "prune of 30 days' events: longest pause of the database thread (ms)",
        longest_batch,
    );
    f.add(
        "prune_30d_log_emptied_ms",
        "prune of 30 days' events: emptying the write-ahead log after it (ms)",
        emptied_ms,
    );
    f.add(
        "prune_30d_tap_p99_ms",
        "tap → committed while it prunes, every 20 ms, p99 (ms)",
        percentile(&mut waits, 99.0),
    );
    f.add(
        "prune_30d_tap_longest_ms",
        "tap → committed while it prunes, longest (ms)",
        longest_wait,
    );
    f.add(
        "upgrade_rewrite_s",
        "the one-time rewrite (VACUUM) of that database at the upgrade (s)",
        vacuum_s,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut f = Figures {
        json: serde_json::Map::new(),
    };
    let dir = TestDir::new("bench");
    println!("gym-checkin pipeline benchmark");
    // `cargo bench --bench pipeline -- privacy`: the privacy figures alone.
    if std::env::args().any(|a| a == "privacy") {
        privacy_figures(&mut f).await;
        println!("{}", serde_json::Value::Object(f.json));
        return;
    }

    // 1. The floor, back to back: what durability costs on this disk when it is kept busy. Shown
    // for reference; taps come with gaps, and a commit after a gap costs more (see below).
    let conn = floor_db(&dir, "floor.db");
    let mut back_to_back: Vec<f64> = (0..1000).map(|i| floor_commit(&conn, i)).collect();
    drop(conn);
    f.show(
        "floor, back to back (reference): insert + commit, p50 (ms)",
        percentile(&mut back_to_back, 50.0),
    );
    f.show(
        "floor, back to back (reference): p99 (ms)",
        percentile(&mut back_to_back, 99.0),
    );

    // 2. Taps until durable, and until EGYM has them, and the floor under the same conditions.
    let tags: Vec<(String, String)> = (0..50)
        .map(|i| (format!("0B{i:08X}"), format!("acc-{i}")))
        .collect();
    let fake = start_egym(
        tags.iter()
            .map(|(t, a)| member(&format!("0x{t}"), a))
            .collect(),
    )
    .await;
    let taps_dir = TestDir::new("bench-taps");
    let mut pty = Pty::open();
    let second = Pty::open();
    let readers = reader("entrance", &pty.slave_path) + &reader("exit", &second.slave_path);
    // The screen on, as by default; no member screen watches until its own figure below.
    let screen_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config_parts(
        &taps_dir,
        &fake.base_url(),
        &egym(1000.0, 1000),
        "repeat-window = \"0s\"",
        "trusted-when = \"always\"",
        &format!("listen = \"127.0.0.1:{screen_port}\""),
        &readers,
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_lines("reader connected", 2, LONG).await;
    // Warm the tag cache, so the EGYM figure is a post, not a lookup.
    for (tag, _) in &tags {
        pty.write(&em4100_frame(tag));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let (warm, received) = fake.wait_for(LONG, |r| count_visits(r) == tags.len()).await;
    assert!(warm, "the tag cache was not warmed: {received:#?}");

    let received_before = fake.received().len();
    let (written, mut durable, mut floor) =
        tap_run(&daemon, &mut pty, &tags, &taps_dir, tags.len()).await;
    f.add(
        "floor_commit_p50_ms",
        "floor: insert + commit, WAL, synchronous=FULL, 20/s between taps, p50 (ms)",
        percentile(&mut floor, 50.0),
    );
    f.add(
        "floor_commit_p99_ms",
        "floor: insert + commit, 20/s between taps, p99 (ms)",
        percentile(&mut floor, 99.0),
    );
    f.add(
        "tap_durable_p50_ms",
        "tap → committed, 1,000 taps at 20/s, p50 (ms)",
        percentile(&mut durable, 50.0),
    );
    f.add(
        "tap_durable_p99_ms",
        "tap → committed, p99 (ms)",
        percentile(&mut durable, 99.0),
    );
    let (_, received) = fake
        .wait_for(Duration::from_secs(60), |r| {
            r.len() >= received_before + TAPS
        })
        .await;
    let mut to_egym: Vec<f64> = received[received_before..]
        .iter()
        .zip(&written)
        .map(|(r, w)| r.at_ms as f64 - w)
        .collect();
    f.add(
        "tap_egym_p50_ms",
        "tap → check-in at EGYM (loopback, cached tag), p50 (ms)",
        percentile(&mut to_egym, 50.0),
    );
    f.add(
        "tap_egym_p99_ms",
        "tap → check-in at EGYM, p99 (ms)",
        percentile(&mut to_egym, 99.0),
    );

    // A burst: 200 frames back to back.
    let before = daemon.lines().len();
    let burst: Vec<u8> = (0..200)
        .flat_map(|i| em4100_frame(&format!("0C{i:08X}")))
        .collect();
    let burst_written = now_ms_f64();
    pty.write(&burst);
    daemon
        .wait_for_lines(
            "tap recorded",
            tags.len() + TAPS + 200,
            Duration::from_secs(60),
        )
        .await;
    let mut burst_durable: Vec<f64> = daemon.lines()[before..]
        .iter()
        .filter(|l| l.contains("tap recorded"))
        .map(|l| log_time_ms(l) - burst_written)
        .collect();
    f.add(
        "burst_durable_p99_ms",
        "200 frames back to back → committed, p99 (ms)",
        percentile(&mut burst_durable, 99.0),
    );

    // The member screen: from a tap's commit (its "tap recorded" line) to its answer on the
    // event stream, a member screen connected, the tag's account cached.
    let screen = ScreenStream::open(&format!("http://127.0.0.1:{screen_port}/events")).await;
    let before = daemon.lines().len();
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    const SCREEN_TAPS: usize = 300;
    for i in 0..SCREEN_TAPS {
        interval.tick().await;
        pty.write(&em4100_frame(&tags[i % tags.len()].0));
    }
    daemon
        .wait_for_lines(
            "tap recorded",
            tags.len() + TAPS + 200 + SCREEN_TAPS,
            Duration::from_secs(60),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = screen.first_arrivals();
    let mut to_screen: Vec<f64> = daemon.lines()[before..]
        .iter()
        .filter(|l| l.contains("tap recorded"))
        .filter_map(|l| {
            let id: i64 = field(l, "event_id")?.parse().ok()?;
            Some(arrivals.get(&id)? - log_time_ms(l))
        })
        .collect();
    assert_eq!(
        to_screen.len(),
        SCREEN_TAPS,
        "answers missing on the stream"
    );
    f.add(
        "tap_screen_p50_ms",
        "tap committed → its answer on the member screen's stream, p50 (ms)",
        percentile(&mut to_screen, 50.0),
    );
    f.add(
        "tap_screen_p99_ms",
        "tap committed → its answer on the stream, p99 (ms)",
        percentile(&mut to_screen, 99.0),
    );

    // Idle: two readers connected, a member screen open, nothing happening.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = daemon.cpu_time();
    let idle_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu =
        (daemon.cpu_time() - cpu_before).as_secs_f64() / idle_start.elapsed().as_secs_f64() * 100.0;
    f.add(
        "idle_cpu_pct",
        "CPU while idle, two readers connected, a member screen open, 10 s (% of a core)",
        idle_cpu,
    );
    drop(screen);
    drop(daemon);

    // 2b. The same taps with 300,000 delivered events in the outbox while its status is read:
    // by the service's own 10-second refresh, on the database thread, and by `gym-checkin
    // status --json` in a loop from another process.
    let full_dir = TestDir::new("bench-full");
    let full_db = full_dir.path("gym-checkin.db");
    fill(&full_db, 300_000, 0).await;
    {
        let store = Store::open(&full_db).await.unwrap();
        let mut queries = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            store.status().await.unwrap();
            queries.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        f.add(
            "status_query_ms_300k",
            "status, read on the database thread with 300,000 delivered events, p50 (ms)",
            percentile(&mut queries, 50.0),
        );
    }
    let mut full_pty = Pty::open();
    let full_config = write_config_with(
        &full_dir,
        &fake.base_url(),
        &egym(1000.0, 1000),
        "repeat-window = \"0s\"",
        &reader("entrance", &full_pty.slave_path),
    );
    let full_daemon = Daemon::start(&full_config);
    full_daemon.wait_for_line("reader connected", LONG).await;
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader_thread = {
        let reading = reading.clone();
        let config = full_config.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                let output = std::process::Command::new(binary())
                    .args(["status", "--json", "--config"])
                    .arg(&config)
                    .output()
                    .unwrap();
                assert!(output.status.success());
                reads += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            reads
        })
    };
    let (_, mut full_durable, mut full_floor) =
        tap_run(&full_daemon, &mut full_pty, &tags, &full_dir, 0).await;
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let reads = reader_thread.join().unwrap();
    let longest = full_durable.iter().copied().fold(0.0, f64::max);
    f.add(
        "full_floor_commit_p99_ms",
        "floor beside the 300,000-event database, p99 (ms)",
        percentile(&mut full_floor, 99.0),
    );
    f.add(
        "full_tap_durable_p99_ms",
        "tap → committed, 300,000 delivered events, status read throughout, p99 (ms)",
        percentile(&mut full_durable, 99.0),
    );
    f.show("tap → committed, the same, longest of 1,000 (ms)", longest);
    f.show(
        "status --json read from another process during those taps (times)",
        reads as f64,
    );
    drop(full_daemon);

    // 3. Draining a backlog at EGYM's rate.
    let (rate, burst_size) = (300.0, 300);
    let drain_dir = TestDir::new("bench-drain");
    let drain_tags: Vec<String> = (0..1000).map(|i| format!("0x0D{i:08X}")).collect();
    let drain_fake = start_egym(
        drain_tags
            .iter()
            .enumerate()
            .map(|(i, t)| member(t, &format!("acc-{i}")))
            .collect(),
    )
    .await;
    drain_fake.set_latency(Duration::from_millis(10));
    let events = seed_backlog(&drain_dir.path("gym-checkin.db"), &drain_tags, 3).await;
    let drain_pty = Pty::open();
    let drain_config = write_config_with(
        &drain_dir,
        &drain_fake.base_url(),
        &egym(rate, burst_size),
        "",
        &reader("desk", &drain_pty.slave_path),
    );
    drain_fake.set_rate_limit(rate, burst_size);
    let drain_daemon = Daemon::start(&drain_config);
    let (ok, received) = drain_fake
        .wait_for(Duration::from_secs(120), |r| count_visits(r) == events)
        .await;
    assert!(ok, "the backlog did not drain");
    let first = received.first().unwrap().at_ms as f64;
    let last = received.last().unwrap().at_ms as f64;
    let drain_s = (last - first) / 1000.0 + 0.010;
    let bound_s = (received.len() as f64 - f64::from(burst_size)).max(0.0) / rate;
    f.add(
        "drain_s",
        &format!(
            "drain: {events} events of 1,000 tags, {} requests (s)",
            received.len()
        ),
        drain_s,
    );
    f.add(
        "drain_bound_s",
        "drain: what the bucket (300/s, burst 300) allows (s)",
        bound_s,
    );
    f.add(
        "drain_429",
        "drain: 429 answers",
        received.iter().filter(|r| r.status == Some(429)).count() as f64,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", drain_daemon.pid())).unwrap();
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    f.add(
        "rss_mb",
        "resident memory after the drain (MB)",
        rss_kb / 1024.0,
    );
    drop(drain_daemon);

    // 4. Claiming with a big table.
    let big_dir = TestDir::new("bench-claim");
    let big_db = big_dir.path("big.db");
    fill(&big_db, 1_000_000, 10_000).await;
    let size_mb = std::fs::metadata(&big_db).unwrap().len() as f64 / 1e6;
    let store = Store::open(&big_db).await.unwrap();
    // Steady time of a fresh database starts at the wall time (see `entrance_tap`).
    let now = gym_checkin::clock::wall_now();
    let now_steady = SteadyMs::from_millis(now.as_millis());
    // As the service starts: everything already in the outbox is the backlog.
    let backlog_through = store.last_event_id().await.unwrap();
    let mut claims = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let due = store
            .claim_due(now_steady, backlog_through, 8)
            .await
            .unwrap();
        claims.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(due.len(), 8);
    }
    f.add(
        "claim_ms_1m_rows",
        "claim 8 due events, 1,000,000 delivered + 10,000 pending rows, p50 (ms)",
        percentile(&mut claims, 50.0),
    );
    // Pruning delivered events past `keep-delivered`, in the daemon's batches: each one holds the
    // database thread, so a tap may wait for one.
    let mut prunes = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let n = store
            .prune_events(
                gym_checkin::store::PruneClass::Delivered,
                now,
                gym_checkin::daemon::PRUNE_BATCH,
            )
            .await
            .unwrap();
        prunes.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n, gym_checkin::daemon::PRUNE_BATCH);
    }
    let longest = prunes.iter().copied().fold(0.0, f64::max);
    f.show(
        &format!(
            "prune a batch of {} delivered events, 1,000,000 rows, p50 (ms)",
            gym_checkin::daemon::PRUNE_BATCH
        ),
        percentile(&mut prunes, 50.0),
    );
    f.show("prune a batch, longest of 50 (ms)", longest);
    f.add(
        "db_mb_per_100k_events",
        "database size per 100,000 events (MB)",
        size_mb / 10.1,
    );
    drop(store);

    // 5. Privacy: pruning 30 days' events, and the rewrite at an upgrade.
    privacy_figures(&mut f).await;

    println!("{}", serde_json::Value::Object(f.json));
}
