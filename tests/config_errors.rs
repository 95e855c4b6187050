//! Bad configurations, through the real binary: `check-config` and `run` both exit 78 and name
//! the key at fault.

mod common;

use std::process::Output;

use common::{API_KEY, TestDir, as_unprivileged, gym_checkin, is_root, start_egym};

fn run(subcommand: &str, config: &std::path::Path, env_key: Option<&str>) -> Output {
    let mut command = gym_checkin();
    command
        .arg(subcommand)
        .arg("--config")
        .arg(config)
        .env_remove("CREDENTIALS_DIRECTORY");
    match env_key {
        Some(key) => command.env("EGYM_API_KEY", key),
        None => command.env_remove("EGYM_API_KEY"),
    };
    command.output().unwrap()
}

const GOOD: &str = r#"
[egym]
base-url = "https://mms.api.egym.com"
api-key-file = "KEYFILE"

[store]
path = "DBPATH"

[[readers]]
name = "entrance"
driver = "serial"
path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"
protocol = "em4100"
"#;

/// Writes `GOOD` with `edit` applied, and a key file; returns the config path.
fn config(dir: &TestDir, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let key_file = dir.path("api-key");
    std::fs::write(&key_file, API_KEY).unwrap();
    let text = GOOD
        .replace("KEYFILE", &key_file.display().to_string())
        .replace("DBPATH", &dir.path("db.sqlite").display().to_string());
    let path = dir.path("gym-checkin.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn check_refused(name: &str, edit: impl Fn(String) -> String, wanted: &[&str]) {
    let dir = TestDir::new(name);
    let path = config(&dir, edit);
    for subcommand in ["check-config", "run"] {
        let output = run(subcommand, &path, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(78),
            "{name}: {subcommand} exit; stderr:\n{stderr}"
        );
        for text in wanted {
            assert!(
                stderr.contains(text),
                "{name}: {subcommand}: {text:?} missing from:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains(API_KEY) && !String::from_utf8_lossy(&output.stdout).contains(API_KEY)
        );
    }
    assert!(
        !dir.path("db.sqlite").exists(),
        "{name}: a refused config must not create the database"
    );
}

#[test]
fn the_good_config_passes() {
    let dir = TestDir::new("good-config");
    let path = config(&dir, |t| t);
    let output = run("check-config", &path, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("OK") && stdout.contains("reader entrance"),
        "{stdout}"
    );
    // In the file's own words, and where the key was found.
    for wanted in [
        "reader entrance: an em4100 reader on /dev/serial/by-id/",
        "direction = \"toggle\"",
        &format!(
            "API key read from {} (egym.api-key-file)",
            dir.path("api-key").display()
        ),
    ] {
        assert!(stdout.contains(wanted), "{wanted:?} missing:\n{stdout}");
    }
    assert!(!stdout.contains(API_KEY));
}

#[test]
fn an_unknown_key_is_refused() {
    check_refused(
        "unknown-key",
        |t| {
            t.replace(
                "protocol = \"em4100\"",
                "protocol = \"em4100\"\nbaudrate = 9600",
            )
        },
        &["readers[0].baudrate: unknown key, expected one of: name, driver, path, baud"],
    );
}

#[test]
fn a_bad_value_is_refused_with_the_accepted_values() {
    check_refused(
        "bad-value",
        |t| t.replace("\"em4100\"", "\"em410\""),
        &[
            "readers[0].protocol: unknown value \"em410\", expected one of: em4100, line, pn532, twn4",
        ],
    );
}

#[test]
fn a_bad_duration_is_refused() {
    check_refused(
        "bad-duration",
        |t| {
            t.replace(
                "[store]",
                "[visits]\nrepeat-window = \"2 minutes\"\n\n[store]",
            )
        },
        &["visits.repeat-window: invalid duration \"2 minutes\""],
    );
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    check_refused(
        "http-remote",
        |t| t.replace("https://mms.api.egym.com", "http://mms.api.egym.com"),
        &["egym.base-url:", "plain http"],
    );
}

#[test]
fn a_missing_key_file_is_refused() {
    check_refused(
        "missing-key-file",
        |t| t.replace("api-key\"", "no-such-key-file\""),
        &[
            "egym.api-key-file: cannot read the API key file",
            "no-such-key-file",
        ],
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    check_refused(
        "several",
        |t| {
            t.replace("https://", "http://")
                .replace("\"em4100\"", "\"em410\"")
                .replace("[store]", "[store]\nkeep-delivered = \"forever\"")
        },
        &[
            "3 problems",
            "egym.base-url",
            "readers[0].protocol",
            "store.keep-delivered",
        ],
    );
}

#[test]
fn a_retention_that_keeps_too_long_or_too_short_is_refused() {
    check_refused(
        "retention",
        |t| {
            t.replace(
                "[store]",
                "[store]\nkeep-rejected = \"2y\"\nkeep-unknown = \"400d\"",
            )
            .replace(
                "[[readers]]",
                "[visits]\nkeep-closed = \"1s\"\n\n[[readers]]",
            )
        },
        &[
            "3 problems",
            "store.keep-rejected: invalid duration \"2y\"",
            "store.keep-unknown: must be at most 366d",
            "visits.keep-closed: must be at least visits.repeat-window",
        ],
    );
}

#[test]
fn check_config_says_how_long_each_kind_of_data_is_kept() {
    let dir = TestDir::new("retention-said");
    let path = config(&dir, |t| {
        t.replace("[store]", "[store]\nkeep-delivered = \"14d\"")
    });
    let output = run("check-config", &path, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "kept: delivered events 14d 0h, rejected 30d 0h, of unknown cards 7d 0h (from the \
             tap); cached lookups 12h 0m; a closed visit's state 1h 0m; the staff page lists \
             1d 0h"
        ),
        "{stdout}"
    );
}

#[test]
fn without_a_key_file_the_key_comes_from_the_environment() {
    let dir = TestDir::new("env-key");
    let path = config(&dir, |t| {
        t.replace(
            &format!("api-key-file = \"{}\"\n", dir.path("api-key").display()),
            "",
        )
    });
    let output = run("check-config", &path, Some(API_KEY));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run("check-config", &path, None);
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("EGYM_API_KEY"));
}

#[test]
fn check_config_explains_a_keyboard_reader_that_is_not_an_input_device() {
    let dir = TestDir::new("keyboard-not-input");
    let path = config(&dir, |t| {
        t + "\n[[readers]]\nname = \"desk\"\ndriver = \"keyboard\"\npath = \"/dev/null\"\n"
    });
    let output = run("check-config", &path, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("readers[1].path: /dev/null: not an input device"),
        "{stderr}"
    );
}

#[test]
fn a_clock_rule_that_is_not_one_of_the_three_is_refused() {
    check_refused(
        "bad-trusted-when",
        |t| t + "\n[clock]\ntrusted-when = \"ntp\"\n",
        &[
            "clock.trusted-when: unknown value \"ntp\", expected one of: synchronized, always, \"file:PATH\"",
        ],
    );
    check_refused(
        "relative-trusted-when",
        |t| t + "\n[clock]\ntrusted-when = \"file:run/synchronized\"\n",
        &["clock.trusted-when: \"run/synchronized\" must be an absolute path"],
    );
}

#[test]
fn check_config_says_whether_the_clock_is_trusted_and_warns_when_it_never_can_be() {
    let dir = TestDir::new("clock-check");
    let flag = dir.path("synchronized");
    std::fs::write(&flag, "").unwrap();
    let path = config(&dir, |t| {
        format!("{t}\n[clock]\ntrusted-when = \"file:{}\"\n", flag.display())
    });
    let output = run("check-config", &path, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "clock: trusted-when = \"file:{}\": trusted now ({} exists)",
            flag.display(),
            flag.display()
        )),
        "{stdout}"
    );

    // A flag file in a directory that does not exist is never created: every tap would be held.
    let path = config(&dir, |t| {
        t + "\n[clock]\ntrusted-when = \"file:/nonexistent-gym-checkin-dir/synchronized\"\n"
    });
    let output = run("check-config", &path, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("NOT trusted now"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        stderr.contains("WARNING") && stderr.contains("whose directory does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_screen_address_that_is_no_address_or_open_to_all_without_a_token_is_refused() {
    check_refused(
        "screen-address",
        |t| t + "\n[screen]\nlisten = \"localhost-8787\"\n",
        &["screen.listen: \"localhost-8787\" is not an address and port"],
    );
    check_refused(
        "screen-open",
        |t| t + "\n[screen]\nlisten = \"0.0.0.0:8787\"\n",
        &["screen.listen: 0.0.0.0:8787 is reachable from other machines: set [screen] token-file"],
    );
    check_refused(
        "screen-token-missing",
        |t| {
            t + "\n[screen]\nlisten = \"0.0.0.0:8787\"\ntoken-file = \"/nonexistent/screen-token\"\n"
        },
        &["screen.token-file: cannot read /nonexistent/screen-token"],
    );
    check_refused(
        "screen-refusal-reasons",
        |t| t + "\n[screen]\nshow-refusal-reasons = \"yes\"\n",
        &["screen.show-refusal-reasons: expected true or false, found a string"],
    );
}

#[test]
fn check_config_reports_device_problems_beside_the_file_s_own() {
    let dir = TestDir::new("all-at-once");
    let db = dir.path("db.sqlite").display().to_string();
    let missing = dir.path("missing/db.sqlite").display().to_string();
    let path = config(&dir, |t| {
        t.replace("[egym]", "[egym]\nretries = 3")
            .replace(&db, &missing)
            .replace(
                "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0",
                "/etc/passwd",
            )
            + "\n[[readers]]\nname = \"exit\"\ndriver = \"serial\"\npath = \"/dev\"\nprotocol = \"line\"\n"
            + "\n[[readers]]\nname = \"desk\"\ndriver = \"keyboard\"\npath = \"/dev/null\"\n"
    });
    let output = run("check-config", &path, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    for wanted in [
        "5 problems:",
        "egym.retries: unknown key",
        "readers[0].path: /etc/passwd is a regular file, not a serial device",
        "readers[1].path: /dev is a directory, not a serial device",
        "readers[2].path: /dev/null: not an input device",
        "store.path: the directory",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} missing:\n{stderr}");
    }
}

#[test]
fn a_store_path_that_cannot_hold_a_database_stops_run_for_good() {
    check_refused(
        "store-missing-dir",
        |t| t.replace("db.sqlite\"", "no-such-dir/db.sqlite\""),
        &["store.path: the directory", "no-such-dir does not exist"],
    );
    check_refused(
        "store-on-proc",
        |t| {
            let db_line = t.lines().find(|l| l.contains("db.sqlite")).unwrap();
            t.replace(db_line, "path = \"/proc/gym-checkin.db\"")
        },
        &["store.path: /proc is on /proc (procfs), which holds no files"],
    );
}

#[test]
fn a_store_directory_the_user_may_not_write_is_a_configuration_problem() {
    let dir = TestDir::new("store-unwritable");
    let state = dir.path("state");
    std::fs::create_dir(&state).unwrap();
    let db = dir.path("db.sqlite").display().to_string();
    let path = config(&dir, |t| {
        t.replace(&db, &state.join("db.sqlite").display().to_string())
    });
    let mut command = as_unprivileged(&dir, &[]);
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    for subcommand in ["check-config", "run"] {
        let output = command
            .args([subcommand, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        command = as_unprivileged(&dir, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{subcommand}: {stderr}");
        assert!(
            stderr.contains(&format!("may not create files in {}", state.display())),
            "{subcommand}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_online_tells_a_refused_key_from_an_unreachable_egym() {
    let dir = TestDir::new("online");
    let fake = start_egym(vec![]).await;
    let online = |base_url: &str| {
        let path = config(&dir, |t| t.replace("https://mms.api.egym.com", base_url));
        gym_checkin()
            .args(["check-config", "--online", "--config"])
            .arg(path)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("EGYM_API_KEY")
            .output()
            .unwrap()
    };
    let output = online(&fake.base_url());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("the API key is accepted"), "{stdout}");
    let received = fake.received();
    assert_eq!(received.len(), 1, "one request: {received:?}");
    assert_eq!(received[0].lookup_rfid(), Some("0x00"));

    fake.set_api_key("a-key-egym-issued-to-another-gym");
    let output = online(&fake.base_url());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "a refused key: {stderr}");
    assert!(
        stderr.contains("refused the API key read from") && stderr.contains("HTTP 403"),
        "{stderr}"
    );

    // Nothing listens on a port just let go of.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = online(&format!("http://{closed}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach EGYM at"), "{stderr}");
    assert!(!stderr.contains("refused the API key"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["calibrate", "--reader", "desk"],
        &["status", "--jsn"],
    ] {
        let output = gym_checkin().args(args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
