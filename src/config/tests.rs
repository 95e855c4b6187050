use super::devices::device_access;
use super::*;
use crate::reader::Driver;
use crate::tag::TagFormat;
use crate::visit::Direction;

const MINIMAL: &str = r#"
    [egym]
    base-url = "https://mms.api.egym.com"
    [[readers]]
    name = "entrance"
    driver = "serial"
    path = "/dev/ttyUSB0"
    protocol = "em4100"
"#;

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.egym.request_timeout, Duration::from_secs(10));
    assert_eq!(config.egym.rate_limit_per_second, 6.0);
    assert_eq!(config.egym.rate_limit_burst, 60);
    assert_eq!(config.store.path, PathBuf::from(DEFAULT_DB_PATH));
    assert_eq!(config.visits.repeat_window, Duration::from_secs(120));
    assert_eq!(config.clock.trusted_when, TrustRule::Synchronized);
    assert_eq!(config.wellpass.admission_window, Duration::from_secs(900));
    assert_eq!(config.wellpass.late, LateAdmission::Admit);
    assert_eq!(
        config.screen.listen,
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8787)))
    );
    let reader = &config.readers[0];
    assert_eq!(reader.direction, Direction::Toggle);
    assert_eq!(reader.debounce, Duration::from_millis(1500));
    assert!(matches!(reader.driver, Driver::Serial { baud: 9600, .. }));
}

