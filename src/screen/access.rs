//! Who may see what on the screen (pure: the request's parts are passed in).
//!
//! First names and the staff page's data are personal data, so with a token configured:
//! - a client on this machine (its address is loopback, and it named this machine by a loopback
//!   name, so a web page whose name was rebound to 127.0.0.1 is not one) sees the member screen
//!   and its events without the token, as a kiosk browser on the box does;
//! - any other client needs the token for every page and stream, the member screen included;
//! - the staff page, its events and `/metrics` need it from every client, and so does the staff
//!   page's Enrol action (`/staff/enrol…`), a write to EGYM on behalf of staff.
//!
//! Without a token the screen listens on loopback only (`check-config` refuses anything else),
//! where every client is this machine.
//!
//! The token is given as `Authorization: Bearer …`, as `?token=…`, or in the cookie a page's
//! one-time URL sets: a page opened once with `?token=…` is answered with the cookie and sent on
//! to the same address without the token, so the token is not left in the address bar, and the
//! browser keeps it (a kiosk tablet is set up once, nobody types the token at the door). Each
//! answer that was let in by the cookie sets it again: browsers keep a cookie at most 400 days
//! from when it was last set.

use std::net::IpAddr;

/// The cookie that keeps the token in a browser.
pub const COOKIE: &str = "gym_checkin_token";
/// How long a browser keeps the cookie from when it was last set: Chromium's most.
pub const COOKIE_MAX_AGE_S: u64 = 400 * 86_400;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `/`
    MemberPage,
    /// `/events`
    MemberEvents,
    /// `/staff`
    StaffPage,
    /// `/events?staff=1`
    StaffEvents,
    Metrics,
    /// `/staff/enrol…`: the staff page's Enrol action (see `enrol.rs`).
    Enrol,
    /// `/health`: says `ok` and nothing else, to any client.
    Health,
    NotFound,
}

impl Resource {
    pub fn of(path: &str, staff: bool) -> Resource {
        match path {
            "/" => Resource::MemberPage,
            "/events" if staff => Resource::StaffEvents,
            "/events" => Resource::MemberEvents,
            "/staff" => Resource::StaffPage,
            "/metrics" => Resource::Metrics,
            "/health" => Resource::Health,
            enrol if enrol.starts_with("/staff/enrol") => Resource::Enrol,
            _ => Resource::NotFound,
        }
    }

    /// A page a browser opens, which the one-time URL may set the cookie on.
    pub fn is_page(self) -> bool {
        matches!(self, Resource::MemberPage | Resource::StaffPage)
    }

    /// Whether this resource needs the token from a client that is (or is not) on this
    /// machine, when a token is configured.
    pub fn needs_token(self, on_this_machine: bool) -> bool {
        match self {
            Resource::Health => false,
            Resource::MemberPage | Resource::MemberEvents | Resource::NotFound => !on_this_machine,
            Resource::StaffPage | Resource::StaffEvents | Resource::Metrics | Resource::Enrol => {
                true
            }
        }
    }
}

/// What the request carries: the token, and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub bearer: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
}

/// How a request stands with the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let in without a token: none is needed.
    Open,
    /// Let in by the token in the header or the query.
    Token,
    /// Let in by the token in the cookie: the answer sets the cookie again.
    Cookie,
    /// A page opened with the right `?token=`: set the cookie and send the browser on to the
    /// same address without it.
    SetCookie,
    /// No token, or a wrong one.
    Refused,
}

/// Decides a request for `resource` by a client on this machine or not, given `token` (the
/// configured one, if any) and what the request carries.
pub fn decide(
    resource: Resource,
    on_this_machine: bool,
    token: Option<&str>,
    given: &Given,
) -> Verdict {
    let Some(token) = token else {
        return Verdict::Open;
    };
    let right = |given: &Option<String>| {
        given
            .as_deref()
            .is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
    };
    // A page opened with the right token in its address sets the cookie, needed or not: a
    // tablet set up on the box's own browser works the same.
    if resource.is_page() && right(&given.query) {
        return Verdict::SetCookie;
    }
    if !resource.needs_token(on_this_machine) {
        return Verdict::Open;
    }
    if right(&given.bearer) || right(&given.query) {
        Verdict::Token
    } else if right(&given.cookie) {
        Verdict::Cookie
    } else {
        Verdict::Refused
    }
}

/// Whether a client at `peer` that sent `host` is this machine: a loopback address, and a
/// loopback name or address in `Host` (IPv4 clients of an IPv6 socket count by their IPv4
/// address).
pub fn on_this_machine(peer: IpAddr, host: Option<&str>) -> bool {
    peer.to_canonical().is_loopback() && host.is_some_and(names_this_machine)
}

