//! The sections other than `[[readers]]`: `[egym]`, `[store]`, `[visits]`, `[clock]`,
//! `[wellpass]`, `[screen]`, `[service]` and `[log]`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use super::walk::{Problems, Section};
use super::{
    ClockConfig, Config, DEFAULT_DB_PATH, DEFAULT_SCREEN_LISTEN, EgymConfig, LogConfig,
    ScreenConfig, ServiceConfig, StoreConfig, VisitsConfig, WellpassConfig,
};
use crate::clock::TrustRule;
use crate::control::DEFAULT_SOCKET;
use crate::delivery::LateAdmission;
use crate::egym::{ApiKeySource, DEFAULT_BASE_URL, check_base_url};
use crate::reader::ReaderConfig;

/// Every section of the file, each as far as it could be read: `check-config` looks at the
/// parts that could (the readers' devices, the database's place) even when others could not.
pub(super) struct Parsed {
    pub(super) egym: Option<EgymConfig>,
    pub(super) store: Option<StoreConfig>,
    pub(super) visits: Option<VisitsConfig>,
    pub(super) clock: Option<ClockConfig>,
    pub(super) wellpass: Option<WellpassConfig>,
    pub(super) screen: Option<ScreenConfig>,
    pub(super) service: Option<ServiceConfig>,
    pub(super) log: Option<LogConfig>,
    /// The readers that could be read, each with its place in the file.
    pub(super) readers: Vec<(usize, ReaderConfig)>,
    /// Whether every reader could.
    pub(super) readers_complete: bool,
}

impl Parsed {
    /// The whole configuration, if every part of it could be read.
    pub(super) fn complete(self) -> Option<Config> {
        Some(Config {
            egym: self.egym?,
            store: self.store?,
            visits: self.visits?,
            clock: self.clock?,
            wellpass: self.wellpass?,
            screen: self.screen?,
            service: self.service?,
            log: self.log?,
            readers: self
                .readers_complete
                .then(|| self.readers.into_iter().map(|(_, r)| r).collect())?,
        })
    }
}

pub(super) fn parse_root(root: &toml::Table, problems: &mut Problems) -> Parsed {
    // The root is a table by construction; check its keys like any other section's.
    let root_value = Value::Table(root.clone());
    Section::new(
        String::new(),
        Some(&root_value),
        &[
            "egym", "store", "visits", "clock", "wellpass", "screen", "service", "log", "readers",
        ],
        problems,
    );
    let (readers, readers_complete) = super::readers::parse_readers(root.get("readers"), problems);
    Parsed {
        egym: parse_egym(root.get("egym"), problems),
        store: parse_store(root.get("store"), problems),
        visits: parse_visits(root.get("visits"), problems),
        clock: parse_clock(root.get("clock"), problems),
        wellpass: parse_wellpass(root.get("wellpass"), problems),
        screen: parse_screen(root.get("screen"), problems),
        service: parse_service(root.get("service"), problems),
        log: parse_log(root.get("log"), problems),
        readers,
        readers_complete,
    }
}

fn parse_log(value: Option<&Value>, problems: &mut Problems) -> Option<LogConfig> {
    let s = Section::new("log".into(), value, &["full-tags"], problems)?;
    let full_tags = s.boolean("full-tags", false, problems);
    Some(LogConfig { full_tags })
}

/// The shortest and longest retention of events: shorter, the staff and `status` could not
/// look into a problem the same day; longer than a year, no purpose of a check-in box needs it.
const KEEP_AT_LEAST: Duration = Duration::from_secs(3600);
const KEEP_AT_MOST: Duration = Duration::from_secs(366 * 86_400);

/// A retention, checked against [`KEEP_AT_LEAST`] and [`KEEP_AT_MOST`].
fn retention(s: &Section<'_>, key: &str, default: Duration, problems: &mut Problems) -> Duration {
    let keep = s.duration(key, default, problems);
    if keep < KEEP_AT_LEAST {
        problems.add(
            &s.key(key),
            "must be at least 1h: shorter, staff could not look into a problem the same day \
             (events are pruned every hour)",
        );
    } else if keep > KEEP_AT_MOST {
        problems.add(
            &s.key(key),
            "must be at most 366d: personal data is kept no longer than its purpose needs, \
             and no purpose of this box needs more than a year",
        );
    }
    keep
}

