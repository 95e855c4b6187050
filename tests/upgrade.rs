//! The Debian package upgraded in place under a real systemd: a Debian bookworm system booted
//! with `systemd-nspawn`, version N installed and running, a tap recorded while EGYM is
//! unreachable, then version N+1 installed over it. The edited conffile must be kept, the
//! database left as it was, the service restarted, and the tap delivered afterwards.
//!
//! Run as root, with the feature `upgrade-test` and three paths (`.ci/run` makes them):
//! `GYM_CHECKIN_UPGRADE_ROOT` (a `debootstrap --variant=minbase --include=systemd,systemd-sysv,
//! dbus,libpcsclite1,socat bookworm` tree), `GYM_CHECKIN_UPGRADE_OLD_DEB` and
//! `GYM_CHECKIN_UPGRADE_NEW_DEB` (the same package built with two versions).
#![cfg(feature = "upgrade-test")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How long the test waits on the container: a whole system booting, and a service its systemd
/// starts, take longer than a process the test starts itself (see [`LONG`]).
const CONTAINER_WAIT: Duration = Duration::from_secs(60);
const TAG: &str = "0C000621A5";
/// How often a wait asks the container again: each look runs a command inside it.
const CHECK_EVERY: Duration = Duration::from_millis(200);

fn required(var: &str) -> PathBuf {
    let value = std::env::var_os(var)
        .unwrap_or_else(|| panic!("{var} is not set: see the top of tests/upgrade.rs"));
    PathBuf::from(value)
}

/// A Debian system booted in a container.
struct Container {
    nspawn: Child,
    init: u32,
}