/// Whether a `Host` header names this machine by a loopback name or address.
pub fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token in a `Cookie` header, if it holds ours.
pub fn from_cookie(header: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| decoded(value))
}

/// The `Set-Cookie` value that keeps `token` in the browser: sent back to this host only (any
/// path), never to scripts, never with a request another site starts.
pub fn set_cookie(token: &str) -> String {
    let value: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!("{COOKIE}={value}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict")
}

/// Where the one-time URL sends the browser on to: the same path and query, without `token`.
pub fn without_token(path: &str, query: &str) -> String {
    let rest: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key != "token")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if rest.is_empty() {
        return path.to_string();
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    format!("{path}?{query}")
}

fn decoded(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// Compares without stopping at the first difference.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "3f9b+2c1d/screen=token-6e0a";

    fn given(bearer: Option<&str>, query: Option<&str>, cookie: Option<&str>) -> Given {
        Given {
            bearer: bearer.map(str::to_string),
            query: query.map(str::to_string),
            cookie: cookie.map(str::to_string),
        }
    }

    #[test]
    fn off_this_machine_every_page_and_stream_needs_the_token() {
        use Resource::*;
        use Verdict::*;
        let none = given(None, None, None);
        let wrong = given(Some("wrong-token-wrong-token"), None, Some("wrong"));
        let bearer = given(Some(TOKEN), None, None);
        let cookie = given(None, None, Some(TOKEN));
        // (resource, on this machine, what it carries) → verdict
        for (resource, here, given, verdict) in [
            (MemberPage, true, &none, Open),
            (MemberEvents, true, &none, Open),
            (MemberPage, false, &none, Refused),
            (MemberEvents, false, &none, Refused),
            (MemberEvents, false, &wrong, Refused),
            (MemberEvents, false, &bearer, Token),
            (MemberEvents, false, &cookie, Cookie),
            (StaffPage, true, &none, Refused),
            (StaffEvents, true, &none, Refused),
            (StaffEvents, true, &cookie, Cookie),
            (Metrics, true, &none, Refused),
            (Metrics, false, &bearer, Token),
            (Enrol, true, &none, Refused),
            (Enrol, true, &cookie, Cookie),
            (Enrol, false, &bearer, Token),
            (Health, false, &none, Open),
            (NotFound, false, &none, Refused),
        ] {
            assert_eq!(
                decide(resource, here, Some(TOKEN), given),
                verdict,
                "{resource:?} from {}, {given:?}",
                if here { "this machine" } else { "elsewhere" }
            );
        }
        // Without a token configured (loopback only), everything is open.
        assert_eq!(decide(StaffPage, true, None, &none), Open);
    }

    #[test]
    fn a_page_opened_once_with_the_token_sets_the_cookie_and_drops_it_from_the_address() {
        let once = given(None, Some(TOKEN), None);
        for resource in [Resource::MemberPage, Resource::StaffPage] {
            assert_eq!(
                decide(resource, false, Some(TOKEN), &once),
                Verdict::SetCookie
            );
        }
        // Streams and /metrics take it as it is.
        assert_eq!(
            decide(Resource::StaffEvents, false, Some(TOKEN), &once),
            Verdict::Token
        );
        assert_eq!(
            decide(
                Resource::MemberPage,
                false,
                Some(TOKEN),
                &given(None, Some("wrong"), None)
            ),
            Verdict::Refused
        );
        let cookie = set_cookie(TOKEN);
        assert!(
            cookie.starts_with("gym_checkin_token=3f9b%2B2c1d%2Fscreen%3Dtoken-6e0a; Path=/;"),
            "{cookie}"
        );
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let value = cookie.split(';').next().unwrap();
        assert_eq!(
            from_cookie(&format!("theme=dark; {value}; other=1")).as_deref(),
            Some(TOKEN)
        );
        assert_eq!(from_cookie("theme=dark"), None);
        assert_eq!(without_token("/", "token=abc"), "/");
        assert_eq!(
            without_token("/", "reader=entrance&token=abc"),
            "/?reader=entrance"
        );
    }

    #[test]
    fn this_machine_is_a_loopback_client_that_names_it_by_a_loopback_name() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let lan: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(on_this_machine(v4, Some("127.0.0.1:8787")));
        assert!(on_this_machine(mapped, Some("localhost:8787")));
        assert!(on_this_machine("::1".parse().unwrap(), Some("[::1]:8787")));
        assert!(!on_this_machine(lan, Some("127.0.0.1:8787")));
        // A page whose name was rebound to this machine's loopback address.
        assert!(!on_this_machine(v4, Some("attacker.example:8787")));
        assert!(!on_this_machine(v4, None));
    }
}