fn parse_screen(value: Option<&Value>, problems: &mut Problems) -> Option<ScreenConfig> {
    let s = Section::new(
        "screen".into(),
        value,
        &[
            "listen",
            "token-file",
            "staff-history",
            "show-refusal-reasons",
        ],
        problems,
    )?;
    let staff_history = s.duration("staff-history", Duration::from_secs(24 * 3600), problems);
    if !(Duration::from_secs(60)..=Duration::from_secs(7 * 86_400)).contains(&staff_history) {
        problems.add(
            &s.key("staff-history"),
            "must be between 1m and 7d: the staff page is for what happens at the desk now",
        );
    }
    let show_refusal_reasons = s.boolean("show-refusal-reasons", false, problems);
    let text = s
        .string("listen", problems)
        .unwrap_or(DEFAULT_SCREEN_LISTEN);
    let listen = if text.is_empty() {
        None
    } else {
        match text.parse::<std::net::SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                problems.add(
                    &s.key("listen"),
                    format!(
                        "{text:?} is not an address and port, expected e.g. \"127.0.0.1:8787\", \
                         \"0.0.0.0:8787\" or \"\" (off)"
                    ),
                );
                None
            }
        }
    };
    let token_file = s.string("token-file", problems).map(PathBuf::from);
    if let Some(path) = &token_file
        && path.is_relative()
    {
        problems.add(&s.key("token-file"), "must be an absolute path");
    }
    if let Some(address) = listen
        && !address.ip().is_loopback()
        && token_file.is_none()
    {
        problems.add(
            &s.key("listen"),
            format!(
                "{address} is reachable from other machines: set [screen] token-file to a file \
                 holding a token, which every page then needs from other machines (and the \
                 staff page and /metrics from this one too); or listen on 127.0.0.1"
            ),
        );
    }
    Some(ScreenConfig {
        listen,
        token_file,
        staff_history,
        show_refusal_reasons,
    })
}

fn parse_service(value: Option<&Value>, problems: &mut Problems) -> Option<ServiceConfig> {
    let s = Section::new("service".into(), value, &["socket"], problems)?;
    let socket = match s.string("socket", problems).unwrap_or(DEFAULT_SOCKET) {
        "" => None,
        text => {
            let path = PathBuf::from(text);
            if path.is_relative() {
                problems.add(
                    &s.key("socket"),
                    format!("{text:?} must be an absolute path (or \"\", off)"),
                );
            }
            Some(path)
        }
    };
    Some(ServiceConfig { socket })
}

fn parse_wellpass(value: Option<&Value>, problems: &mut Problems) -> Option<WellpassConfig> {
    let s = Section::new(
        "wellpass".into(),
        value,
        &["admission-window", "late"],
        problems,
    )?;
    let admission_window = s.duration("admission-window", Duration::from_secs(15 * 60), problems);
    let late = s
        .choice(
            "late",
            &[
                ("admit", LateAdmission::Admit),
                ("skip", LateAdmission::Skip),
            ],
            problems,
        )
        .unwrap_or(LateAdmission::Admit);
    Some(WellpassConfig {
        admission_window,
        late,
    })
}

fn parse_clock(value: Option<&Value>, problems: &mut Problems) -> Option<ClockConfig> {
    let s = Section::new("clock".into(), value, &["trusted-when"], problems)?;
    let trusted_when = match s.string("trusted-when", problems) {
        None => TrustRule::Synchronized,
        Some(text) => match TrustRule::parse(text) {
            Ok(rule) => rule,
            Err(e) => {
                problems.add(&s.key("trusted-when"), e);
                TrustRule::Synchronized
            }
        },
    };
    Some(ClockConfig { trusted_when })
}

