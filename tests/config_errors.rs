//! Bad configurations, through the real binary: `check-config` and `run` both exit 78 and name
//! the key at fault.

mod common;

use std::process::Output;

use common::{API_KEY, TestDir, gym_checkin};

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
}
