//! Shared parts of the integration tests: a pseudo-terminal standing in for a serial reader,
//! the stand-in EGYM, configurations and their `[[readers]]` tables, the real `gym-checkin`
//! binary run with one, and waits with deadlines.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses a different part of this module"
)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod browser;
pub mod readers;

pub use gym_checkin::egym::fake::{FakeEgym, Member, Mode, Received};

pub const API_KEY: &str = "test-key-6f1d9c2a-do-not-print";

/// How long a test waits for what takes well under a second on an idle machine: long enough
/// for one that runs other builds and tests at the same time.
pub const LONG: Duration = Duration::from_secs(30);

/// How often a wait looks again at what it waits for.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` finds something, looking again every `every`, at most `timeout`; `None`
/// at the deadline. Every wait of the tests polls through here (or through [`poll_blocking`] on
/// a thread of its own): no test sleeps to let something happen, or to show that nothing did.
#[must_use = "`None` says the deadline passed: assert on it"]
pub async fn poll_every<T, F>(
    every: Duration,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // A wall-clock wait on purpose: the one interval between looks of every wait.
        tokio::time::sleep(every).await;
    }
}

/// [`poll_every`] [`POLL`], with a check that is answered at once.
#[must_use = "`None` says the deadline passed: assert on it"]
pub async fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(POLL, timeout, || std::future::ready(check())).await
}

/// Waits until `done` holds, at most `timeout`; whether it did.
#[must_use = "`false` says the deadline passed: assert on it"]
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    poll(timeout, || done().then_some(())).await.is_some()
}

/// [`poll_every`] for a thread of its own, which blocks while it waits; with no `timeout`, it
/// waits for as long as it takes (an emulated device waiting for its port to be opened).
#[must_use = "`None` says the deadline passed: assert on it"]
pub fn poll_blocking<T>(
    every: Duration,
    timeout: Option<Duration>,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        // A wall-clock wait on purpose: as above, for a thread.
        std::thread::sleep(every);
    }
}

/// Waits until the wall clock is past `at_ms` (milliseconds since the Unix epoch): the end of a
/// window of the daemon's (a debounce, a repeat window) counted from a time it logged, so that
/// the wait is exactly as long as the window, however late the test saw the log line.
pub async fn wait_until_past(at_ms: i64) {
    let ahead_ms = at_ms - now_ms();
    assert!(
        ahead_ms < LONG.as_millis() as i64,
        "{ahead_ms} ms is no window a test waits out"
    );
    assert!(wait_until(LONG, || now_ms() > at_ms).await);
}

/// Waits until the stand-in, set to [`Mode::Down`], refuses connections: from then on no
/// request reaches it.
pub async fn wait_until_refused(fake: &FakeEgym) {
    let address = fake.base_url().trim_start_matches("http://").to_string();
    assert!(
        wait_until(LONG, || std::net::TcpStream::connect(&address).is_err()).await,
        "EGYM at {address} still accepts connections"
    );
}

/// The stand-in EGYM with `members`, taking [`API_KEY`].
pub async fn start_egym(members: Vec<Member>) -> FakeEgym {
    FakeEgym::start(members, API_KEY).await.unwrap()
}

/// A directory of its own for one test, removed when dropped.
#[derive(Debug)]
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "gym-checkin-test-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pseudo-terminal: the daemon opens the slave's path as it would open `/dev/ttyUSB0`; the
/// test writes the reader's bytes into the master. Dropping it is unplugging the reader.
#[derive(Debug)]
pub struct Pty {
    master: std::fs::File,
    pub slave_path: PathBuf,
}

impl Pty {
    pub fn open() -> Pty {
        // Close-on-exec from the start (O_CLOEXEC here, and std opens the slave with it):
        // otherwise a daemon started by a test running in parallel would inherit this master,
        // and unplugging this reader would never reach its daemon.
        // SAFETY: posix_openpt only takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just returned by posix_openpt and is owned here alone.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: grantpt, unlockpt and ptsname_r act on a valid master descriptor; ptsname_r
        // writes at most `name.len()` bytes into `name`.
        unsafe {
            assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
            assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
            assert_eq!(
                libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
                0
            );
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
        let slave_path = PathBuf::from(
            unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
                .to_str()
                .unwrap(),
        );
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&slave_path)
            .unwrap();
        // Raw mode, so bytes reach the reader as written even before it sets the port up. The
        // settings belong to the pty and stay after this descriptor is closed.
        // SAFETY: termios is plain data; tcgetattr fills it in from a valid descriptor.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut termios), 0);
            libc::cfmakeraw(&mut termios);
            assert_eq!(
                libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &termios),
                0
            );
        }
        drop(slave);
        Pty {
            master: std::fs::File::from(master),
            slave_path,
        }
    }

    /// The terminal side, opened as a reader's device is.
    pub fn slave(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&self.slave_path)
            .unwrap()
    }

    /// A second handle on the master side, for an emulated reader that reads what the daemon
    /// writes and answers it.
    pub fn master(&self) -> std::fs::File {
        self.master.try_clone().unwrap()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }
}

