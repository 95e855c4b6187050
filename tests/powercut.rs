//! Power cuts, under a real kernel and a real file system: the daemon runs in a small Debian
//! bookworm guest under qemu, its database on the guest's ext4 root, and the guest is killed
//! (`kill -9` of qemu) while taps arrive. Whatever the guest held in memory, its page cache
//! included, is gone; the next boot starts the daemon on the disk as the cut left it.
//!
//! The reader and EGYM stay outside: the guest's second serial port is a pseudo-terminal the
//! test writes EM4100 frames into, and the guest's console is a file the test reads as it grows,
//! where the daemon's `event=tap_recorded` lines are the acknowledgements. EGYM is the stand-in, on
//! the host's loopback, which the guest reaches through qemu's user network.
//!
//! After each cut the guest's init copies the database to memory and prints
//! `PRAGMA integrity_check` and every event (tests/support/powercut/init) before it starts the
//! daemon on the original: every tap acknowledged before any cut must be there, with its id,
//! tag and time, and every event logged as delivered must be so. After the last round EGYM answers, and every acknowledged tap must reach it;
//! a tap that reaches it twice must have been posted in a boot that was cut before the guest
//! recorded the answer.
//!
//! A control run turns the daemon's fsyncs into no-ops (Debian's eatmydata, in the guest): its
//! acknowledged taps then sit in the guest's page cache, and the check must find them lost.
//!
//! Run as root (debootstrap builds the guest once, into `GYM_CHECKIN_POWERCUT_CACHE`, by default
//! `/var/tmp/gym-checkin-powercut`), with the feature `powercut-test`; `.ci/run` does.
//! `GYM_CHECKIN_POWERCUT_ROUNDS` sets the number of cuts (10 by default),
//! `GYM_CHECKIN_POWERCUT_SEED` replays a run's moments, and `GYM_CHECKIN_POWERCUT_ACCEL`
//! (`kvm` or `tcg`) skips the probe that decides whether KVM can run the guest.
#![cfg(feature = "powercut-test")]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// Cuts in a run unless `GYM_CHECKIN_POWERCUT_ROUNDS` says otherwise.
const ROUNDS: usize = 10;
/// At most this many cuts in the control run: it stops at the first that loses a tap.
const CONTROL_ROUNDS: usize = 4;
/// One tap every this long while a round runs.
const TAP_INTERVAL: Duration = Duration::from_millis(250);
/// How slowly the stand-in answers in a slow round: well within the request timeout, so that
/// only a cut, never a timeout, leaves a post unanswered.
const SLOW: Duration = Duration::from_millis(1500);
/// A boot to the daemon ready takes 7 to 16 seconds under TCG on 2 busy cores; this is room for
/// a much slower one.
const BOOT_WAIT: Duration = Duration::from_secs(120);
/// KVM boots the guest in a second or two where it works; where it is nested and cannot run an
/// ordinary kernel, the guest hangs or qemu fails at once.
const KVM_PROBE_WAIT: Duration = Duration::from_secs(15);
/// The last round waits this long for every acknowledged tap to reach EGYM: a tap retried
/// through the failing rounds may be scheduled up to the delivery's longest retry (5 minutes)
/// later.
const DELIVERY_WAIT: Duration = Duration::from_secs(420);
/// Tags tapped in turn: each comes round again every 10 seconds, after the repeat window.
const TAGS: usize = 40;

/// The guest: Debian's kernel (uncompressed, booted through its PVH entry) and initramfs, and a
/// root file system, built once by tests/support/powercut/guest.
#[derive(Debug)]
struct Guest {
    kernel: PathBuf,
    initrd: PathBuf,
    root: PathBuf,
}

fn guest() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| {
        let cache = std::env::var("GYM_CHECKIN_POWERCUT_CACHE")
            .unwrap_or_else(|_| "/var/tmp/gym-checkin-powercut".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/powercut/guest");
        let output = Command::new(script)
            .arg(&cache)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(
            output.status.success(),
            "{script} could not build the guest (it needs root, debootstrap and eatmydata)"
        );
        let dir = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        Guest {
            kernel: dir.join("vmlinux"),
            initrd: dir.join("initrd.img"),
            root: dir.join("root.img"),
        }
    })
}

/// How qemu runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

/// KVM if it boots the guest, else TCG; decided once, and said.
fn accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(|| {
        let (accel, why) = match std::env::var("GYM_CHECKIN_POWERCUT_ACCEL").as_deref() {
            Ok("kvm") => (Accel::Kvm, "as GYM_CHECKIN_POWERCUT_ACCEL says".to_string()),
            Ok("tcg") => (Accel::Tcg, "as GYM_CHECKIN_POWERCUT_ACCEL says".to_string()),
            Ok(other) => panic!("GYM_CHECKIN_POWERCUT_ACCEL is {other:?}: kvm or tcg"),
            Err(_) => probe_kvm(),
        };
        println!("power cut: the guest runs under {accel:?} ({why})");
        accel
    })
}

