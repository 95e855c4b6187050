//! The configuration file: schema, loading, and validation with key paths.
//!
//! The file is read into a TOML tree and then walked key by key, so that every problem is found
//! in one pass, not just the first: an installer fixing a config sees the whole list at once,
//! each line naming the key (`readers[1].protocol`) and, for a choice, the accepted values.
//! Keys are kebab-case; unknown keys are errors; durations are strings such as `"90s"`.
//!
//! Each part of the service owns the type of its own settings (a reader's [`ReaderConfig`], the
//! API key's [`ApiKeySource`], the Wellpass [`LateAdmission`]); this module reads the file into
//! them:
//! - `walk`: the TOML walker, which knows a section's path and allowed keys, and collects
//!   problems;
//! - `sections`: `[egym]`, `[store]`, `[visits]`, `[clock]`, `[wellpass]`, `[screen]`,
//!   `[service]`;
//! - `readers`: `[[readers]]`, each with a [`Driver`](crate::reader::Driver) that carries the
//!   settings of its kind;
//! - `devices`: `check-config`'s look at the readers' devices as they are now;
//! - `report`: what `check-config` says of a configuration that works.

mod devices;
mod readers;
mod report;
mod sections;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::clock::TrustRule;
use crate::delivery::LateAdmission;
use crate::egym::{ApiKey, ApiKeySource};
use crate::reader::ReaderConfig;
pub use report::{browser_url, describe, warnings};
use walk::Problems;
pub use walk::parse_duration;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/gym-checkin/gym-checkin.toml";
pub const DEFAULT_DB_PATH: &str = "/var/lib/gym-checkin/gym-checkin.db";

#[derive(Clone, Debug)]
pub struct Config {
    pub egym: EgymConfig,
    pub store: StoreConfig,
    pub visits: VisitsConfig,
    pub clock: ClockConfig,
    pub wellpass: WellpassConfig,
    pub screen: ScreenConfig,
    pub service: ServiceConfig,
    pub log: LogConfig,
    pub readers: Vec<ReaderConfig>,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Log whole tags, and an unknown card's renderings, instead of shortened tags: for a setup
    /// session only.
    pub full_tags: bool,
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The control socket `status` asks the running service on; `None`: off.
    pub socket: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct ScreenConfig {
    /// Where the screen is served; `None`: off.
    pub listen: Option<std::net::SocketAddr>,
    /// The token the staff page and `/metrics` need, and every page from another machine
    /// (required off loopback).
    pub token_file: Option<PathBuf>,
    /// How far back the staff page lists taps and refused admissions.
    pub staff_history: Duration,
    /// Whether the member screen says why a Wellpass admission was refused, rather than
    /// "Please see the desk" alone.
    pub show_refusal_reasons: bool,
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

/// Where the database is, and how long finished events are kept in it, counted from their tap.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Events delivered to EGYM.
    pub keep_delivered: Duration,
    /// Events EGYM refused for good.
    pub keep_rejected: Duration,
    /// Events of cards EGYM never knew, given up after `unknown-tag-retry-window`.
    pub keep_unknown: Duration,
}

#[derive(Clone, Debug)]
pub struct VisitsConfig {
    pub repeat_window: Duration,
    pub auto_checkout_after: Option<Duration>,
    /// Local time of day as (hour, minute).
    pub closing_time: Option<(u8, u8)>,
    /// The state of a visit that is over (the member is outside) is kept this long after its
    /// last tap.
    pub keep_closed: Duration,
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
        let (parsed, problems) = parse_text(text);
        match parsed.and_then(sections::Parsed::complete) {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems),
        }
    }

    /// Everything `check-config` looks at, every problem at once: the file, the API key, the
    /// screen's token, the database's place and the readers' devices. The parts of the file
    /// that can be read are checked even when others cannot.
    pub fn check(path: &Path) -> Checked {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                return Checked {
                    config: None,
                    key_found_in: None,
                    problems: vec![format!(
                        "cannot read the configuration file as user {}: {e}",
                        crate::console::user_name()
                    )],
                };
            }
        };
        let (parsed, mut problems) = parse_text(&text);
        let Some(parsed) = parsed else {
            return Checked {
                config: None,
                key_found_in: None,
                problems,
            };
        };
        let mut key_found_in = None;
        if let Some(egym) = &parsed.egym {
            match egym.api_key.read() {
                Ok(_) => key_found_in = Some(egym.api_key.describe()),
                Err(e) => problems.push(format!("egym.api-key-file: {e}")),
            }
        }
        if let Some(screen) = &parsed.screen
            && let Err(problem) = screen.read_token()
        {
            problems.push(problem);
        }
        if let Some(store) = &parsed.store
            && let Err(problem) = crate::store::check_path(&store.path)
        {
            problems.push(format!("store.path: {problem}"));
        }
        problems.extend(devices::check_devices(&parsed.readers));
        let config = parsed.complete();
        Checked {
            config: config.filter(|_| problems.is_empty()),
            key_found_in,
            problems,
        }
    }

    /// Reads the screen's token, if one is configured; the problem names the key.
    pub fn check_screen_token(&self) -> Result<Option<String>, String> {
        self.screen.read_token()
    }

    /// Checks that the API key can be read; the problem names the key that configures it.
    pub fn check_api_key(&self) -> Result<ApiKey, String> {
        self.egym
            .api_key
            .read()
            .map_err(|e| format!("egym.api-key-file: {e}"))
    }
}

/// What `check-config` found: the configuration when it has no problem, where the API key was
/// found, and every problem, each starting with its key.
#[derive(Debug)]
pub struct Checked {
    pub config: Option<Config>,
    pub key_found_in: Option<String>,
    pub problems: Vec<String>,
}

/// Reads configuration text into its sections as far as they can be read, with every problem.
fn parse_text(text: &str) -> (Option<sections::Parsed>, Vec<String>) {
    let root: toml::Table = match text.parse() {
        Ok(root) => root,
        Err(e) => {
            let e: toml::de::Error = e;
            return (
                None,
                vec![format!("not valid TOML: {}", e.to_string().trim_end())],
            );
        }
    };
    let mut problems = Problems::default();
    let parsed = sections::parse_root(&root, &mut problems);
    (Some(parsed), problems.0)
}

impl ScreenConfig {
    /// Reads the screen's token, if one is configured; the problem names the key.
    pub fn read_token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.token_file else {
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
}

#[cfg(test)]
mod tests;