/// An RDM6300 frame for a 5-byte id given as 10 hex digits.
pub fn em4100_frame(hex10: &str) -> Vec<u8> {
    let bytes: Vec<u8> = (0..5)
        .map(|i| u8::from_str_radix(&hex10[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let checksum = bytes.iter().fold(0, |a, b| a ^ b);
    let mut frame = vec![0x02];
    frame.extend_from_slice(format!("{}{checksum:02X}", hex10.to_uppercase()).as_bytes());
    frame.push(0x03);
    frame
}

/// The real time now: the tests themselves never run under a faked clock.
pub fn now_ms() -> i64 {
    gym_checkin::clock::wall_now().as_millis()
}

/// The system's clock, trusted, for a test that runs parts of the service in its own process;
/// steady time starts at the wall time, as in a new database.
pub fn trusted_clock() -> gym_checkin::clock::Clock {
    use gym_checkin::clock::{Boot, Clock, SteadyMs, SystemSource, TrustRule, boot_reading};
    let (reading, trust) = boot_reading(&SystemSource, &TrustRule::Always);
    let boot = Boot {
        id: 1,
        offset_ms: reading.wall.as_millis() - reading.boottime_ms,
        start: SteadyMs::from_millis(reading.wall.as_millis()),
    };
    Clock::system(TrustRule::Always, boot, trust, None)
}

/// `RUST_LOG` for a daemon that also says, at debug level, what its readers do between taps:
/// each read of a card still presented (`same card still presented`), each reopen that failed
/// (`reader still cannot be opened`). A test waits for these instead of for time to pass.
pub const READER_DEBUG: (&str, &str) = ("RUST_LOG", "info,gym_checkin::reader=debug");

/// One `tap recorded` line of the daemon's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: i64,
    pub tag: String,
    pub kind: String,
    pub tapped_at_ms: i64,
}

/// The `tapped_at_ms` of a `tap recorded` line: when the card was read.
pub fn tapped_at_ms(line: &str) -> i64 {
    field(line, "tapped_at_ms")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no tapped_at_ms: {line}"))
}

/// The value of `key=` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    Some(rest.split(' ').next().unwrap_or(rest).trim_matches('"'))
}

/// The real binary, run with a configuration file, its standard error and output collected
/// line by line.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads that read standard error and output; each ends at its stream's end.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// The binary under test: the one cargo built, or the one `GYM_CHECKIN_TEST_BINARY` names (the
/// arm64 build, say).
pub fn binary() -> String {
    std::env::var("GYM_CHECKIN_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gym-checkin").to_string())
}

/// What the binary is run through: `GYM_CHECKIN_TEST_RUNNER`, split at spaces (for the arm64
/// build on an amd64 machine, `qemu-aarch64 -L /usr/aarch64-linux-gnu`); nothing by default.
pub fn runner() -> Vec<String> {
    std::env::var("GYM_CHECKIN_TEST_RUNNER")
        .map(|r| r.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A command that runs the binary under test (through the runner, if one is set).
pub fn gym_checkin() -> Command {
    let runner = runner();
    match runner.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary());
            command
        }
        None => Command::new(binary()),
    }
}