fn parse_egym(value: Option<&Value>, problems: &mut Problems) -> Option<EgymConfig> {
    const KEYS: &[&str] = &[
        "base-url",
        "api-key-file",
        "request-timeout",
        "rate-limit-per-second",
        "rate-limit-burst",
        "account-cache-ttl",
        "unknown-tag-retry-window",
    ];
    let s = Section::new("egym".into(), value, KEYS, problems)?;
    let base_url = s.string("base-url", problems).unwrap_or(DEFAULT_BASE_URL);
    let base_url = check_base_url(base_url)
        .map_err(|e| problems.add(&s.key("base-url"), e))
        .ok();
    let api_key_file = s.string("api-key-file", problems).map(PathBuf::from);
    if let Some(path) = &api_key_file
        && path.is_relative()
    {
        problems.add(&s.key("api-key-file"), "must be an absolute path");
    }
    let request_timeout = s.duration("request-timeout", Duration::from_secs(10), problems);
    if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&request_timeout) {
        problems.add(&s.key("request-timeout"), "must be between 1s and 5m");
    }
    let rate_limit_per_second = s
        .positive_number("rate-limit-per-second", problems)
        .unwrap_or(6.0);
    let rate_limit_burst = s
        .integer("rate-limit-burst", 1..=10_000, problems)
        .unwrap_or(60) as u32;
    let account_cache_ttl = s.duration(
        "account-cache-ttl",
        Duration::from_secs(12 * 3600),
        problems,
    );
    // A cached lookup is deleted once this old: it ties a card to a member.
    if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&account_cache_ttl) {
        problems.add(
            &s.key("account-cache-ttl"),
            "must be between 1m and 30d: a cached lookup ties a card to a member, and is \
             deleted once it is this old",
        );
    }
    let unknown_tag_retry_window = s.duration(
        "unknown-tag-retry-window",
        Duration::from_secs(24 * 3600),
        problems,
    );
    Some(EgymConfig {
        base_url: base_url?,
        api_key: ApiKeySource::choose(api_key_file),
        request_timeout,
        rate_limit_per_second,
        rate_limit_burst,
        account_cache_ttl,
        unknown_tag_retry_window,
    })
}

fn parse_store(value: Option<&Value>, problems: &mut Problems) -> Option<StoreConfig> {
    let s = Section::new(
        "store".into(),
        value,
        &["path", "keep-delivered", "keep-rejected", "keep-unknown"],
        problems,
    )?;
    let path = PathBuf::from(s.string("path", problems).unwrap_or(DEFAULT_DB_PATH));
    if path.as_os_str().is_empty() {
        problems.add(&s.key("path"), "must not be empty");
    }
    const DAY: u64 = 86_400;
    let keep_delivered = retention(
        &s,
        "keep-delivered",
        Duration::from_secs(30 * DAY),
        problems,
    );
    let keep_rejected = retention(&s, "keep-rejected", Duration::from_secs(30 * DAY), problems);
    let keep_unknown = retention(&s, "keep-unknown", Duration::from_secs(7 * DAY), problems);
    Some(StoreConfig {
        path,
        keep_delivered,
        keep_rejected,
        keep_unknown,
    })
}

fn parse_visits(value: Option<&Value>, problems: &mut Problems) -> Option<VisitsConfig> {
    const KEYS: &[&str] = &[
        "repeat-window",
        "auto-checkout-after",
        "closing-time",
        "keep-closed",
    ];
    let s = Section::new("visits".into(), value, KEYS, problems)?;
    let repeat_window = s.duration("repeat-window", Duration::from_secs(120), problems);
    let keep_closed = s.duration("keep-closed", Duration::from_secs(3600), problems);
    if keep_closed < repeat_window {
        problems.add(
            &s.key("keep-closed"),
            format!(
                "must be at least visits.repeat-window ({}s): a tap within the repeat window is \
                 told from a new one by the visit's last tap",
                repeat_window.as_secs()
            ),
        );
    } else if keep_closed > Duration::from_secs(30 * 86_400) {
        problems.add(
            &s.key("keep-closed"),
            "must be at most 30d: the state of a visit that is over decides nothing once the \
             repeat window has passed",
        );
    }
    let auto_checkout_after = s.optional_duration("auto-checkout-after", problems);
    if auto_checkout_after.is_some_and(|d| d < Duration::from_secs(1)) {
        problems.add(&s.key("auto-checkout-after"), "must be at least 1s");
    }
    let closing_time = s.string("closing-time", problems).and_then(|text| {
        let parsed = parse_time_of_day(text);
        if parsed.is_none() {
            problems.add(
                &s.key("closing-time"),
                format!("invalid time {text:?}, expected local time as HH:MM (e.g. \"23:30\")"),
            );
        }
        parsed
    });
    Some(VisitsConfig {
        repeat_window,
        auto_checkout_after,
        closing_time,
        keep_closed,
    })
}

fn parse_time_of_day(text: &str) -> Option<(u8, u8)> {
    let (hour, minute) = text.split_once(':')?;
    if hour.len() != 2 || minute.len() != 2 {
        return None;
    }
    let hour: u8 = hour.parse().ok()?;
    let minute: u8 = minute.parse().ok()?;
    (hour < 24 && minute < 60).then_some((hour, minute))
}
