//! What `check-config` says of a configuration that works: each part in the file's own words
//! (`direction = "toggle"`), where the API key was found, and the screen's address as a browser
//! opens it.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::Config;
use crate::clock::{Clock, TrustSource};
use crate::reader::Driver;

/// The lines `check-config` prints for `config`, read from `path`, whose API key was found in
/// `key_found_in`.
pub fn describe(config: &Config, path: &Path, key_found_in: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", path.display());
    let _ = writeln!(
        out,
        "  EGYM: {} (API key read from {key_found_in})",
        config.egym.base_url
    );
    let _ = writeln!(out, "  database: {}", config.store.path.display());
    let days = |d: std::time::Duration| crate::clock::duration_text(d);
    let _ = writeln!(
        out,
        "  kept: delivered events {}, rejected {}, of unknown cards {} (from the tap); cached \
         lookups {}; a closed visit's state {}; the staff page lists {}{}",
        days(config.store.keep_delivered),
        days(config.store.keep_rejected),
        days(config.store.keep_unknown),
        days(config.egym.account_cache_ttl),
        days(config.visits.keep_closed),
        days(config.screen.staff_history),
        if config.log.full_tags {
            "; the log shows WHOLE card ids ([log] full-tags = true)"
        } else {
            ""
        }
    );
    let clock = Clock::unregistered(config.clock.trusted_when.clone());
    let trust = clock.trust();
    let _ = writeln!(
        out,
        "  clock: trusted-when = \"{}\": {} now ({})",
        config.clock.trusted_when,
        if trust.trusted {
            "trusted"
        } else {
            "NOT trusted"
        },
        trust.detail
    );
    match config.screen.listen {
        None => {
            let _ = writeln!(out, "  screen: off");
        }
        Some(listen) => {
            let token = if config.screen.token_file.is_some() {
                "; the staff page and /metrics need the token, and every page from another \
                 machine"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  screen: {} (staff: /staff){token}",
                browser_url(listen)
            );
            let refusals = if config.screen.show_refusal_reasons {
                "with their reason (show-refusal-reasons = true: anyone who sees the screen \
                 reads why a member was turned away)"
            } else {
                "as \"Please see the desk\" (the reason is on the staff page)"
            };
            let _ = writeln!(out, "  member screen: Wellpass refusals shown {refusals}");
        }
    }
    match &config.service.socket {
        Some(socket) => {
            let _ = writeln!(out, "  status socket: {}", socket.display());
        }
        None => {
            let _ = writeln!(
                out,
                "  status socket: off (`gym-checkin status` reads the database)"
            );
        }
    }
    for reader in &config.readers {
        let device = match &reader.driver {
            Driver::Serial {
                path,
                baud,
                protocol,
            } => format!(
                "{} {} reader on {} at {baud} baud ({})",
                article(protocol.name),
                protocol.name,
                path.display(),
                presence(path)
            ),
            Driver::Keyboard { path } => {
                format!(
                    "a keyboard-wedge reader on {} ({})",
                    path.display(),
                    presence(path)
                )
            }
            Driver::Pcsc { reader: wanted } => {
                let which = match wanted {
                    Some(wanted) => format!("the first whose name contains {wanted:?}"),
                    None => "the first found".to_string(),
                };
                let present = match crate::reader::try_open(reader) {
                    Ok(()) => "present".to_string(),
                    Err(e) => format!("not available now: {e}; the service waits for it"),
                };
                format!("a PC/SC reader through pcscd, {which} ({present})")
            }
            Driver::Stdin => "standard input, one id per line".to_string(),
        };
        let tag_format = match &reader.egym_tag_format {
            Some(format) => format!("egym-tag-format = \"{format}\""),
            None => "no tagFormat".to_string(),
        };
        let _ = writeln!(
            out,
            "  reader {}: {device}, direction = \"{}\", {tag_format}",
            reader.name,
            reader.direction.as_str()
        );
    }
    out
}

/// What `check-config` warns of in a configuration that works: a clock trusted without proof or
/// never to be trusted, a screen port in use.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let clock = Clock::unregistered(config.clock.trusted_when.clone());
    let trust = clock.trust();
    if trust.source == TrustSource::Undetermined {
        warnings.push(format!(
            "the clock would be trusted without proof: {}",
            trust.detail
        ));
    }
    if let Some(warning) = clock.never_trusted_warning() {
        warnings.push(warning);
    }
    if let Some(listen) = config.screen.listen
        // Bound, then let go at once: only to tell whether the port is free.
        && let Err(e) = std::net::TcpListener::bind(listen)
    {
        warnings.push(format!(
            "screen.listen: cannot listen on {listen} now: {e}. If gym-checkin runs, it may be \
             the one using it; otherwise the screen will not be served until the port is free \
             (taps are recorded and delivered all the same)"
        ));
    }
    warnings
}

/// The screen's address as a browser opens it: an address that means "every interface"
/// (`0.0.0.0`, `[::]`) is shown as this machine's name, which other machines can open.
pub fn browser_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => host_name().unwrap_or_else(|| match ip {
            IpAddr::V4(_) => "127.0.0.1".into(),
            IpAddr::V6(_) => "[::1]".into(),
        }),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}/", listen.port())
}

/// This machine's host name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

fn presence(path: &Path) -> &'static str {
    if path.exists() {
        "present"
    } else {
        "not present now; the service waits for it"
    }
}

/// "a" or "an", as the word is said: "an em4100", "a pn532", "a line", "a twn4".
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_for_every_interface_is_shown_as_one_a_browser_opens() {
        let url = browser_url("0.0.0.0:8787".parse().unwrap());
        assert!(
            url.starts_with("http://") && url.ends_with(":8787/"),
            "{url}"
        );
        assert!(!url.contains("0.0.0.0"), "{url}");
        assert_eq!(
            browser_url("127.0.0.1:8787".parse().unwrap()),
            "http://127.0.0.1:8787/"
        );
        assert_eq!(
            browser_url("[::1]:8787".parse().unwrap()),
            "http://[::1]:8787/"
        );
    }

    #[test]
    fn the_article_follows_the_sound() {
        assert_eq!(article("em4100"), "an");
        assert_eq!(article("pn532"), "a");
        assert_eq!(article("line"), "a");
    }
}