/// The example configuration says each key it sets is at its default unless the line ends in
/// `# example`: taking every other key out (but the ones with no default) must change nothing.
#[test]
fn the_example_configuration_shows_the_defaults_it_says_it_shows() {
    const EXAMPLE: &str = include_str!("../../config/gym-checkin.example.toml");
    const NO_DEFAULT: &[&str] = &["name", "driver", "path", "protocol"];
    let mut removed = Vec::new();
    let defaults_only: String = EXAMPLE
        .lines()
        .filter(|line| {
            let Some((key, _)) = line.split_once(" = ") else {
                return true;
            };
            let key = key.trim();
            if line.starts_with('#') || line.ends_with("# example") || NO_DEFAULT.contains(&key) {
                return true;
            }
            removed.push(key.to_string());
            false
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        removed.len() > 20,
        "the example sets its defaults: {removed:?}"
    );
    let example = Config::parse(EXAMPLE).unwrap();
    let defaults = Config::parse(&defaults_only).unwrap();
    assert_eq!(
        format!("{example:?}"),
        format!("{defaults:?}"),
        "a key of the example is not at its default; mark it `# example`: {removed:?}"
    );
}

fn check_problems(text: &str, expected: &[&str]) {
    let problems = Config::parse(text).expect_err("config should be refused");
    for wanted in expected {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no problem mentions {wanted:?}; got {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    check_problems(
        r#"
        [egym]
        base-url = "http://mms.api.egym.com"
        request-timout = "10s"
        rate-limit-burst = 0
        [store]
        keep-delivered = "30 days"
        [visits]
        closing-time = "25:00"
        [[readers]]
        name = "entrance"
        driver = "serial"
        path = "/dev/ttyUSB0"
        protocol = "em4100"
        [[readers]]
        name = "exit"
        driver = "serial"
        path = "/dev/ttyUSB1"
        protocol = "em410"
        direction = "sideways"
        "#,
        &[
            "egym.base-url: \"http://mms.api.egym.com\" uses plain http",
            "egym.request-timout: unknown key, expected one of: base-url, api-key-file",
            "egym.rate-limit-burst: 0 is out of range",
            "store.keep-delivered: invalid duration \"30 days\"",
            "visits.closing-time: invalid time \"25:00\"",
            "readers[1].protocol: unknown value \"em410\", expected one of: em4100, line, pn532, twn4",
            "readers[1].direction: unknown value \"sideways\", expected one of: in, out, toggle",
        ],
    );
}

#[test]
fn every_kind_of_personal_data_has_a_retention_with_a_default() {
    let config = Config::parse(MINIMAL).unwrap();
    let day = Duration::from_secs(86_400);
    assert_eq!(config.store.keep_delivered, 30 * day);
    assert_eq!(config.store.keep_rejected, 30 * day);
    assert_eq!(config.store.keep_unknown, 7 * day);
    assert_eq!(
        config.egym.account_cache_ttl,
        Duration::from_secs(12 * 3600)
    );
    assert_eq!(config.visits.keep_closed, Duration::from_secs(3600));
    assert_eq!(config.screen.staff_history, day);
    assert!(!config.log.full_tags);
}

#[test]
fn a_retention_out_of_its_bounds_says_why() {
    check_problems(
        &format!(
            r#"
            [store]
            keep-delivered = "30m"
            keep-rejected = "400d"
            keep-unknown = "a week"
            [egym]
            account-cache-ttl = "90d"
            [visits]
            repeat-window = "5m"
            keep-closed = "2m"
            [screen]
            staff-history = "30d"
            [log]
            full-tags = "yes"
            {}"#,
            MINIMAL
                .split("[[readers]]")
                .nth(1)
                .map(|r| format!("[[readers]]{r}"))
                .unwrap()
        ),
        &[
            "store.keep-delivered: must be at least 1h",
            "store.keep-rejected: must be at most 366d",
            "store.keep-unknown: invalid duration \"a week\"",
            "egym.account-cache-ttl: must be between 1m and 30d",
            "visits.keep-closed: must be at least visits.repeat-window (300s)",
            "screen.staff-history: must be between 1m and 7d",
            "log.full-tags: expected true or false, found a string",
        ],
    );
}

#[test]
fn a_base_url_that_cannot_take_a_path_is_a_config_problem() {
    check_problems(
        r#"
        [egym]
        base-url = "mailto:egym@example.com"
        [[readers]]
        name = "desk"
        driver = "stdin"
        "#,
        &["egym.base-url: \"mailto:egym@example.com\" cannot take a path"],
    );
}

#[test]
fn reader_problems() {
    check_problems(
        r#"
        [[readers]]
        name = "a"
        driver = "stdin"
        baud = 9600
        [[readers]]
        name = "a"
        driver = "serial"
        path = "dev/ttyUSB0"
        protocol = "em4100"
        id-format = "decimal"
        [[readers]]
        driver = "serial"
        protocol = "line"
        "#,
        &[
            "readers[0].baud: applies only to driver = \"serial\"",
            "readers[1].name: \"a\" is used by another reader",
            "readers[1].path: must be an absolute path",
            "readers[1].id-format: applies only to text readers",
            "readers[2].name: missing",
            "readers[2].path: missing",
        ],
    );
    check_problems("", &["readers: missing"]);
    check_problems("readers = 3", &["readers: expected an array of tables"]);
    check_problems("[egym\n", &["not valid TOML"]);
}

#[test]
fn keyboard_devices_must_be_input_nodes_the_service_can_read() {
    let input = Some(105);
    assert_eq!(device_access(Some(13), 0o20640, 0, 105, input), Ok(()));
    assert_eq!(device_access(Some(13), 0o20644, 0, 0, input), Ok(()));
    let not_input = device_access(Some(188), 0o20660, 0, 20, input).unwrap_err();
    assert!(not_input.contains("not an input device"), "{not_input}");
    assert!(
        device_access(None, 0o100644, 0, 0, input)
            .unwrap_err()
            .contains("not an input device")
    );
    let unreadable = device_access(Some(13), 0o20600, 0, 0, input).unwrap_err();
    assert!(
        unreadable.contains("cannot open it") && unreadable.contains("mode 600"),
        "{unreadable}"
    );
    // The group may not read it, or it is not the input group.
    assert!(device_access(Some(13), 0o20600, 0, 105, input).is_err());
    assert!(device_access(Some(13), 0o20640, 0, 7, input).is_err());
}

#[test]
fn readers_the_host_asks_and_pcsc_readers() {
    let config = Config::parse(
        r#"
        [[readers]]
        name = "board"
        driver = "serial"
        path = "/dev/ttyAMA0"
        protocol = "pn532"
        [[readers]]
        name = "twn4"
        driver = "serial"
        path = "/dev/ttyACM0"
        protocol = "twn4"
        baud = 9600
        "#,
    )
    .unwrap();
    let board = &config.readers[0];
    // A PN532 talks at 115200 and reads MIFARE UIDs, unless told otherwise.
    assert!(matches!(board.driver, Driver::Serial { baud: 115_200, .. }));
    assert_eq!(board.egym_tag_format, Some(TagFormat::Mifare));
    let twn4 = &config.readers[1];
    assert!(matches!(twn4.driver, Driver::Serial { baud: 9600, .. }));
    assert_eq!(twn4.egym_tag_format, None);

    let pcsc = "[[readers]]\nname = \"desk\"\ndriver = \"pcsc\"\nreader = \"ACR122U\"\n";
    if cfg!(feature = "pcsc") {
        let config = Config::parse(pcsc).unwrap();
        let reader = &config.readers[0];
        assert!(matches!(&reader.driver, Driver::Pcsc { reader: Some(r) } if r == "ACR122U"));
        assert_eq!(reader.egym_tag_format, Some(TagFormat::Mifare));
    } else {
        check_problems(
            pcsc,
            &["readers[0].driver: this build of gym-checkin has no PC/SC"],
        );
    }
    let mut expected = vec![
        "readers[0].path: applies only to driver = \"serial\"",
        "readers[0].id-format: applies only to text readers",
        "readers[0].reader: empty",
        "readers[1].reader: applies only to driver = \"pcsc\"",
        "readers[1].id-format: applies only to text readers",
    ];
    if !cfg!(feature = "pcsc") {
        expected.push("readers[0].driver: this build of gym-checkin has no PC/SC");
    }
    check_problems(
        r#"
        [[readers]]
        name = "desk"
        driver = "pcsc"
        path = "/dev/ttyUSB0"
        reader = ""
        id-format = "decimal"
        [[readers]]
        name = "board"
        driver = "serial"
        path = "/dev/ttyAMA0"
        protocol = "pn532"
        reader = "ACR122U"
        id-format = "decimal-5-5"
        "#,
        &expected,
    );
}

#[test]
fn keyboard_readers() {
    let config = Config::parse(
        r#"
        [[readers]]
        name = "desk"
        driver = "keyboard"
        path = "/dev/input/by-id/usb-reader-event-kbd"
        id-format = "decimal"
        byte-order = "reversed"
        "#,
    )
    .unwrap();
    assert!(
        matches!(&config.readers[0].driver, Driver::Keyboard { path } if path.ends_with("usb-reader-event-kbd"))
    );
    check_problems(
        "[[readers]]\nname = \"desk\"\ndriver = \"keyboard\"\nbaud = 9600\n",
        &[
            "readers[0].baud: applies only to driver = \"serial\"",
            "readers[0].path: missing",
        ],
    );
}

#[test]
fn durations() {
    let cases = [
        ("1500ms", Some(1_500)),
        ("90s", Some(90_000)),
        ("2m", Some(120_000)),
        ("4h", Some(14_400_000)),
        ("30d", Some(2_592_000_000)),
        ("0s", Some(0)),
        ("90", None),
        ("s", None),
        ("1.5h", None),
        ("2 m", None),
        ("-1s", None),
        ("99999999999999999999d", None),
    ];
    for (text, expected) in cases {
        let got = parse_duration(text).map(|d| d.as_millis() as u64);
        assert_eq!(got, expected, "{text:?}");
    }
}