/// Boots the guest under KVM with `/usr/bin/true` as its init, on a throwaway overlay of its
/// disk: KVM runs ordinary guests if the kernel gets as far as that init ending (it panics,
/// and qemu ends) within [`KVM_PROBE_WAIT`].
fn probe_kvm() -> (Accel, String) {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return (Accel::Tcg, "/dev/kvm cannot be opened".into());
    }
    let dir = TestDir::new("powercut-probe");
    let console = dir.path("console.log");
    let guest = guest();
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(Accel::Kvm.args())
        .args(["-m", "256", "-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initrd)
        .args([
            "-append",
            "console=ttyS0 root=/dev/vda ro init=/usr/bin/true panic=-1 quiet",
        ])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            guest.root.display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (apt-get install qemu-system-x86)");
    let ended = poll_blocking(Duration::from_millis(50), Some(KVM_PROBE_WAIT), || {
        qemu.try_wait().unwrap()
    });
    let Some(status) = ended else {
        let _ = qemu.kill();
        let _ = qemu.wait();
        return (
            Accel::Tcg,
            format!("KVM did not boot the guest within {KVM_PROBE_WAIT:?}"),
        );
    };
    let said = std::fs::read_to_string(&console).unwrap_or_default();
    if said.contains("Attempted to kill init") {
        return (
            Accel::Kvm,
            format!(
                "it booted the guest in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        );
    }
    let mut stderr = String::new();
    let _ = qemu.stderr.take().unwrap().read_to_string(&mut stderr);
    let stderr = stderr.lines().last().unwrap_or("").to_string();
    (
        Accel::Tcg,
        format!("KVM could not boot the guest: qemu ended ({status}): {stderr}"),
    )
}

/// Whether the daemon's fsyncs reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fsync {
    Real,
    /// Under eatmydata: each fsync returns at once, having done nothing.
    NoOp,
}

/// How the stand-in answers during a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answers {
    Normal,
    Slowly,
    Errors,
    Never,
    AtRandom,
}

const ANSWERS: [Answers; 5] = [
    Answers::Normal,
    Answers::Slowly,
    Answers::Errors,
    Answers::Never,
    Answers::AtRandom,
];

impl Answers {
    fn apply(self, egym: &FakeEgym, seed: u64) {
        egym.set_latency(if self == Answers::Slowly {
            SLOW
        } else {
            Duration::ZERO
        });
        egym.set_mode(match self {
            Answers::Normal | Answers::Slowly => Mode::Normal,
            Answers::Errors => Mode::Status(500),
            Answers::Never => Mode::Stall,
            Answers::AtRandom => Mode::Random { seed },
        });
    }

    fn says(self) -> &'static str {
        match self {
            Answers::Normal => "EGYM answers",
            Answers::Slowly => "EGYM answers after 1.5 s",
            Answers::Errors => "EGYM answers 500",
            Answers::Never => "EGYM never answers",
            Answers::AtRandom => "EGYM answers, fails or stalls at random",
        }
    }
}

/// When the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// This long after the round's first tap.
    After(Duration),
    /// This long after the `tap`-th tap of the round is written: while the guest reads it,
    /// commits it or says so.
    AfterTap { tap: usize, delay: Duration },
}

/// What the round `round` does, drawn from the run's random numbers: every kind of answer meets
/// both kinds of cut within 10 rounds.
fn plan(round: usize, rng: &mut fastrand::Rng) -> (Answers, Cut) {
    let answers = ANSWERS[round % ANSWERS.len()];
    let cut = if round.is_multiple_of(2) {
        Cut::After(Duration::from_millis(rng.u64(1_000..=7_000)))
    } else {
        // A tap is acknowledged some 30 ms after it is written, commit and all.
        Cut::AfterTap {
            tap: rng.usize(4..=24),
            delay: Duration::from_millis(rng.u64(0..=60)),
        }
    };
    (answers, cut)
}

/// A tap the daemon said it recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ack {
    event_id: i64,
    /// As the log shows it (`0x…0A1B`).
    tag: String,
    kind: String,
    tapped_at_ms: i64,
    /// When the line reached the host.
    seen_ms: i64,
    boot: usize,
}

/// One event, as the init printed it from the database the cut left.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    tag: String,
    kind: String,
    tapped_at_ms: i64,
    state: String,
}

