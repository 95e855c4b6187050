//! The configuration file: schema, loading, and validation with key paths.
//!
//! The file is read into a TOML tree and then walked key by key, so that every problem is found
//! in one pass, not just the first: an installer fixing a config sees the whole list at once,
//! each line naming the key (`readers[1].protocol`) and, for a choice, the accepted values.
//! Keys are kebab-case; unknown keys are errors; durations are strings such as `"90s"`.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use toml::Value;

use crate::clock::TrustRule;
use crate::delivery::LateAdmission;
use crate::reader::codec::{self, PROTOCOLS, Protocol};
use crate::tag::{ByteOrder, IdBytes, IdFormat, Normalisation};
use crate::visit::Direction;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/gym-checkin/gym-checkin.toml";
pub const DEFAULT_BASE_URL: &str = "https://mms.api.egym.com";
pub const DEFAULT_DB_PATH: &str = "/var/lib/gym-checkin/gym-checkin.db";
/// The systemd credential name (`LoadCredential=egym-api-key:...`).
pub const API_KEY_CREDENTIAL: &str = "egym-api-key";
pub const API_KEY_ENV: &str = "EGYM_API_KEY";

#[derive(Clone, Debug)]
pub struct Config {
    pub egym: EgymConfig,
    pub store: StoreConfig,
    pub visits: VisitsConfig,
    pub clock: ClockConfig,
    pub wellpass: WellpassConfig,
    pub screen: ScreenConfig,
    pub readers: Vec<ReaderConfig>,
}

#[derive(Clone, Debug)]
pub struct ScreenConfig {
    /// Where the screen is served; `None`: off.
    pub listen: Option<std::net::SocketAddr>,
    /// The token the staff page and `/metrics` need (required off loopback).
    pub token_file: Option<PathBuf>,
}

/// The screen's default address.
pub const DEFAULT_SCREEN_LISTEN: &str = "127.0.0.1:8787";

#[derive(Clone, Debug)]
pub struct WellpassConfig {
    /// A Wellpass check-in this soon after its tap is admitted live.
    pub admission_window: Duration,
    pub late: LateAdmission,
}

#[derive(Clone, Debug)]
pub struct ClockConfig {
    pub trusted_when: TrustRule,
}

#[derive(Clone, Debug)]
pub struct EgymConfig {
    pub base_url: Url,
    pub api_key: ApiKeySource,
    pub request_timeout: Duration,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: u32,
    pub account_cache_ttl: Duration,
    pub unknown_tag_retry_window: Duration,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub keep_delivered: Duration,
}

#[derive(Clone, Debug)]
pub struct VisitsConfig {
    pub repeat_window: Duration,
    pub auto_checkout_after: Option<Duration>,
    /// Local time of day as (hour, minute).
    pub closing_time: Option<(u8, u8)>,
}