/// Whether the tests run as root (as CI does).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs the binary under test as a user who owns nothing of the test's: as root,
/// the user `nobody` (through util-linux's `setpriv`), with the extra `groups`; as anyone else,
/// that user itself (the test then takes its permissions away with `chmod`, which root would
/// ignore). The binary is copied into `dir` first, which every user may read.
pub fn as_unprivileged(dir: &TestDir, groups: &[u32]) -> Command {
    let binary_copy = dir.path("gym-checkin-unprivileged");
    if !binary_copy.exists() {
        std::fs::copy(binary(), &binary_copy).unwrap();
        for path in [&dir.0, &binary_copy] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() | 0o755;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    if !is_root() {
        return Command::new(binary_copy);
    }
    let mut command = Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        command.arg(format!("--groups={}", groups.join(",")));
    }
    command.arg(binary_copy);
    command
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::spawn(&[], &["run"], config, &[])
    }

    /// Starts the daemon through a wrapper command (e.g. `fiu-run -x`).
    pub fn start_under(wrapper: &[&str], config: &Path) -> Daemon {
        Daemon::spawn(wrapper, &["run"], config, &[])
    }

    /// Starts the daemon with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(&[], &["run"], config, env)
    }

    /// Runs another command of the binary (`listen`, say) the same way.
    pub fn start_command(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(&[], args, config, env)
    }

    /// Runs another command of the binary through a wrapper command (`sh -c 'umask 000 ...'`).
    pub fn start_command_under(wrapper: &[&str], args: &[&str], config: &Path) -> Daemon {
        Daemon::spawn(wrapper, args, config, &[])
    }

    /// Starts the daemon with `stdin` as its standard input (a pipe, say).
    pub fn start_with_input(config: &Path, stdin: Stdio, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_with(&[], &["run"], config, env, stdin)
    }

    /// Starts the daemon with `pty`'s terminal as its standard input (a `stdin` reader).
    pub fn start_on_terminal(config: &Path, pty: &Pty) -> Daemon {
        Daemon::spawn_with(&[], &["run"], config, &[], pty.slave().into())
    }

    fn spawn(wrapper: &[&str], args: &[&str], config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_with(wrapper, args, config, env, Stdio::null())
    }

    fn spawn_with(
        wrapper: &[&str],
        args: &[&str],
        config: &Path,
        env: &[(&str, &str)],
        stdin: Stdio,
    ) -> Daemon {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).args(runner()).arg(binary());
                command
            }
            None => gym_checkin(),
        };
        let mut child = command
            .args(args)
            .arg("--config")
            .arg(config)
            .env_remove("EGYM_API_KEY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    assert!(!line.contains(API_KEY), "the API key was printed: {line}");
                    if std::env::var_os("GYM_CHECKIN_TEST_ECHO").is_some() {
                        eprintln!("[daemon] {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        Daemon {
            child,
            lines,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's standard input, when it was started with a pipe there (once).
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The log lines that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    }

    /// Waits until `n` log lines contain `text`; returns them, and panics with the log at the
    /// deadline.
    pub async fn wait_for_lines(&self, text: &str, n: usize, timeout: Duration) -> Vec<String> {
        let found = poll(timeout, || {
            let lines = self.lines_with(text);
            (lines.len() >= n).then_some(lines)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "waited {timeout:?} for {n} lines with {text:?}, saw {}; log:\n{}",
                self.lines_with(text).len(),
                self.lines().join("\n")
            )
        })
    }

    /// Waits until a log line contains `text`; returns the first such line.
    pub async fn wait_for_line(&self, text: &str, timeout: Duration) -> String {
        let mut lines = self.wait_for_lines(text, 1, timeout).await;
        lines.swap_remove(0)
    }

    /// The log lines of the event `name` (their `event` field: `tap_recorded`, `delivered`,
    /// ...; see `src/events.rs`), in order. Tests wait on these, not on a message's wording.
    pub fn events(&self, name: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| field(l, "event") == Some(name))
            .collect()
    }

    /// Waits until `n` lines of the event `name` are logged; returns them, and panics with the
    /// log at the deadline.
    pub async fn wait_for_events(&self, name: &str, n: usize, timeout: Duration) -> Vec<String> {
        let found = poll(timeout, || {
            let lines = self.events(name);
            (lines.len() >= n).then_some(lines)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "waited {timeout:?} for {n} events {name}, saw {}; log:\n{}",
                self.events(name).len(),
                self.lines().join("\n")
            )
        })
    }

    /// Waits until the event `name` is logged; returns its first line.
    pub async fn wait_for_event(&self, name: &str, timeout: Duration) -> String {
        let mut lines = self.wait_for_events(name, 1, timeout).await;
        lines.swap_remove(0)
    }

    /// Every tap logged so far, recorded or ignored (automatic check-outs are no taps), in
    /// order: one line each.
    pub fn taps(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| {
                matches!(field(l, "outcome"), Some("recorded" | "ignored"))
                    && field(l, "automatic") != Some("true")
            })
            .collect()
    }

    /// Waits until `n` taps are logged, recorded or ignored; returns the `n`th line.
    pub async fn wait_for_tap(&self, n: usize) -> String {
        let found = poll(LONG, || self.taps().into_iter().nth(n - 1)).await;
        found.unwrap_or_else(|| {
            panic!(
                "waited {LONG:?} for tap {n}; log:\n{}",
                self.lines().join("\n")
            )
        })
    }

    /// Every tap logged as recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.lines()
            .iter()
            .filter(|l| field(l, "event") == Some("tap_recorded"))
            .map(|l| Recorded {
                event_id: field(l, "event_id").unwrap().parse().unwrap(),
                tag: field(l, "tag").unwrap().to_string(),
                kind: field(l, "kind").unwrap().to_string(),
                tapped_at_ms: field(l, "tapped_at_ms").unwrap().parse().unwrap(),
            })
            .collect()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0);
    }

    /// Waits for the process to exit and its output to be read to the end, at most `timeout`:
    /// the log is whole when this returns.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let exited = poll(timeout, || {
            let status = self.child.try_wait().unwrap()?;
            self.readers
                .iter()
                .all(|reader| reader.is_finished())
                .then_some(status)
        })
        .await;
        exited.unwrap_or_else(|| {
            panic!(
                "still running, or its output still open, after {timeout:?}; log:\n{}",
                self.lines().join("\n")
            )
        })
    }

    /// CPU time used so far by the threads now running.
    pub fn cpu_time(&self) -> Duration {
        // The scheduler's own count, in nanoseconds, of each thread: /proc's utime and stime are
        // sampled at clock ticks, too coarse to tell 0.1 % of a core over a few seconds.
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).unwrap();
        let nanos: u64 = tasks
            .filter_map(|task| {
                let schedstat =
                    std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                schedstat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Duration::from_nanos(nanos)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free now, for a test's own screen.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address of this machine that is not loopback, for the tests of the screen's rules for
/// other machines: a connection from this machine to it comes from it (the kernel picks the
/// local address it connects to as the source), so the service sees a client that is not
/// loopback, as it sees a tablet on the LAN. IPv4 first; link-local addresses are left out.
pub fn lan_address() -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut found: Vec<IpAddr> = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list this function frees below with freeifaddrs;
    // each entry's ifa_addr is null or points to a sockaddr of the family it names.
    unsafe {
        assert_eq!(
            libc::getifaddrs(&mut list),
            0,
            "getifaddrs: {}",
            std::io::Error::last_os_error()
        );
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    };
    found.sort_by_key(|ip| ip.is_ipv6());
    found.into_iter().find(usable).unwrap_or_else(|| {
        panic!(
            "this machine has no address but loopback ones: the screen's tests for other \
             machines connect from one. Bring a network interface up with an address (any, \
             e.g. `ip addr add 192.0.2.2/32 dev lo` as root)"
        )
    })
}

/// A port free now on every address, for a screen that listens on all of them.
pub fn free_port_everywhere() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus's `promtool` (Debian's package `prometheus`, which `.ci/run` installs) run with
/// `args`, `input` on its standard input; returns whether it succeeded, and what it printed.
pub fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let promtool = "/usr/bin/promtool";
    assert!(
        Path::new(promtool).exists(),
        "promtool is not installed: the tests check /metrics and the alert rules with it. \
         Install Debian's prometheus package (apt-get install prometheus), as .ci/run does"
    );
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// `/metrics` passes `promtool check metrics` (its parser and its linter).
pub fn check_metrics(text: &str) {
    let (ok, printed) = promtool(&["check", "metrics"], text);
    assert!(ok, "promtool: {printed}\n{text}");
}

