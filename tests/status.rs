//! `gym-checkin status` for the people who run it: staff in the service's group ask the running
//! service on its socket, without reading its database; a permission problem is said as one,
//! with the path, the user and the command that fixes it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Output;

use common::*;

fn status(command: &mut std::process::Command, config: &std::path::Path) -> Output {
    command
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// The user a denied command ran as: `nobody` when the tests run as root.
fn denied_user() -> String {
    if is_root() {
        "nobody".into()
    } else {
        let output = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_in_the_service_group_read_the_status_from_the_service() {
    let dir = TestDir::new("status-group");
    let fake = start_egym(vec![]).await;
    let pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    let socket = dir.path("gym-checkin.sock");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "the group may ask"
    );
    // The database stays the service's alone, as its state directory is under systemd.
    for file in ["gym-checkin.db", "gym-checkin.db-wal", "gym-checkin.db-shm"] {
        std::fs::set_permissions(dir.path(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // A member of the socket's group: the status comes from the service.
    let output = status(&mut as_unprivileged(&dir, &[meta.gid()]), &config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["service"]["pid"], daemon.pid(), "{json}");
    assert_eq!(json["readers"][0]["name"], "entrance", "{json}");

    // Anyone else is told what to do.
    if !is_root() {
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let output = status(&mut as_unprivileged(&dir, &[]), &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let user = denied_user();
    for wanted in [
        format!(
            "user {user} may not use the service's socket {}",
            socket.display()
        ),
        format!("sudo usermod -aG gym-checkin {user}"),
    ] {
        assert!(stderr.contains(&wanted), "{wanted:?} missing: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_service_stopped_a_database_the_user_may_not_read_is_said_so() {
    let dir = TestDir::new("status-stopped");
    let fake = start_egym(vec![]).await;
    let pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    assert!(
        !dir.path("gym-checkin.sock").exists(),
        "the socket goes with the service"
    );

    // Root (or the owner) reads the database itself, and says the service is not running.
    let text = status_text(&config);
    assert!(text.contains("service: NOT RUNNING"), "{text}");

    let db = dir.path("gym-checkin.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    if !is_root() {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let output = status(&mut as_unprivileged(&dir, &[]), &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let user = denied_user();
    for wanted in [
        format!("user {user} may not read the database {}", db.display()),
        "sudo systemctl start gym-checkin".to_string(),
        "sudo gym-checkin status".to_string(),
    ] {
        assert!(stderr.contains(&wanted), "{wanted:?} missing: {stderr}");
    }
}
