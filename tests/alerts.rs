//! Alerts that can fire: the rules in `config/alerts.yml`, run by Prometheus's own
//! `promtool test rules` on series taken from scrapes of the real binary's `/metrics` (a fresh
//! service, and one that lost a tap); and the taps of a card EGYM does not know, which wait for
//! its enrolment rather than for delivery, in every place that counts what is pending.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/alerts.yml");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The labels Prometheus gives each series it scrapes from a box (the README's scrape
/// configuration's job).
const TARGET_LABELS: &str = r#"job="gym-checkin",instance="frontdesk-1:8787""#;

/// The alerts the rules file defines, in its order.
fn alert_names() -> Vec<String> {
    std::fs::read_to_string(RULES)
        .unwrap()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect()
}

/// `/metrics` of the service whose screen is on `port`.
async fn scrape(port: u16) -> String {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// A scrape as Prometheus stores it: each series, with the target's labels, and its value; and
/// `up`, 1 for a scrape that succeeded.
fn samples(text: &str) -> BTreeMap<String, String> {
    let mut samples: BTreeMap<String, String> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
                None => (series, ""),
            };
            let labels = match labels {
                "" => TARGET_LABELS.to_string(),
                labels => format!("{labels},{TARGET_LABELS}"),
            };
            (format!("{name}{{{labels}}}"), value.to_string())
        })
        .collect();
    samples.insert(format!("up{{{TARGET_LABELS}}}"), "1".into());
    samples
}

/// promtool's input series: each scrape's samples repeated for its minutes, one after the other
/// (a series missing from a scrape is missing for those minutes, as it is in Prometheus).
fn input_series(phases: &[(&BTreeMap<String, String>, usize)]) -> Vec<Value> {
    let names: BTreeSet<&String> = phases.iter().flat_map(|(s, _)| s.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let values: Vec<String> = phases
                .iter()
                .map(|(samples, minutes)| {
                    let value = samples.get(name).map_or("_", String::as_str);
                    format!("{value}x{}", minutes - 1)
                })
                .collect();
            json!({ "series": name, "values": values.join(" ") })
        })
        .collect()
}

/// Runs `tests` (promtool's unit-test cases) against the rules file; panics with promtool's
/// answer unless every case passes.
fn promtool_test_rules(dir: &TestDir, tests: Vec<Value>) {
    let file = dir.path("alerts-test.json");
    // JSON is YAML: promtool reads it as its own test format.
    let cases = json!({
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": tests,
    });
    std::fs::write(&file, serde_json::to_string_pretty(&cases).unwrap()).unwrap();
    let (ok, printed) = promtool(&["test", "rules", file.to_str().unwrap()], "");
    assert!(ok, "promtool test rules:\n{printed}\n{cases:#}");
}

/// Every alert of the rules file expected at `eval_time`: none but those in `firing`.
fn expect_alerts(eval_time: &str, firing: &[(&str, Value)]) -> Vec<Value> {
    alert_names()
        .into_iter()
        .map(|name| {
            let expected: Vec<&Value> = firing
                .iter()
                .filter(|(alert, _)| *alert == name)
                .map(|(_, alert)| alert)
                .collect();
            json!({ "eval_time": eval_time, "alertname": name, "exp_alerts": expected })
        })
        .collect()
}