/// Datagrams received on a notification socket (`NOTIFY_SOCKET`, as systemd hears them), with
/// when they arrived.
pub struct NotifySocket {
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    pub fn bind(path: &Path) -> NotifySocket {
        let socket = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..n]).to_string();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        NotifySocket { messages }
    }

    pub fn all(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    pub fn count(&self, message: &str) -> usize {
        self.all()
            .iter()
            .filter(|(_, m)| m.starts_with(message))
            .count()
    }

    pub async fn wait_for(&self, message: &str, n: usize) {
        assert!(
            wait_until(LONG, || self.count(message) >= n).await,
            "waited for {n} × {message:?}; got {:?}",
            self.all()
        );
    }
}

/// What `gym-checkin status` with `options` prints for a configuration; it must succeed.
fn status_output(config: &Path, options: &[&str]) -> String {
    let output = gym_checkin()
        .arg("status")
        .args(options)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `gym-checkin status --json` for a configuration.
pub fn status_json(config: &Path) -> serde_json::Value {
    let stdout = status_output(config, &["--json"]);
    assert!(!stdout.contains(API_KEY));
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json printed {stdout:?}: {e}"))
}

/// `gym-checkin status` for a configuration, as people read it.
pub fn status_text(config: &Path) -> String {
    status_output(config, &[])
}

/// A tap of `tag` (`0x…`) on the reader `entrance` at `tapped_at_ms`, the clock trusted, and the
/// tag's visit state after it: what the recorder hands the store. Its steady time is its wall
/// time, as in a database no service has run on yet; its boot is 0.
pub fn entrance_tap(
    tag: &str,
    kind: gym_checkin::visit::Kind,
    tapped_at_ms: i64,
) -> (gym_checkin::store::NewEvent, gym_checkin::visit::TagState) {
    use gym_checkin::clock::{SteadyMs, WallMs};
    use gym_checkin::store::{NewEvent, TimeQuality};
    use gym_checkin::visit::{CheckIn, after_event};
    let event = NewEvent {
        reader: "entrance".into(),
        raw_id: tag.trim_start_matches("0x").into(),
        tag: tag.into(),
        tag_format: None,
        kind,
        tapped_at: WallMs::from_millis(tapped_at_ms),
        tapped_steady: SteadyMs::from_millis(tapped_at_ms),
        boot: 0,
        time: TimeQuality::Trusted,
        automatic: false,
    };
    let tap = CheckIn {
        steady: SteadyMs::from_millis(tapped_at_ms),
        at: Some(WallMs::from_millis(tapped_at_ms)),
    };
    (event, after_event(kind, tap))
}

/// Puts `events_per_tag` pending check-ins and check-outs of each tag into the database, as if
/// they had been recorded during an outage a minute ago.
pub async fn seed_backlog(db: &Path, tags: &[String], events_per_tag: usize) -> usize {
    use gym_checkin::store::{Batch, Store};
    use gym_checkin::visit::Kind;
    let store = Store::open(db).await.unwrap();
    let start = now_ms() - 60_000;
    let mut events = Vec::new();
    for round in 0..events_per_tag {
        for (i, tag) in tags.iter().enumerate() {
            let kind = if round % 2 == 0 {
                Kind::CheckIn
            } else {
                Kind::CheckOut
            };
            let tapped_at_ms = start + (round * tags.len() + i) as i64;
            events.push(entrance_tap(tag, kind, tapped_at_ms));
        }
    }
    let n = events.len();
    let batch = Batch::of(events, gym_checkin::clock::wall_now());
    store.record_batch(batch).await.unwrap();
    store.checkpoint().await.unwrap();
    n
}

/// An EGYM rfid for these id bytes: `0x` and uppercase hex.
pub fn rfid_of(bytes: &[u8]) -> String {
    format!(
        "0x{}",
        bytes.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

/// When a log line of the daemon's was written, in milliseconds since the Unix epoch.
pub fn logged_at_ms(line: &str) -> i64 {
    let stamp = line.split_whitespace().next().unwrap();
    stamp.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// A `[[readers]]` table for a serial reader named `name` on `path`, with more lines in `extra`.
pub fn serial_reader(name: &str, path: &Path, protocol: &str, extra: &str) -> String {
    format!(
        "[[readers]]\nname = \"{name}\"\ndriver = \"serial\"\npath = \"{}\"\nprotocol = \"{protocol}\"\n{extra}\n",
        path.display()
    )
}

/// A `[[readers]]` table for a reader typing into the service's standard input.
pub fn stdin_reader(name: &str) -> String {
    format!("[[readers]]\nname = \"{name}\"\ndriver = \"stdin\"\n")
}

/// A `[[readers]]` table for the PC/SC reader that pcscd calls `reader`.
pub fn pcsc_reader(name: &str, reader: &str) -> String {
    format!("[[readers]]\nname = \"{name}\"\ndriver = \"pcsc\"\nreader = \"{reader}\"\n")
}

/// The `[egym]` lines of [`write_config`]: a rate limit the tests do not reach, and a request
/// timeout short enough for a test to see one.
pub const EGYM_LIMITS: &str =
    "rate-limit-per-second = 50\nrate-limit-burst = 50\nrequest-timeout = \"2s\"";

/// `[egym]` lines with this rate limit (`rate` per second, bursts of `burst`) and request
/// timeout.
pub fn egym_limits(rate: f64, burst: u32, timeout: &str) -> String {
    format!(
        "rate-limit-per-second = {rate}\nrate-limit-burst = {burst}\nrequest-timeout = \"{timeout}\""
    )
}

/// Writes a configuration with the API key in a file beside it; returns the config's path.
/// `readers` is the `[[readers]]` part; `visits` goes into `[visits]`.
pub fn write_config(dir: &TestDir, base_url: &str, visits: &str, readers: &str) -> PathBuf {
    write_config_with(dir, base_url, EGYM_LIMITS, visits, readers)
}

/// As [`write_config`], with `egym` lines of its own (rate limit, timeout). The clock is
/// trusted as it is: the machines the tests run on need not run a time service.
pub fn write_config_with(
    dir: &TestDir,
    base_url: &str,
    egym: &str,
    visits: &str,
    readers: &str,
) -> PathBuf {
    write_config_full(
        dir,
        base_url,
        egym,
        visits,
        "trusted-when = \"always\"",
        readers,
    )
}

/// As [`write_config_with`], with the `[clock]` section's lines too. The screen is off: tests
/// run side by side, and only the screen's own tests give it a port.
pub fn write_config_full(
    dir: &TestDir,
    base_url: &str,
    egym: &str,
    visits: &str,
    clock: &str,
    readers: &str,
) -> PathBuf {
    write_config_parts(dir, base_url, egym, visits, clock, "listen = \"\"", readers)
}

/// A configuration with the `[screen]` section's lines in `screen` (where it listens,
/// `token-file` and the like).
pub fn write_config_with_screen(
    dir: &TestDir,
    base_url: &str,
    screen: &str,
    readers: &str,
) -> PathBuf {
    write_config_parts(
        dir,
        base_url,
        EGYM_LIMITS,
        "",
        "trusted-when = \"always\"",
        screen,
        readers,
    )
}

/// A configuration from each section's lines. The control socket is the test's own, beside its
/// database: tests run side by side.
pub fn write_config_parts(
    dir: &TestDir,
    base_url: &str,
    egym: &str,
    visits: &str,
    clock: &str,
    screen: &str,
    readers: &str,
) -> PathBuf {
    let key_file = dir.path("api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let config = format!(
        r#"
[egym]
base-url = "{base_url}"
api-key-file = "{key}"
{egym}

[store]
path = "{db}"

[visits]
{visits}

[clock]
{clock}

[screen]
{screen}

[service]
socket = "{socket}"

{readers}
"#,
        key = key_file.display(),
        db = dir.path("gym-checkin.db").display(),
        socket = dir.path("gym-checkin.sock").display(),
    );
    let path = dir.path("gym-checkin.toml");
    std::fs::write(&path, config).unwrap();
    path
}

pub fn member(rfid: &str, account_id: &str) -> Member {
    Member::new(rfid, account_id, "Test Member")
}

/// Check-ins and check-outs received, in arrival order: (account, "checkins"/"checkouts", timestamp).
pub fn visits(received: &[Received]) -> Vec<(String, String, i64)> {
    received
        .iter()
        .filter(|r| r.status == Some(204))
        .filter_map(|r| {
            let (account, what) = r.visit()?;
            Some((account.to_string(), what.to_string(), r.timestamp()?))
        })
        .collect()
}

pub fn count_visits(received: &[Received]) -> usize {
    visits(received).len()
}

/// The shim in `tests/support/disk_faults.c`, compiled once with the C compiler that also builds
/// the bundled SQLite.
pub fn disk_fault_shim() -> &'static Path {
    static SHIM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/disk_faults.c");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("disk_faults-{}.so", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(source)
            .arg("-ldl")
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
        assert!(status.success(), "{cc} could not build {source}");
        out
    })
}

impl Daemon {
    /// Starts the daemon with its disk failing as `switch` says (see [`disk_fault_shim`]:
    /// write `enospc`, `erofs` or `eio` into the file to fail it, remove it to heal it).
    pub fn start_with_disk_fault(config: &Path, switch: &Path) -> Daemon {
        Daemon::start_with_disk_fault_env(config, switch, &[])
    }

    /// [`Daemon::start_with_disk_fault`] with more environment variables.
    pub fn start_with_disk_fault_env(config: &Path, switch: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = disk_fault_log(switch);
        let mut all = vec![
            ("LD_PRELOAD", disk_fault_shim().to_str().unwrap()),
            ("GYM_CHECKIN_DISK_FAULT", switch.to_str().unwrap()),
            ("GYM_CHECKIN_DISK_FAULT_LOG", log.to_str().unwrap()),
        ];
        all.extend_from_slice(env);
        Daemon::start_with_env(config, &all)
    }
}

/// Where the shim notes the calls it failed for a daemon whose disk fails by `switch`.
fn disk_fault_log(switch: &Path) -> PathBuf {
    switch.with_extension("failed")
}

/// How many calls the shim has failed so far for a daemon whose disk fails by `switch`.
pub fn disk_faults_injected(switch: &Path) -> usize {
    std::fs::read_to_string(disk_fault_log(switch)).map_or(0, |text| text.lines().count())
}

/// Debian's libfaketime (package `faketime`, which `.ci/run` installs): it steps the wall clock
/// of the real binary and leaves its monotonic clocks alone.
pub fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
        dirs.flatten()
            .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
            .find(|path| path.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "libfaketime is not installed (looked for /usr/lib/*/faketime/libfaketime.so.1): \
             the clock tests step the daemon's wall clock with it. Install Debian's faketime \
             package (apt-get install faketime), as .ci/run does"
        )
    })
}