#[derive(Clone, Debug)]
pub struct ReaderConfig {
    pub name: String,
    pub driver: Driver,
    pub direction: Direction,
    pub debounce: Duration,
    pub id_format: IdFormat,
    pub normalisation: Normalisation,
    pub egym_tag_format: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Driver {
    Serial {
        path: PathBuf,
        baud: u32,
        protocol: &'static Protocol,
    },
    /// A keyboard-wedge reader's evdev node.
    Keyboard {
        path: PathBuf,
    },
    /// A PC/SC reader through pcscd: the first whose name holds `reader`, or the first found.
    Pcsc {
        reader: Option<String>,
    },
    Stdin,
}

/// Where the API key comes from. The key is read when needed (at start and when delivery is
/// paused for a refused key), so a corrected key file takes effect without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `egym.api-key-file`.
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/egym-api-key`, as systemd's `LoadCredential=` provides it.
    Credential(PathBuf),
    /// The `EGYM_API_KEY` environment variable.
    Env,
    /// Given by the program itself (the demo's stand-in key).
    Literal(ApiKey),
}

/// The API key. Its `Debug` shows nothing of it, so it cannot leak through a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        ApiKey(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKeySource {
    /// Picks the source: the configured file, else the systemd credential, else the environment.
    fn choose(api_key_file: Option<PathBuf>) -> ApiKeySource {
        if let Some(path) = api_key_file {
            return ApiKeySource::File(path);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(API_KEY_CREDENTIAL);
            if path.exists() {
                return ApiKeySource::Credential(path);
            }
        }
        ApiKeySource::Env
    }

    /// Reads the key. The error says where it looked, never what it found.
    pub fn read(&self) -> Result<ApiKey, String> {
        let (key, origin) = match self {
            ApiKeySource::Literal(key) => return Ok(key.clone()),
            ApiKeySource::File(path) | ApiKeySource::Credential(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
                (text, path.display().to_string())
            }
            ApiKeySource::Env => match std::env::var(API_KEY_ENV) {
                Ok(key) => (key, API_KEY_ENV.to_string()),
                Err(_) => {
                    return Err(format!(
                        "no API key: set egym.api-key-file, or give the systemd credential \
                         {API_KEY_CREDENTIAL} (LoadCredential=), or set {API_KEY_ENV}"
                    ));
                }
            },
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("the API key in {origin} is empty"));
        }
        if key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!(
                "the API key in {origin} holds spaces or control characters; it must be one line"
            ));
        }
        Ok(ApiKey(key.to_string()))
    }
}

/// Every problem found in a configuration, one per line, each starting with its key path.
#[derive(Debug)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |problem: String| ConfigErrors {
            path: path.to_path_buf(),
            problems: vec![problem],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the configuration file: {e}")))?;
        Config::parse(&text).map_err(|problems| ConfigErrors {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Validates configuration text; on failure, returns every problem found.
    pub fn parse(text: &str) -> Result<Config, Vec<String>> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![format!("not valid TOML: {}", e.to_string().trim_end())]
        })?;
        let mut problems = Problems::default();
        let config = parse_root(&root, &mut problems);
        match config {
            Some(config) if problems.0.is_empty() => Ok(config),
            _ => Err(problems.0),
        }
    }

    /// Reads the screen's token, if one is configured; the problem names the key.
    pub fn check_screen_token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.screen.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("screen.token-file: cannot read {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "screen.token-file: the token in {} must be one line of 16 characters or more, \
                 e.g. from `systemd-id128 new`",
                path.display()
            ));
        }
        Ok(Some(token.to_string()))
    }

    /// Checks that the API key can be read; the problem names the key that configures it.
    pub fn check_api_key(&self) -> Result<ApiKey, String> {
        self.egym
            .api_key
            .read()
            .map_err(|e| format!("egym.api-key-file: {e}"))
    }
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: &str, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

/// One TOML table being read: knows its path and its allowed keys.
struct Section<'t> {
    path: String,
    table: &'t toml::Table,
}

impl<'t> Section<'t> {
    /// `value` at `path` as a table whose keys must all be in `known`.
    fn new(
        path: String,
        value: Option<&'t Value>,
        known: &[&str],
        problems: &mut Problems,
    ) -> Option<Section<'t>> {
        static EMPTY: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
        let table = match value {
            None => EMPTY.get_or_init(toml::Table::new),
            Some(Value::Table(table)) => table,
            Some(other) => {
                problems.add(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                );
                return None;
            }
        };
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let key_path = join(&path, key);
                problems.add(
                    &key_path,
                    format!("unknown key, expected one of: {}", known.join(", ")),
                );
            }
        }
        Some(Section { path, table })
    }

    fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn string(&self, key: &str, problems: &mut Problems) -> Option<&'t str> {
        match self.table.get(key)? {
            Value::String(s) => Some(s),
            other => {
                problems.add(
                    &self.key(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn required_string(&self, key: &str, problems: &mut Problems) -> Option<&'t str> {
        if !self.table.contains_key(key) {
            problems.add(&self.key(key), "missing");
            return None;
        }
        self.string(key, problems)
    }

    fn duration(&self, key: &str, default: Duration, problems: &mut Problems) -> Duration {
        self.optional_duration(key, problems).unwrap_or(default)
    }

    fn optional_duration(&self, key: &str, problems: &mut Problems) -> Option<Duration> {
        let text = self.string(key, problems)?;
        match parse_duration(text) {
            Some(d) => Some(d),
            None => {
                problems.add(
                    &self.key(key),
                    format!(
                        "invalid duration {text:?}, expected a whole number followed by one of \
                         ms, s, m, h, d (e.g. \"90s\", \"2m\", \"4h\")"
                    ),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        problems: &mut Problems,
    ) -> Option<T> {
        let text = self.string(key, problems)?;
        match choices.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Some(*value),
            None => {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                problems.add(
                    &self.key(key),
                    format!(
                        "unknown value {text:?}, expected one of: {}",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn integer(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        problems: &mut Problems,
    ) -> Option<i64> {
        match self.table.get(key)? {
            Value::Integer(n) if range.contains(n) => Some(*n),
            Value::Integer(n) => {
                problems.add(
                    &self.key(key),
                    format!(
                        "{n} is out of range, expected {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            other => {
                problems.add(
                    &self.key(key),
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn positive_number(&self, key: &str, problems: &mut Problems) -> Option<f64> {
        let value = match self.table.get(key)? {
            Value::Integer(n) => *n as f64,
            Value::Float(x) => *x,
            other => {
                problems.add(
                    &self.key(key),
                    format!("expected a number, found {}", type_name(other)),
                );
                return None;
            }
        };
        if !(value > 0.0 && value <= 10_000.0) {
            problems.add(
                &self.key(key),
                format!("{value} is out of range, expected more than 0, at most 10000"),
            );
            return None;
        }
        Some(value)
    }
}

/// Choices for [`Section::choice`] from an enum's values and their names.
fn named<T: Copy>(values: &[T], name: impl Fn(T) -> &'static str) -> Vec<(&'static str, T)> {
    values.iter().map(|v| (name(*v), *v)).collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Parses `"1500ms"`, `"90s"`, `"2m"`, `"4h"`, `"30d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(unit_ms).map(Duration::from_millis)
}