/// What the init found before the daemon started.
#[derive(Debug, Default)]
struct Check {
    database: bool,
    integrity: Vec<String>,
    events: BTreeMap<i64, Row>,
    /// Lines between the markers that are neither (sqlite3's errors, say).
    other: Vec<String>,
}

impl Check {
    fn integrity_ok(&self) -> bool {
        !self.database || self.integrity == ["ok"]
    }
}

/// The guest's console: a file qemu writes, read as it grows; complete lines only, with the
/// carriage returns the serial console adds and any terminal escapes (the firmware's) taken out.
#[derive(Debug)]
struct Console {
    file: std::fs::File,
    partial: Vec<u8>,
    lines: Vec<(i64, String)>,
}

impl Console {
    fn open(path: &Path) -> Console {
        Console {
            file: std::fs::File::open(path).unwrap(),
            partial: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Reads what was added since the last call.
    fn poll(&mut self) {
        let mut added = Vec::new();
        self.file.read_to_end(&mut added).unwrap();
        if added.is_empty() {
            return;
        }
        let now = now_ms();
        self.partial.extend_from_slice(&added);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = plain(&String::from_utf8_lossy(&line));
            self.lines.push((now, line));
        }
    }

    fn has(&self, text: &str) -> bool {
        self.lines.iter().any(|(_, line)| line.contains(text))
    }
}

/// A line without terminal escapes and line ends.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI sequences end at a byte in @..~; other escapes are one character long.
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// A running guest.
#[derive(Debug)]
struct Vm {
    qemu: Child,
    console: Console,
    /// The reader's line, for as long as this boot lasts.
    pty: Pty,
    spawned: Instant,
    spawned_ms: i64,
}

impl Vm {
    /// Waits for `text` on the console; panics with the console at the deadline, or if the
    /// guest or its daemon ends first.
    async fn wait_for(&mut self, text: &str) -> Duration {
        let found = poll(BOOT_WAIT, || {
            self.console.poll();
            if self.console.has(text) {
                return Some(self.spawned.elapsed());
            }
            let ended = self.qemu.try_wait().unwrap();
            assert!(
                ended.is_none() && !self.console.has("powercut: daemon exited"),
                "waiting for {text:?}, the guest or its daemon ended ({ended:?}):\n{}",
                self.tail()
            );
            None
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no {text:?} on the guest's console within {BOOT_WAIT:?}:\n{}",
                self.tail()
            )
        })
    }