/// The wall clock of a daemon started with [`FakeTime::env`], set by a file libfaketime reads
/// at every call: `"+0"` is the true time, `"-3d"` three days behind, `"-1h"` an hour.
#[derive(Debug)]
pub struct FakeTime {
    file: PathBuf,
    library: PathBuf,
}

impl FakeTime {
    pub fn new(dir: &TestDir, offset: &str) -> FakeTime {
        let fake = FakeTime {
            file: dir.path("faketime"),
            library: libfaketime(),
        };
        fake.set(offset);
        fake
    }

    /// Steps the clock: from now on it reads the true time plus `offset`.
    pub fn set(&self, offset: &str) {
        // Whole, or libfaketime could read half a line.
        let next = self.file.with_extension("next");
        std::fs::write(&next, format!("{offset}\n")).unwrap();
        std::fs::rename(&next, &self.file).unwrap();
    }

    /// The environment that runs a daemon under this clock, in boot `boot_id`.
    pub fn env<'a>(&'a self, boot_id: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("LD_PRELOAD", self.library.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("GYM_CHECKIN_BOOT_ID", boot_id),
        ]
    }
}

/// The forms a card's id and a member's account id may take in a database's files, each with a
/// name, and whether the database stores it so (then a check must find it before an erasure):
/// the rfid as text (`0x5A17C39E42`) and its hex alone (the id as read), as stored; the hex in
/// lower case and the id's bytes themselves, which it never stores, checked all the same; the
/// account id as text, as stored.
pub fn id_forms(rfid: &str, account: &str) -> Vec<(String, Vec<u8>, bool)> {
    let hex = rfid.trim_start_matches("0x");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    vec![
        (
            format!("card {rfid} as text"),
            rfid.as_bytes().to_vec(),
            true,
        ),
        (format!("card {hex} as hex"), hex.as_bytes().to_vec(), true),
        (
            format!("card {hex} as lowercase hex"),
            hex.to_ascii_lowercase().into_bytes(),
            false,
        ),
        (format!("card {hex} as bytes"), bytes, false),
        (
            format!("account {account} as text"),
            account.as_bytes().to_vec(),
            true,
        ),
    ]
}

/// Asserts that the database at `db` (with its `-wal`) holds every form of `forms` that the
/// database stores: the check finds what it looks for.
pub fn assert_found(db: &Path, forms: &[(String, Vec<u8>, bool)]) {
    let found = found_in_files(db, forms);
    for (name, _, stored) in forms {
        assert!(
            !stored || found.iter().any(|f| f.ends_with(name.as_str())),
            "the check finds {name:?} before the erasure: {found:?}"
        );
    }
}

/// Which of `forms` the database at `db`, its `-wal` and its `-shm` hold, as `file: form`
/// (the files that exist).
pub fn found_in_files(db: &Path, forms: &[(String, Vec<u8>, bool)]) -> Vec<String> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for (name, needle, _) in forms {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found.push(format!("{}: {name}", path.display()));
            }
        }
    }
    found
}