impl Container {
    fn boot(root: &Path, log: &Path) -> Container {
        let log = std::fs::File::create(log).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(["--boot", "--keep-unit", "--register=no", "--console=pipe"])
            .arg(format!(
                "--machine=gym-checkin-upgrade-{}",
                std::process::id()
            ))
            .arg("--directory")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn (apt-get install systemd-container)");
        // The container's init is nspawn's child, once it runs systemd.
        let started = Instant::now();
        let init = poll_blocking(POLL, Some(CONTAINER_WAIT), || {
            child_of(nspawn.id()).filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "systemd")
            })
        })
        .expect("the container did not start");
        let container = Container { nspawn, init };
        // Until its bus is up, systemctl cannot even ask.
        let state = || {
            let state = container.run("systemctl is-system-running --wait");
            String::from_utf8_lossy(&state.stdout).trim().to_string()
        };
        let left = CONTAINER_WAIT.saturating_sub(started.elapsed());
        let up = poll_blocking(CHECK_EVERY, Some(left), || {
            matches!(state().as_str(), "running" | "degraded").then_some(())
        });
        assert!(up.is_some(), "the container's systemd is {:?}", state());
        container
    }

    /// Runs `script` with bash inside the container.
    fn run(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.init.to_string())
            .args(["--all", "bash", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs `script` and asserts that it succeeds; its standard output.
    fn ok(&self, script: &str) -> String {
        let output = self.run(script);
        assert!(
            output.status.success(),
            "{script}\nfailed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The service's journal, of this boot of the container.
    fn journal(&self) -> String {
        self.ok("journalctl --boot -u gym-checkin --no-pager -o cat")
    }

    async fn wait_for_journal(&self, text: &str, n: usize) {
        let found = poll_every(CHECK_EVERY, CONTAINER_WAIT, || async {
            (self.journal().matches(text).count() >= n).then_some(())
        })
        .await;
        assert!(
            found.is_some(),
            "waited for {n} × {text:?} in the journal:\n{}",
            self.journal()
        );
    }

    fn main_pid(&self) -> u32 {
        self.ok("systemctl show --property MainPID --value gym-checkin")
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions. nspawn powers the container off.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let powered_off = poll_blocking(POLL, Some(Duration::from_secs(20)), || {
            self.nspawn.try_wait().ok().flatten()
        });
        if powered_off.is_some() {
            return;
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// A process whose parent is `parent`.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The parent's pid is the second field after the command name in parentheses.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let ppid: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_upgrades_in_place_and_a_tap_held_across_it_is_delivered() {
    let root = required("GYM_CHECKIN_UPGRADE_ROOT");
    let old_deb = required("GYM_CHECKIN_UPGRADE_OLD_DEB");
    let new_deb = required("GYM_CHECKIN_UPGRADE_NEW_DEB");
    let dir = TestDir::new("upgrade");
    for (deb, name) in [(&old_deb, "old.deb"), (&new_deb, "new.deb")] {
        std::fs::copy(deb, root.join("var/tmp").join(name)).unwrap();
    }
    let version = |deb: &Path| {
        let output = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .arg("Version")
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let (old_version, new_version) = (version(&old_deb), version(&new_deb));
    assert_ne!(old_version, new_version);

    // EGYM is unreachable until after the upgrade.
    let fake = start_egym(vec![member(&format!("0x{TAG}"), "acc-1")]).await;
    fake.set_mode(Mode::Down);

    let container = Container::boot(&root, &dir.path("nspawn.log"));
    // A tree used before starts clean; a Raspberry Pi OS system has the group `input`.
    container.ok("dpkg --purge gym-checkin >/dev/null 2>&1 || true
         rm -rf /var/lib/gym-checkin /etc/gym-checkin /etc/systemd/system/gym-checkin.service.d
         getent group input >/dev/null || groupadd --system input");
    container.ok("dpkg -i /var/tmp/old.deb");
    // The installer edits the conffile, gives the key, and (for the test) a reader on a pty.
    container.ok(&format!(
        r#"cat > /etc/gym-checkin/gym-checkin.toml <<'EOF'
# Edited at the front desk.
[egym]
base-url = "{base_url}"
[clock]
trusted-when = "always"
[screen]
listen = ""
[[readers]]
name = "entrance"
driver = "serial"
path = "/run/reader"
protocol = "em4100"
EOF
install -m 0600 /dev/null /etc/gym-checkin/egym-api-key
echo '{API_KEY}' > /etc/gym-checkin/egym-api-key
mkdir -p /etc/systemd/system/gym-checkin.service.d
printf '[Service]\nDeviceAllow=char-pts rw\n' > /etc/systemd/system/gym-checkin.service.d/test-reader.conf
systemd-run --unit=test-reader socat pty,raw,echo=0,link=/run/reader,mode=666 pty,raw,echo=0,link=/run/writer
systemctl daemon-reload
systemctl enable --now gym-checkin"#,
        base_url = fake.base_url(),
    ));
    container.wait_for_journal("reader connected", 1).await;

    // A tap while EGYM is unreachable: recorded, not delivered.
    let tapped_ms = now_ms();
    container.ok(r"printf '\x020C000621A58E\x03' > /run/writer");
    container.wait_for_journal("tap recorded", 1).await;
    container.wait_for_journal("delivery failed", 1).await;
    let pid_before = container.main_pid();
    assert!(pid_before > 0);

    // The upgrade.
    let upgrade = container.ok("dpkg -i /var/tmp/new.deb 2>&1");
    let installed = container.ok("dpkg-query -W -f '${Version}' gym-checkin");
    assert_eq!(installed, new_version, "{upgrade}");
    // The edited conffile is kept, without a question.
    let config = container.ok("cat /etc/gym-checkin/gym-checkin.toml");
    assert!(config.contains("# Edited at the front desk."), "{upgrade}");
    // The service was restarted: a new process, running the new binary, on the same database.
    container.wait_for_journal("database open", 2).await;
    let pid_after = container.main_pid();
    assert!(
        pid_after > 0 && pid_after != pid_before,
        "{pid_before} → {pid_after}\n{upgrade}"
    );
    assert_eq!(
        container.ok("systemctl is-active gym-checkin").trim(),
        "active"
    );

    // EGYM back: the tap held across the upgrade is delivered, with its own time.
    fake.set_mode(Mode::Normal);
    let (ok, received) = fake
        .wait_for(CONTAINER_WAIT, |r| count_visits(r) == 1)
        .await;
    assert!(ok, "not delivered:\n{}", container.journal());
    let visit = &visits(&received)[0];
    assert_eq!((visit.0.as_str(), visit.1.as_str()), ("acc-1", "checkins"));
    assert!(
        (visit.2 - tapped_ms).abs() < 2_000,
        "stamped {} for a tap at {tapped_ms}",
        visit.2
    );

    // Under the real unit: staff in the group gym-checkin read the status from the service;
    // anyone else is told how to join it; a second service beside it refuses to start.
    let status = container.ok(
        "id desk >/dev/null 2>&1 || useradd --no-user-group --groups gym-checkin desk
         runuser -u desk -- gym-checkin status --json",
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["service"]["pid"], pid_after, "{status}");
    let denied = container.run("runuser -u nobody -- gym-checkin status");
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        !denied.status.success() && stderr.contains("sudo usermod -aG gym-checkin nobody"),
        "{stderr}"
    );
    let second = container.run("timeout 30 gym-checkin run");
    assert_eq!(
        second.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        container.ok("systemctl is-active gym-checkin").trim(),
        "active"
    );
    container.ok("systemctl disable --now gym-checkin test-reader");
    println!("upgraded {old_version} → {new_version}; the tap was delivered after it");
}