    fn tail(&self) -> String {
        let lines = &self.console.lines;
        let from = lines.len().saturating_sub(60);
        lines[from..]
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The power cut: qemu is killed with SIGKILL. Returns when it happened, and the console
    /// as the guest left it.
    fn cut(mut self) -> (i64, Vec<(i64, String)>) {
        self.qemu.kill().unwrap();
        let at = now_ms();
        self.qemu.wait().unwrap();
        self.console.poll();
        (at, std::mem::take(&mut self.console.lines))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// One boot of the guest, after it ended.
#[derive(Debug)]
struct BootLog {
    fsync: Fsync,
    started_ms: i64,
    /// When the power was cut; `None` for the last boot, which delivers.
    cut_ms: Option<i64>,
    /// Events the daemon said were delivered (after marking them so) in this boot.
    delivered: HashSet<i64>,
}

/// A tap acknowledged before a cut that the next boot's check did not find as acknowledged.
#[derive(Debug)]
struct Lost {
    ack: Ack,
    /// What the outbox held under its id instead.
    found: Option<Row>,
    /// The boot whose check missed it.
    boot: usize,
    /// How long before the cut the test read its acknowledgement (less than zero: the line
    /// was read from the console after the cut, having been written before it).
    before_cut_ms: i64,
}

/// A power-cut run: one guest disk, the stand-in EGYM, and what every boot said.
struct Run {
    name: String,
    dir: TestDir,
    disk: PathBuf,
    egym: FakeEgym,
    fsync: Fsync,
    accel: Accel,
    seed: u64,
    rng: fastrand::Rng,
    tags: Vec<(String, String)>,
    taps_written: usize,
    acked: Vec<Ack>,
    boots: Vec<BootLog>,
    checks: Vec<Check>,
    lost: Vec<Lost>,
    /// Events logged as delivered before a cut that the next boot found otherwise: the boot
    /// that looked, the event, and what it found.
    undelivered: Vec<(usize, i64, Option<Row>)>,
    /// Ids of taps found in the outbox that were never acknowledged: their commit was under way
    /// at the cut, and reached the disk.
    committed_unacked: HashSet<i64>,
    boot_secs: Vec<f64>,
    ready_secs: Vec<f64>,
    round_secs: Vec<f64>,
    /// When the last round ended (or the run began).
    round_started_ms: i64,
    ack_latency_ms: Vec<i64>,
}

impl Run {
    async fn start(name: &str, fsync: Fsync) -> Run {
        let seed = match std::env::var("GYM_CHECKIN_POWERCUT_SEED") {
            Ok(seed) => {
                let digits = seed.trim_start_matches("0x");
                u64::from_str_radix(digits, 16)
                    .unwrap_or_else(|e| panic!("GYM_CHECKIN_POWERCUT_SEED={seed}: {e}"))
            }
            Err(_) => fastrand::u64(..),
        };
        println!("{name}: seed {seed:#x} (GYM_CHECKIN_POWERCUT_SEED={seed:#x} replays it)");
        let tags: Vec<(String, String)> = (0..TAGS)
            .map(|i| (format!("0D{:08X}", 0x0100_0000 + i), format!("acc-{i}")))
            .collect();
        let members = tags
            .iter()
            .map(|(tag, account)| member(&format!("0x{tag}"), account))
            .collect();
        let egym = start_egym(members).await;
        let dir = TestDir::new(name);
        let disk = prepare_disk(&dir);
        Run {
            name: name.to_string(),
            dir,
            disk,
            egym,
            fsync,
            accel: accel(),
            seed,
            rng: fastrand::Rng::with_seed(seed),
            tags,
            taps_written: 0,
            acked: Vec::new(),
            boots: Vec::new(),
            checks: Vec::new(),
            lost: Vec::new(),
            undelivered: Vec::new(),
            committed_unacked: HashSet::new(),
            boot_secs: Vec::new(),
            ready_secs: Vec::new(),
            round_secs: Vec::new(),
            round_started_ms: now_ms(),
            ack_latency_ms: Vec::new(),
        }
    }

    fn egym_port(&self) -> u16 {
        let url = self.egym.base_url();
        url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Boots the guest on the disk as it is, and waits for its init's check.
    async fn boot(&mut self) -> Vm {
        let n = self.boots.len();
        let console_path = self.dir.path(&format!("console-{n}.log"));
        std::fs::write(&console_path, "").unwrap();
        let pty = Pty::open();
        let guest = guest();
        let mut append = format!(
            "console=ttyS0 root=/dev/vda rw init=/usr/sbin/gym-checkin-powercut-init \
             panic=-1 quiet gym.egym={}",
            self.egym_port()
        );
        if self.fsync == Fsync::NoOp {
            append.push_str(" gym.eatmydata");
        }
        let qemu_log = std::fs::File::create(self.dir.path(&format!("qemu-{n}.log"))).unwrap();
        let spawned = Instant::now();
        let spawned_ms = now_ms();
        let qemu = Command::new("qemu-system-x86_64")
            .args(self.accel.args())
            .args(["-m", "256", "-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&guest.kernel)
            .arg("-initrd")
            .arg(&guest.initrd)
            .arg("-append")
            .arg(append)
            // Writeback caching, qemu's default, made explicit: the guest sees a disk with a
            // volatile cache, and each flush it sends becomes an fdatasync of the file.
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=writeback",
                self.disk.display()
            ))
            .args([
                "-netdev",
                "user,id=net",
                "-device",
                "virtio-net-pci,netdev=net",
            ])
            .args(["-device", "virtio-rng-pci"])
            .arg("-chardev")
            .arg(format!("file,id=console,path={}", console_path.display()))
            .args(["-serial", "chardev:console"])
            .arg("-chardev")
            .arg(format!(
                "serial,id=reader,path={}",
                pty.slave_path.display()
            ))
            .args(["-serial", "chardev:reader"])
            .stdin(Stdio::null())
            .stdout(qemu_log.try_clone().unwrap())
            .stderr(qemu_log)
            .spawn()
            .expect("qemu-system-x86_64 (apt-get install qemu-system-x86)");
        let mut vm = Vm {
            qemu,
            console: Console::open(&console_path),
            pty,
            spawned,
            spawned_ms,
        };
        let booted = vm.wait_for("powercut: init at").await;
        vm.wait_for("powercut: check end").await;
        self.boot_secs.push(booted.as_secs_f64());
        let check = parse_check(&vm.console.lines);
        self.verify(n, &check);
        self.checks.push(check);
        vm
    }

    /// Checks what the boot `n` found against every tap acknowledged before.
    fn verify(&mut self, n: usize, check: &Check) {
        let already: HashSet<i64> = self.lost.iter().map(|l| l.ack.event_id).collect();
        for ack in &self.acked {
            let row = check.events.get(&ack.event_id);
            let same = row.is_some_and(|row| {
                gym_checkin::tag::short(&row.tag) == ack.tag
                    && row.kind == ack.kind
                    && row.tapped_at_ms == ack.tapped_at_ms
            });
            if !same && !already.contains(&ack.event_id) {
                let cut_ms = self.boots[ack.boot].cut_ms.unwrap();
                self.lost.push(Lost {
                    ack: ack.clone(),
                    found: row.cloned(),
                    boot: n,
                    before_cut_ms: cut_ms - ack.seen_ms,
                });
            }
        }
        // What the daemon said it delivered is durable too: it would be posted again otherwise.
        if let Some(before) = self.boots.last() {
            for id in &before.delivered {
                let row = check.events.get(id);
                if row.is_none_or(|row| row.state != "delivered") {
                    self.undelivered.push((n, *id, row.cloned()));
                }
            }
        }
        let acked: HashSet<i64> = self.acked.iter().map(|a| a.event_id).collect();
        self.committed_unacked
            .extend(check.events.keys().filter(|id| !acked.contains(id)));
    }

    /// One round on a guest just booted: taps at a steady rate while the stand-in answers as
    /// the plan says, and the cut.
    async fn round(&mut self, round: usize, mut vm: Vm) {
        let (answers, cut) = plan(round, &mut self.rng);
        let answer_seed = self.rng.u64(..);
        let n = self.boots.len();
        let ready = vm.wait_for("event=\"reader_connected\"").await;
        self.ready_secs.push(ready.as_secs_f64());
        answers.apply(&self.egym, answer_seed);

        let first = Instant::now();
        let mut next = first;
        let mut written: Vec<(Instant, i64)> = Vec::new();
        loop {
            let now = Instant::now();
            if let Cut::After(after) = cut
                && now >= first + after
            {
                break;
            }
            if now >= next {
                let tag = &self.tags[self.taps_written % self.tags.len()].0;
                vm.pty.write(&em4100_frame(tag));
                written.push((Instant::now(), now_ms()));
                self.taps_written += 1;
                next += TAP_INTERVAL;
                if let Cut::AfterTap { tap, delay } = cut
                    && written.len() == tap
                {
                    // A wall-clock wait on purpose: the cut comes this long after the tap.
                    std::thread::sleep(delay);
                    break;
                }
            }
            vm.console.poll();
            assert!(
                !vm.console.has("powercut: daemon exited"),
                "the daemon ended:\n{}",
                vm.tail()
            );
            // A wall-clock wait on purpose: taps are paced at TAP_INTERVAL, as members tap.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cut_at = Instant::now();
        let started_ms = vm.spawned_ms;
        let (cut_ms, lines) = vm.cut();

        let acks = parse_acks(&lines, n);
        let delivered = parse_delivered(&lines);
        // Acknowledgements come in the order the taps were written.
        for (ack, (_, written_ms)) in acks.iter().zip(&written) {
            self.ack_latency_ms.push(ack.seen_ms - written_ms);
        }
        let what = match cut {
            Cut::After(after) => format!("{:.1} s after the first tap", after.as_secs_f64()),
            Cut::AfterTap { tap, .. } => format!(
                "{} ms after tap {tap} was written, {} it was acknowledged",
                (cut_at - written[tap - 1].0).as_millis(),
                if acks.len() >= tap { "after" } else { "before" }
            ),
        };
        println!(
            "{} round {round} ({}): init after {:.1} s, daemon ready after {:.1} s; {} taps written, {} acknowledged, {} delivered; cut {what}",
            self.name,
            answers.says(),
            self.boot_secs.last().unwrap(),
            ready.as_secs_f64(),
            written.len(),
            acks.len(),
            delivered.len(),
        );
        self.acked.extend(acks);
        self.boots.push(BootLog {
            fsync: self.fsync,
            started_ms,
            cut_ms: Some(cut_ms),
            delivered,
        });
        self.round_secs
            .push((cut_ms - self.round_started_ms) as f64 / 1000.0);
        self.round_started_ms = cut_ms;
    }

    /// The last boot: EGYM answers, and every acknowledged tap must reach it. Returns the
    /// duplicates, each with the cut that explains it, or `Err` with what does not add up.
    async fn deliver_everything(&mut self) -> Result<Vec<String>, String> {
        let n = self.boots.len();
        let mut vm = self.boot().await;
        vm.wait_for("event=\"reader_connected\"").await;
        Answers::Normal.apply(&self.egym, 0);
        let accounts: HashMap<String, String> = self
            .tags
            .iter()
            .map(|(tag, account)| (format!("0x{tag}"), account.clone()))
            .collect();
        let events = self.checks[n].events.clone();
        let key_of = |row: &Row| -> (String, String, i64) {
            let account = accounts
                .get(&row.tag)
                .unwrap_or_else(|| panic!("a tag the test never tapped: {row:?}"));
            (account.clone(), format!("{}s", row.kind), row.tapped_at_ms)
        };
        let wanted: HashSet<(String, String, i64)> = self
            .acked
            .iter()
            .filter_map(|ack| events.get(&ack.event_id))
            .map(key_of)
            .collect();
        let started = Instant::now();
        let (all, received) = self
            .egym
            .wait_for(DELIVERY_WAIT, |received| {
                let accepted: HashSet<(String, String, i64)> =
                    visits(received).into_iter().collect();
                wanted.iter().all(|key| accepted.contains(key))
            })
            .await;
        let drained = started.elapsed();
        let started_ms = vm.spawned_ms;
        let (_, lines) = vm.cut();
        self.boots.push(BootLog {
            fsync: self.fsync,
            started_ms,
            cut_ms: None,
            delivered: parse_delivered(&lines),
        });
        // Posts the stand-in took and never answered (it records a stalled request as it
        // arrives) within the request timeout before a cut: deliveries the cut landed in.
        let unanswered = received
            .iter()
            .filter(|r| r.visit().is_some() && r.status.is_none())
            .filter(|r| {
                self.boots.iter().any(|b| {
                    b.cut_ms.is_some_and(|cut| {
                        cut - REQUEST_TIMEOUT.as_millis() as i64 <= r.at_ms && r.at_ms <= cut
                    })
                })
            })
            .count();
        println!(
            "{} last boot: {} of {} acknowledged taps delivered within {:.1} s; {unanswered} posts were left unanswered by EGYM at cuts",
            self.name,
            if all { wanted.len() } else { 0 },
            wanted.len(),
            drained.as_secs_f64()
        );
        if !all {
            return Err(format!(
                "not every acknowledged tap reached EGYM within {DELIVERY_WAIT:?}"
            ));
        }

        // Every accepted visit is an event of the outbox; more than one of the same is a
        // duplicate, and each copy before the last must have been posted in a boot that was cut
        // before it logged the event delivered.
        let by_key: HashMap<(String, String, i64), i64> =
            events.iter().map(|(id, row)| (key_of(row), *id)).collect();
        let mut posts: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut problems = String::new();
        for r in received.iter().filter(|r| r.status == Some(204)) {
            let (Some((account, what)), Some(timestamp)) = (r.visit(), r.timestamp()) else {
                continue;
            };
            match by_key.get(&(account.to_string(), what.to_string(), timestamp)) {
                Some(id) => posts.entry(*id).or_default().push(r.at_ms),
                None => writeln!(
                    problems,
                    "EGYM accepted a visit the outbox does not hold: {account} {what} {timestamp}"
                )
                .unwrap(),
            }
        }
        let mut duplicates = Vec::new();
        for (id, arrivals) in &mut posts {
            arrivals.sort_unstable();
            for at in &arrivals[..arrivals.len() - 1] {
                let boot = self
                    .boots
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, b)| b.started_ms <= *at)
                    .map(|(i, _)| i);
                let explained = boot.and_then(|i| {
                    let b = &self.boots[i];
                    let cut = b.cut_ms?;
                    (!b.delivered.contains(&*id) && *at <= cut).then_some((i, cut))
                });
                match explained {
                    Some((boot, cut)) => duplicates.push(format!(
                        "event {id}: posted in boot {boot} {} ms before its cut, accepted, and the answer never recorded",
                        cut - at
                    )),
                    None => writeln!(
                        problems,
                        "event {id} reached EGYM {} times; a copy posted at {at} is not explained by a cut",
                        arrivals.len()
                    )
                    .unwrap(),
                }
            }
        }
        if problems.is_empty() {
            Ok(duplicates)
        } else {
            Err(problems)
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} rounds under {:?}, {} taps written, {} acknowledged, {} lost, {} committed but not yet acknowledged at a cut; boot to init p50 {:.1} s (max {:.1} s), to the daemon ready p50 {:.1} s; a round took p50 {:.1} s; tap → acknowledged p50 {} ms",
            self.round_secs.len(),
            self.accel,
            self.taps_written,
            self.acked.len(),
            self.lost.len(),
            self.committed_unacked.len(),
            median(&self.boot_secs),
            self.boot_secs.iter().copied().fold(0.0, f64::max),
            median(&self.ready_secs),
            median(&self.round_secs),
            median(
                &self
                    .ack_latency_ms
                    .iter()
                    .map(|&ms| ms as f64)
                    .collect::<Vec<_>>()
            ) as i64,
        )
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// The check the init printed between its markers.
fn parse_check(lines: &[(i64, String)]) -> Check {
    let mut check = Check::default();
    let mut inside = false;
    for (_, line) in lines {
        let Some(said) = line.split_once("powercut: ").map(|(_, said)| said) else {
            continue;
        };
        match said {
            "check begin" => inside = true,
            "check end" => break,
            "no database" => {}
            _ if !inside => {}
            _ => {
                check.database = true;
                if let Some(result) = said.strip_prefix("integrity ") {
                    check.integrity.push(result.to_string());
                } else if let Some(row) = said.strip_prefix("event ").and_then(parse_row) {
                    check.events.insert(row.0, row.1);
                } else {
                    check.other.push(said.to_string());
                }
            }
        }
    }
    check
}

/// `id tag kind tapped_at_ms state`, as the init's sqlite3 prints an event.
fn parse_row(line: &str) -> Option<(i64, Row)> {
    let mut fields = line.split(' ');
    let id = fields.next()?.parse().ok()?;
    let row = Row {
        tag: fields.next()?.to_string(),
        kind: fields.next()?.to_string(),
        tapped_at_ms: fields.next()?.parse().ok()?,
        state: fields.next()?.to_string(),
    };
    Some((id, row))
}

/// The taps a boot acknowledged.
fn parse_acks(lines: &[(i64, String)], boot: usize) -> Vec<Ack> {
    lines
        .iter()
        .filter(|(_, line)| field(line, "event") == Some("tap_recorded"))
        .map(|(seen_ms, line)| Ack {
            event_id: field(line, "event_id").unwrap().parse().unwrap(),
            tag: field(line, "tag").unwrap().to_string(),
            kind: field(line, "kind").unwrap().to_string(),
            tapped_at_ms: field(line, "tapped_at_ms").unwrap().parse().unwrap(),
            seen_ms: *seen_ms,
            boot,
        })
        .collect()
}

/// The events a boot logged as delivered.
fn parse_delivered(lines: &[(i64, String)]) -> HashSet<i64> {
    lines
        .iter()
        .filter(|(_, line)| field(line, "event") == Some("delivered"))
        .filter_map(|(_, line)| field(line, "event_id")?.parse().ok())
        .collect()
}

/// A copy of the guest's root, with the binary under test, the init and a configuration put in
/// with debugfs (no mount needed).
fn prepare_disk(dir: &TestDir) -> PathBuf {
    let disk = dir.path("root.img");
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(&guest().root)
        .arg(&disk)
        .status()
        .unwrap();
    assert!(status.success());
    // The binary cargo built for this test, without its debugging sections: a fifth of the
    // size, the same code.
    let binary = dir.path("gym-checkin");
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&binary)
        .arg(common::binary())
        .status()
        .expect("strip (binutils)");
    assert!(status.success());
    let init = dir.path("init");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/powercut/init"),
        &init,
    )
    .unwrap();
    let key = dir.path("egym-api-key");
    std::fs::write(&key, format!("{API_KEY}\n")).unwrap();
    let config = dir.path("gym-checkin.toml");
    std::fs::write(&config, GUEST_CONFIG).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (&binary, 0o755),
        (&init, 0o755),
        (&key, 0o600),
        (&config, 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // debugfs gives each file the mode and owner of the file it copies.
    let files = [
        (&binary, "/usr/bin/gym-checkin"),
        (&init, "/usr/sbin/gym-checkin-powercut-init"),
        (&config, "/etc/gym-checkin/gym-checkin.toml"),
        (&key, "/etc/gym-checkin/egym-api-key"),
    ];
    let mut commands = String::from("mkdir /etc/gym-checkin\n");
    for (from, to) in files {
        writeln!(commands, "write {} {to}", from.display()).unwrap();
    }
    let output = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg("-")
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut debugfs| {
            use std::io::Write;
            debugfs
                .stdin
                .take()
                .unwrap()
                .write_all(commands.as_bytes())?;
            debugfs.wait_with_output()
        })
        .expect("debugfs (e2fsprogs)");
    assert!(output.status.success());
    // debugfs says what went wrong, and exits 0 all the same: each file is looked at again.
    for (from, to) in files {
        let stat = Command::new("debugfs")
            .args(["-R", &format!("stat {to}")])
            .arg(&disk)
            .output()
            .unwrap();
        let size = std::fs::metadata(from).unwrap().len();
        assert!(
            String::from_utf8_lossy(&stat.stdout).contains(&format!("Size: {size}\n")),
            "debugfs did not write {to}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    disk
}

/// The daemon's `request-timeout` in the guest.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's configuration in the guest. EGYM is the forwarder on the guest's loopback
/// (tests/support/powercut/init); the rate limit is the shipped one, so at most one post is in
/// flight at a cut.
const GUEST_CONFIG: &str = r#"
[egym]
base-url = "http://127.0.0.1:8080"
api-key-file = "/etc/gym-checkin/egym-api-key"
request-timeout = "5s"

[store]
path = "/var/lib/gym-checkin/gym-checkin.db"

[visits]
repeat-window = "5s"

[clock]
trusted-when = "always"

[screen]
listen = ""

[[readers]]
name = "entrance"
driver = "serial"
path = "/dev/ttyS1"
protocol = "em4100"
"#;

fn rounds() -> usize {
    std::env::var("GYM_CHECKIN_POWERCUT_ROUNDS").map_or(ROUNDS, |n| {
        n.parse()
            .unwrap_or_else(|e| panic!("GYM_CHECKIN_POWERCUT_ROUNDS={n}: {e}"))
    })
}

fn describe_lost(lost: &[Lost]) -> String {
    lost.iter()
        .map(|l| {
            format!(
                "event {} ({} {} at {}), acknowledged in boot {} ({}); boot {} found {}",
                l.ack.event_id,
                l.ack.kind,
                l.ack.tag,
                l.ack.tapped_at_ms,
                l.ack.boot,
                if l.before_cut_ms >= 0 {
                    format!("read {} ms before the cut", l.before_cut_ms)
                } else {
                    "its line read from the console after the cut".to_string()
                },
                l.boot,
                match &l.found {
                    Some(row) => format!("another event under its id: {row:?}"),
                    None => "nothing under its id".into(),
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_tap_survives_power_cuts_and_reaches_egym() {
    let rounds = rounds();
    let mut run = Run::start("powercut", Fsync::Real).await;
    for round in 0..rounds {
        let vm = run.boot().await;
        run.round(round, vm).await;
    }
    let delivered = run.deliver_everything().await;
    println!("powercut: {}", run.summary());
    for (n, check) in run.checks.iter().enumerate() {
        assert!(
            check.integrity_ok() && check.other.is_empty(),
            "boot {n}: integrity_check said {:?}, and {:?}",
            check.integrity,
            check.other
        );
    }
    assert!(
        run.lost.is_empty(),
        "acknowledged taps lost (seed {:#x}):\n{}",
        run.seed,
        describe_lost(&run.lost)
    );
    assert!(
        run.undelivered.is_empty(),
        "events logged as delivered were not delivered after the cut (seed {:#x}): {:?}",
        run.seed,
        run.undelivered
    );
    let duplicates = delivered.unwrap_or_else(|e| panic!("seed {:#x}: {e}", run.seed));
    println!(
        "powercut: {} duplicates, each a post in flight at a cut{}{}",
        duplicates.len(),
        if duplicates.is_empty() { "" } else { ":\n" },
        duplicates.join("\n")
    );
    assert!(run.acked.len() >= rounds, "too few taps were acknowledged");
}

/// The test of the test: with the daemon's fsyncs turned into no-ops, acknowledged taps wait in
/// the guest's page cache, and a cut loses them. (A cut keeps what qemu itself has written to
/// the disk's file, flushed or not: the host's page cache outlives qemu.) A first round with real
/// fsyncs makes the database and puts taps in it, which must survive all the same: what the
/// check finds lost is what was acknowledged without an fsync, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_finds_the_taps_a_disk_without_fsync_loses() {
    let mut run = Run::start("powercut-control", Fsync::Real).await;
    let vm = run.boot().await;
    run.round(0, vm).await;
    let synced = run.acked.len();
    run.fsync = Fsync::NoOp;
    // Each boot checks the cut before it; the run stops at the first check that finds a loss.
    for round in 1..=CONTROL_ROUNDS {
        let vm = run.boot().await;
        if !run.lost.is_empty() || round == CONTROL_ROUNDS {
            break;
        }
        run.round(round, vm).await;
    }
    println!("control: {}", run.summary());
    println!(
        "control: {synced} taps acknowledged with real fsyncs, {} without; lost:\n{}",
        run.acked.len() - synced,
        describe_lost(&run.lost)
    );
    assert!(
        !run.lost.is_empty(),
        "the check found no acknowledged tap lost with the daemon's fsyncs turned off (seed {:#x})",
        run.seed
    );
    assert!(
        run.lost
            .iter()
            .all(|lost| run.boots[lost.ack.boot].fsync == Fsync::NoOp),
        "taps acknowledged with real fsyncs were lost:\n{}",
        describe_lost(&run.lost)
    );
    // The database itself came through: it opens, and is whole.
    let last = run.checks.last().unwrap();
    assert!(
        last.database && last.integrity_ok() && last.other.is_empty(),
        "the last check: integrity_check {:?}, {:?}",
        last.integrity,
        last.other
    );
}