#[test]
fn the_rules_pass_promtools_check_and_the_readme_points_to_them_without_repeating_them() {
    let (ok, printed) = promtool(&["check", "rules", RULES], "");
    assert!(ok, "{printed}");
    let names = alert_names();
    assert!(
        names.contains(&"GymCheckinTapLost".to_string()),
        "{names:?}"
    );
    let readme = std::fs::read_to_string(README).unwrap();
    assert!(
        readme.contains("(config/alerts.yml)"),
        "no link to the rules"
    );
    for name in &names {
        assert!(readme.contains(name), "the README does not name {name}");
    }
    // An expression written out in the README could drift from the file's.
    let rules = std::fs::read_to_string(RULES).unwrap();
    for expr in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
    {
        assert!(!readme.contains(expr), "the README repeats {expr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lost_tap_alert_fires_for_the_first_lost_tap_and_no_alert_for_a_fresh_service() {
    let dir = TestDir::new("alerts-lost");
    let mut pty = Pty::open();
    let port = free_port();
    // EGYM is out of reach throughout: delivery only retries, cheaply.
    let config = write_config_parts(
        &dir,
        "http://127.0.0.1:9",
        EGYM_LIMITS,
        "repeat-window = \"0s\"",
        "trusted-when = \"always\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        &serial_reader("desk", &pty.slave_path, "line", "debounce = \"0ms\""),
    );
    let switch = dir.path("disk-fault");
    let daemon = Daemon::start_with_disk_fault(&config, &switch);
    daemon.wait_for_event("reader_connected", LONG).await;
    daemon.wait_for_line("the screen is served", LONG).await;

    let fresh_text = scrape(port).await;
    check_metrics(&fresh_text);
    for outcome in ["recorded", "ignored", "lost"] {
        let line = format!("gym_checkin_taps_total{{reader=\"desk\",outcome=\"{outcome}\"}} 0");
        assert!(
            fresh_text.lines().any(|l| l == line),
            "{line} missing:\n{fresh_text}"
        );
    }
    let fresh = samples(&fresh_text);

    // The disk is full: 10,000 taps fill the memory buffer, then one more cannot be kept.
    std::fs::write(&switch, "enospc").unwrap();
    let held = gym_checkin::recorder::MAX_HELD;
    let taps: String = (0..held).map(|i| format!("0B{i:08X}\n")).collect();
    pty.write(taps.as_bytes());
    daemon
        .wait_for_line("cannot write to the database", LONG)
        .await;
    pty.write(b"0C000621A5\n");
    daemon.wait_for_event("tap_lost", LONG).await;
    // Scraped while the disk still fails, as Prometheus would.
    let lost_text = scrape(port).await;
    check_metrics(&lost_text);
    let lost = samples(&lost_text);
    let lost_series =
        format!(r#"gym_checkin_taps_total{{reader="desk",outcome="lost",{TARGET_LABELS}}}"#);
    assert_eq!(lost.get(&lost_series).map(String::as_str), Some("1"));

    let lost_alert = json!({
        "exp_labels": {
            "severity": "critical",
            "reader": "desk",
            "outcome": "lost",
            "job": "gym-checkin",
            "instance": "frontdesk-1:8787",
        },
        "exp_annotations": { "summary": "A tap on desk was lost: the database cannot be written" },
    });
    promtool_test_rules(
        &dir,
        vec![
            // A fresh service, scraped for an hour: nothing fires.
            json!({
                "interval": "1m",
                "input_series": input_series(&[(&fresh, 60)]),
                "alert_rule_test": ([expect_alerts("10m", &[]), expect_alerts("59m", &[])].concat()),
            }),
            // Scraped for 10 minutes before the loss and 30 after: the loss fires at once, and
            // nothing else does.
            json!({
                "interval": "1m",
                "input_series": input_series(&[(&fresh, 10), (&lost, 30)]),
                "alert_rule_test": ([
                    expect_alerts("9m", &[]),
                    expect_alerts("11m", &[("GymCheckinTapLost", lost_alert.clone())]),
                    expect_alerts("39m", &[("GymCheckinTapLost", lost_alert)]),
                ]
                .concat()),
            }),
        ],
    );
    std::fs::remove_file(&switch).unwrap();
}

/// The staff page's first data on its event stream.
async fn staff_data(port: u16) -> Value {
    let mut response = reqwest::get(format!("http://127.0.0.1:{port}/events?staff=1"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    let mut text = String::new();
    loop {
        if let Some(block) = text.split("\n\n").find(|b| b.contains("event: staff")) {
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            return serde_json::from_str(data).unwrap();
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("no staff data on the event stream")
            .unwrap()
            .expect("the event stream ended");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_cards_second_tap_waits_for_its_enrolment_and_is_no_delivery_delay() {
    let dir = TestDir::new("alerts-unknown");
    // The stand-in EGYM knows no card.
    let fake = start_egym(Vec::new()).await;
    let mut pty = Pty::open();
    let port = free_port();
    let config = write_config_parts(
        &dir,
        &fake.base_url(),
        EGYM_LIMITS,
        "repeat-window = \"0s\"",
        "trusted-when = \"always\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        &serial_reader("desk", &pty.slave_path, "line", "debounce = \"0ms\""),
    );
    let socket_path = dir.path("notify.sock");
    let socket = NotifySocket::bind(&socket_path);
    let daemon =
        Daemon::start_with_env(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    daemon.wait_for_event("reader_connected", LONG).await;
    daemon.wait_for_line("the screen is served", LONG).await;
    pty.write(b"0C000621A5\n");
    daemon.wait_for_event("unknown_tag", LONG).await;
    pty.write(b"0C000621A5\n");
    daemon.wait_for_events("tap_recorded", 2, LONG).await;
    let second_tap = Instant::now();

    // systemd's status line (sent every 10 s), the first one sent 2 s after the second tap or
    // later: by then a tap counted as pending would have an age to show.
    let aged = second_tap + Duration::from_secs(2);
    let late = poll(LONG, || {
        socket
            .all()
            .into_iter()
            .find(|(at, m)| *at >= aged && m.starts_with("STATUS="))
    })
    .await;
    let (_, line) = late.unwrap_or_else(|| panic!("no STATUS= line: {:?}", socket.all()));
    assert!(
        line.starts_with("STATUS=0 pending, 1 waiting for enrolment, readers 1/1, delivery ok"),
        "{line}"
    );

    let status = status_json(&config);
    assert_eq!(
        (
            &status["events"]["pending"],
            &status["events"]["waiting_for_enrolment"],
            &status["events"]["unknown_tag"],
            &status["oldest_pending_age_s"],
        ),
        (&json!(0), &json!(1), &json!(1), &Value::Null),
        "{status}"
    );
    let text = status_text(&config);
    for wanted in [
        "delivery: ok",
        "events: 0 pending, 1 waiting for their card's enrolment, 1 unknown tag",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }

    let metrics = scrape(port).await;
    check_metrics(&metrics);
    for wanted in [
        "gym_checkin_outbox_oldest_pending_age_seconds 0",
        "gym_checkin_outbox_waiting_for_enrolment 1",
        "gym_checkin_outbox_events{state=\"pending\"} 0",
        "gym_checkin_outbox_events{state=\"unknown_tag\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == wanted),
            "{wanted} missing:\n{metrics}"
        );
    }

    let staff = staff_data(port).await;
    let outbox = &staff["outbox"];
    assert_eq!(
        (
            &outbox["pending"],
            &outbox["waiting_for_enrolment"],
            &outbox["oldest_pending_age_s"],
            &outbox["delivery"],
        ),
        (&json!(0), &json!(1), &Value::Null, &json!("ok")),
        "{staff:#}"
    );
    assert_eq!(staff["unknown"][0]["taps"], 2, "{staff:#}");
    assert_eq!(
        staff["taps"][0]["outcome"], "waits for the card's enrolment",
        "{staff:#}"
    );
}