fn parse_root(root: &toml::Table, problems: &mut Problems) -> Option<Config> {
    // The root is a table by construction; check its keys like any other section's.
    let root_value = Value::Table(root.clone());
    Section::new(
        String::new(),
        Some(&root_value),
        &[
            "egym", "store", "visits", "clock", "wellpass", "screen", "readers",
        ],
        problems,
    )?;
    let egym = parse_egym(root.get("egym"), problems);
    let store = parse_store(root.get("store"), problems);
    let visits = parse_visits(root.get("visits"), problems);
    let clock = parse_clock(root.get("clock"), problems);
    let wellpass = parse_wellpass(root.get("wellpass"), problems);
    let screen = parse_screen(root.get("screen"), problems);
    let readers = parse_readers(root.get("readers"), problems);
    Some(Config {
        egym: egym?,
        store: store?,
        visits: visits?,
        clock: clock?,
        wellpass: wellpass?,
        screen: screen?,
        readers: readers?,
    })
}

fn parse_screen(value: Option<&Value>, problems: &mut Problems) -> Option<ScreenConfig> {
    let s = Section::new("screen".into(), value, &["listen", "token-file"], problems)?;
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
                 holding a token, which the staff page and /metrics then need (the member screen \
                 stays open); or listen on 127.0.0.1"
            ),
        );
    }
    Some(ScreenConfig { listen, token_file })
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

