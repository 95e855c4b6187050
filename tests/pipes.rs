//! Output to a reader that went away (`gym-checkin status | head -1`): every command stops
//! cleanly, never with a panic, and the demo removes its temporary database.

mod common;

use std::process::{Output, Stdio};

use common::*;

/// A pipe whose reading end is closed already: every write to it fails (EPIPE).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

fn assert_clean(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_writing_to_a_closed_pipe_exit_cleanly() {
    let dir = TestDir::new("closed-pipe");
    let fake = start_egym(vec![]).await;
    let pty = Pty::open();
    let config = write_config(
        &dir,
        &fake.base_url(),
        "",
        &serial_reader("entrance", &pty.slave_path, "em4100", ""),
    );
    // `listen` first, while no service has the reader: it stops at its first line.
    let output = gym_checkin()
        .args(["listen", "--config"])
        .arg(&config)
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_clean("listen", &output);

    let daemon = Daemon::start(&config);
    daemon.wait_for_line("gym-checkin running", LONG).await;
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["check-config"],
        &["--help"],
    ] {
        let output = gym_checkin()
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_clean(&format!("{args:?}"), &output);
    }
}

#[test]
fn the_demo_writing_to_a_closed_pipe_stops_and_removes_its_database() {
    let demo = gym_checkin()
        .arg("demo")
        .stdin(Stdio::piped())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    let output = demo.wait_with_output().unwrap();
    assert_clean("demo", &output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stopped"),
        "the demo ran, then stopped: {stderr}"
    );
    let dir = std::env::temp_dir().join(format!("gym-checkin-demo-{pid}"));
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