/// EGYM is reached over https only; plain http is allowed for a stand-in on this machine.
fn check_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if url.cannot_be_a_base() {
        return Err(format!(
            "{text:?} cannot take a path, expected e.g. \"https://mms.api.egym.com\""
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{text:?} uses plain http; EGYM must be reached over https (http is accepted only \
             for loopback hosts such as 127.0.0.1 or localhost)"
        )),
        other => Err(format!(
            "{text:?}: unsupported scheme {other:?}, expected https"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn parse_store(value: Option<&Value>, problems: &mut Problems) -> Option<StoreConfig> {
    let s = Section::new("store".into(), value, &["path", "keep-delivered"], problems)?;
    let path = PathBuf::from(s.string("path", problems).unwrap_or(DEFAULT_DB_PATH));
    if path.as_os_str().is_empty() {
        problems.add(&s.key("path"), "must not be empty");
    }
    let keep_delivered = s.duration("keep-delivered", Duration::from_secs(30 * 86_400), problems);
    Some(StoreConfig {
        path,
        keep_delivered,
    })
}

fn parse_visits(value: Option<&Value>, problems: &mut Problems) -> Option<VisitsConfig> {
    const KEYS: &[&str] = &["repeat-window", "auto-checkout-after", "closing-time"];
    let s = Section::new("visits".into(), value, KEYS, problems)?;
    let repeat_window = s.duration("repeat-window", Duration::from_secs(120), problems);
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

fn parse_readers(value: Option<&Value>, problems: &mut Problems) -> Option<Vec<ReaderConfig>> {
    let items = match value {
        None => {
            problems.add(
                "readers",
                "missing: configure at least one [[readers]] entry",
            );
            return None;
        }
        Some(Value::Array(items)) if items.is_empty() => {
            problems.add("readers", "empty: configure at least one [[readers]] entry");
            return None;
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.add(
                "readers",
                format!(
                    "expected an array of tables ([[readers]]), found {}",
                    type_name(other)
                ),
            );
            return None;
        }
    };
    let mut readers = Vec::new();
    let mut names = HashSet::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        match parse_reader(i, item, problems) {
            Some(reader) => {
                if !names.insert(reader.name.clone()) {
                    problems.add(
                        &format!("readers[{i}].name"),
                        format!("{:?} is used by another reader", reader.name),
                    );
                }
                readers.push(reader);
            }
            None => complete = false,
        }
    }
    let stdin_readers = readers
        .iter()
        .filter(|r| matches!(r.driver, Driver::Stdin))
        .count();
    if stdin_readers > 1 {
        problems.add("readers", "at most one reader can use driver = \"stdin\"");
    }
    complete.then_some(readers)
}

const SERIAL_ONLY: &[&str] = &["path", "baud", "protocol"];

impl Config {
    /// Problems with the readers' devices as they are now, for `check-config`: a keyboard
    /// reader's path that is not an input event node, or that the service (user `gym-checkin`,
    /// groups `dialout` and `input`) could not open. A device not plugged in is no problem: the
    /// service waits for it.
    pub fn check_devices(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, reader) in self.readers.iter().enumerate() {
            if let Driver::Keyboard { path } = &reader.driver
                && let Ok(meta) = std::fs::metadata(path)
                && let Err(problem) = input_device_access(&meta, group_id("input"))
            {
                problems.push(format!("readers[{i}].path: {}: {problem}", path.display()));
            }
        }
        problems
    }
}

/// The major device number of Linux input devices (`/dev/input/event*`).
const INPUT_MAJOR: u32 = 13;

/// Whether a keyboard reader's device is an input event node the service's group `input`
/// (gid `input_gid`) may read.
fn input_device_access(meta: &std::fs::Metadata, input_gid: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let major = meta
        .file_type()
        .is_char_device()
        .then(|| libc::major(meta.rdev()));
    device_access(major, meta.mode(), meta.uid(), meta.gid(), input_gid)
}

/// [`input_device_access`] on the numbers: the device's major number (`None`: not a character
/// device), mode, owner and group.
fn device_access(
    major: Option<u32>,
    mode: u32,
    uid: u32,
    gid: u32,
    input_gid: Option<u32>,
) -> Result<(), String> {
    if major != Some(INPUT_MAJOR) {
        return Err(
            "not an input device; a keyboard-wedge reader is read from its event node, \
                    e.g. /dev/input/by-id/usb-...-event-kbd (see `ls -l /dev/input/by-id/`)"
                .into(),
        );
    }
    let group_reads = input_gid == Some(gid) && mode & 0o040 != 0;
    if group_reads || mode & 0o004 != 0 {
        return Ok(());
    }
    Err(format!(
        "the service cannot open it: it belongs to uid {} gid {} with mode {:o}, and the service \
         reads input devices through the group `input`. Give the device to that group with a udev \
         rule (GROUP=\"input\", MODE=\"0640\"; see 99-gym-checkin.rules.example)",
        uid,
        gid,
        mode & 0o7777
    ))
}

/// The id of a group, by name.
fn group_id(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated name and returns a pointer to static storage or
    // null; the gid is copied out at once.
    unsafe {
        let group = libc::getgrnam(name.as_ptr());
        (!group.is_null()).then(|| (*group).gr_gid)
    }
}

fn parse_reader(i: usize, value: &Value, problems: &mut Problems) -> Option<ReaderConfig> {
    const KEYS: &[&str] = &[
        "name",
        "driver",
        "path",
        "baud",
        "protocol",
        "direction",
        "debounce",
        "id-format",
        "id-bytes",
        "byte-order",
        "egym-tag-format",
        "reader",
    ];
    let s = Section::new(format!("readers[{i}]"), Some(value), KEYS, problems)?;
    let name = s.required_string("name", problems).map(str::to_string);
    if let Some(name) = &name {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            problems.add(
                &s.key("name"),
                format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            );
        }
    }
    let driver_name = s.choice(
        "driver",
        &[
            ("serial", "serial"),
            ("stdin", "stdin"),
            ("keyboard", "keyboard"),
            ("pcsc", "pcsc"),
        ],
        problems,
    );
    if !s.table.contains_key("driver") {
        problems.add(
            &s.key("driver"),
            "missing, expected one of: serial, keyboard, pcsc, stdin",
        );
    }
    if driver_name != Some("pcsc") && s.table.contains_key("reader") {
        problems.add(&s.key("reader"), "applies only to driver = \"pcsc\"");
    }
    let driver = match driver_name {
        Some("serial") => parse_serial(&s, problems),
        Some("pcsc") => {
            for key in SERIAL_ONLY {
                if s.table.contains_key(*key) {
                    problems.add(&s.key(key), "applies only to driver = \"serial\" (a PC/SC reader is chosen by `reader`, part of its name)");
                }
            }
            if !cfg!(feature = "pcsc") {
                problems.add(&s.key("driver"), crate::reader::NO_PCSC);
            }
            let reader = s.string("reader", problems).map(str::to_string);
            if reader.as_deref() == Some("") {
                problems.add(&s.key("reader"), "empty: give part of the reader's name (e.g. \"ACR122U\"), or leave it out to use the first reader");
            }
            Some(Driver::Pcsc { reader })
        }
        Some("stdin") => {
            for key in SERIAL_ONLY {
                if s.table.contains_key(*key) {
                    problems.add(&s.key(key), "applies only to driver = \"serial\"");
                }
            }
            Some(Driver::Stdin)
        }
        Some(_) => {
            for key in ["baud", "protocol"] {
                if s.table.contains_key(key) {
                    problems.add(&s.key(key), "applies only to driver = \"serial\"");
                }
            }
            let path = s.required_string("path", problems).map(PathBuf::from);
            if let Some(path) = &path
                && path.is_relative()
            {
                problems.add(
                    &s.key("path"),
                    "must be an absolute path (e.g. /dev/input/by-id/...-event-kbd)",
                );
            }
            path.map(|path| Driver::Keyboard { path })
        }
        None => None,
    };
    let direction = s
        .choice(
            "direction",
            &[
                ("in", Direction::In),
                ("out", Direction::Out),
                ("toggle", Direction::Toggle),
            ],
            problems,
        )
        .unwrap_or(Direction::Toggle);
    let debounce = s.duration("debounce", Duration::from_millis(1500), problems);
    let id_format = s
        .choice(
            "id-format",
            &named(&IdFormat::ALL, |f| f.as_str()),
            problems,
        )
        .unwrap_or(IdFormat::Hex);
    let bytes_reader = match &driver {
        Some(Driver::Serial { protocol, .. }) if !protocol.text => Some(protocol.name),
        Some(Driver::Pcsc { .. }) => Some("pcsc"),
        _ => None,
    };
    if let Some(name) = bytes_reader
        && id_format != IdFormat::Hex
    {
        problems.add(
            &s.key("id-format"),
            format!(
                "applies only to text readers (protocol = \"line\", driver = \"keyboard\" or \
                 \"stdin\"); a {name} reader always reads the id's bytes"
            ),
        );
    }
    let id_bytes = s
        .choice("id-bytes", &named(&IdBytes::ALL, |b| b.as_str()), problems)
        .unwrap_or(IdBytes::All);
    let byte_order = s
        .choice(
            "byte-order",
            &named(&ByteOrder::ALL, |o| o.as_str()),
            problems,
        )
        .unwrap_or(ByteOrder::AsRead);
    let egym_tag_format = s
        .choice(
            "egym-tag-format",
            &[
                ("HITAG1", "HITAG1"),
                ("MIFARE", "MIFARE"),
                ("LEGIC", "LEGIC"),
            ],
            problems,
        )
        .map(str::to_string)
        .or_else(|| {
            // What the reader reads when the configuration does not say.
            match &driver {
                Some(Driver::Serial { protocol, .. }) => protocol.default_tag_format,
                Some(Driver::Pcsc { .. }) => Some("MIFARE"),
                _ => None,
            }
            .map(str::to_string)
        });
    Some(ReaderConfig {
        name: name?,
        driver: driver?,
        direction,
        debounce,
        id_format,
        normalisation: Normalisation {
            id_bytes,
            byte_order,
        },
        egym_tag_format,
    })
}

fn parse_serial(s: &Section<'_>, problems: &mut Problems) -> Option<Driver> {
    let path = s.required_string("path", problems).map(PathBuf::from);
    if let Some(path) = &path
        && path.is_relative()
    {
        problems.add(
            &s.key("path"),
            "must be an absolute path (e.g. /dev/serial/by-id/...)",
        );
    }
    let baud = s.integer("baud", 50..=4_000_000, problems);
    let names: Vec<&str> = PROTOCOLS.iter().map(|p| p.name).collect();
    let protocol = match s.string("protocol", problems) {
        None if !s.table.contains_key("protocol") => {
            problems.add(
                &s.key("protocol"),
                format!("missing, expected one of: {}", names.join(", ")),
            );
            None
        }
        None => None,
        Some(name) => {
            let found = codec::protocol(name);
            if found.is_none() {
                problems.add(
                    &s.key("protocol"),
                    format!(
                        "unknown value {name:?}, expected one of: {}",
                        names.join(", ")
                    ),
                );
            }
            found
        }
    };
    let protocol = protocol?;
    Some(Driver::Serial {
        path: path?,
        baud: baud.map_or(protocol.default_baud, |b| b as u32),
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(board.egym_tag_format.as_deref(), Some("MIFARE"));
        let twn4 = &config.readers[1];
        assert!(matches!(twn4.driver, Driver::Serial { baud: 9600, .. }));
        assert_eq!(twn4.egym_tag_format, None);

        let pcsc = "[[readers]]\nname = \"desk\"\ndriver = \"pcsc\"\nreader = \"ACR122U\"\n";
        if cfg!(feature = "pcsc") {
            let config = Config::parse(pcsc).unwrap();
            let reader = &config.readers[0];
            assert!(matches!(&reader.driver, Driver::Pcsc { reader: Some(r) } if r == "ACR122U"));
            assert_eq!(reader.egym_tag_format.as_deref(), Some("MIFARE"));
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
    fn loopback_hosts_may_use_plain_http() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://example.com",
        ] {
            assert!(check_base_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "http://example.com",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(check_base_url(url).is_err(), "{url}");
        }
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
}
