//! The EGYM MMS API V2 client: the calls the daemon makes, their error bodies, and the one
//! function that says what an answer means for an event ([`classify`]); the base URLs it accepts
//! ([`check_base_url`]) and the API key it sends ([`ApiKey`], read from its [`ApiKeySource`]).
//!
//! Only this module (and its stand-in, [`fake`]) knows EGYM's paths, headers and JSON.

pub mod fake;
mod key;
pub mod rate_limit;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::clock::timer;
use crate::metrics::{EgymCall, Metrics, RefusalReason};
use crate::tag::TagFormat;
use crate::visit::Membership;

pub use key::{API_KEY_CREDENTIAL, API_KEY_ENV, ApiKey, ApiKeySource};

/// Where EGYM is when the configuration does not say.
pub const DEFAULT_BASE_URL: &str = "https://mms.api.egym.com";

pub const USER_AGENT: &str = concat!("gym-checkin/", env!("CARGO_PKG_VERSION"));
/// Connecting to EGYM takes well under this on any working network; a dead one fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    api: Url,
    limiter: std::sync::Arc<rate_limit::RateLimiter>,
    /// Whom this client's requests are for: see [`rate_limit::Priority`].
    priority: rate_limit::Priority,
    metrics: std::sync::Arc<Metrics>,
}

/// The body of EGYM's error answers (`ErrorDTO`), as far as the daemon uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// `metadata.entity` of a 404: which thing was missing (`RFID`, `ACCOUNT`, …).
    pub entity: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawErrorBody {
    error_code: Option<String>,
    message: Option<String>,
    metadata: Option<std::collections::HashMap<String, serde_json::Value>>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> ErrorBody {
        let Ok(raw) = serde_json::from_slice::<RawErrorBody>(body) else {
            return ErrorBody::default();
        };
        let entity = raw
            .metadata
            .and_then(|m| m.get("entity").and_then(|v| v.as_str().map(str::to_string)));
        ErrorBody {
            error_code: raw.error_code,
            message: raw.message,
            entity,
        }
    }
}

/// A call that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused or reset, DNS, TLS, or a timeout.
    Transport { timeout: bool, detail: String },
    /// EGYM answered with a status other than the call's success.
    Status { status: u16, body: ErrorBody },
    /// EGYM answered the call's success, with a body that cannot be read: EGYM is reachable,
    /// and said something this client does not understand.
    Malformed { status: u16, detail: String },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Transport {
                timeout: true,
                detail,
            } => write!(f, "timed out: {detail}"),
            Failure::Transport {
                timeout: false,
                detail,
            } => write!(f, "cannot reach EGYM: {detail}"),
            Failure::Malformed { status, detail } => write!(
                f,
                "EGYM answered HTTP {status}, but its answer cannot be read: {detail}"
            ),
            Failure::Status { status, body } => {
                write!(f, "HTTP {status}")?;
                if let Some(code) = &body.error_code {
                    write!(f, " {code}")?;
                }
                if let Some(entity) = &body.entity {
                    write!(f, " (entity {entity})")?;
                }
                if let Some(message) = &body.message {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

impl Failure {
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } | Failure::Malformed { status, .. } => Some(*status),
            Failure::Transport { .. } => None,
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            Failure::Status { body, .. } => body.error_code.as_deref(),
            Failure::Transport { .. } | Failure::Malformed { .. } => None,
        }
    }
}

/// Which call an answer belongs to; a 404 means different things for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `GET accounts/rfid/{rfid}`.
    Lookup,
    /// `POST accounts/{id}/checkins` or `checkouts`.
    Post,
    /// `POST accounts/{id}/admissions`.
    Admission,
}

/// Why EGYM refused a Wellpass (corporate-fitness) member's admission: its 403 `errorCode`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MembershipExpired,
    MembershipNotStarted,
    GymNotInNetwork,
    GymNotInNetworkPlus1,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::MembershipExpired,
        Refusal::MembershipNotStarted,
        Refusal::GymNotInNetwork,
        Refusal::GymNotInNetworkPlus1,
    ];

    /// EGYM's `errorCode`.
    pub fn error_code(self) -> &'static str {
        match self {
            Refusal::MembershipExpired => "corporateFitnessMembershipExpired",
            Refusal::MembershipNotStarted => "corporateFitnessMembershipNotStarted",
            Refusal::GymNotInNetwork => "corporateFitnessGymNotInNetwork",
            Refusal::GymNotInNetworkPlus1 => "corporateFitnessGymNotInNetworkPlus1",
        }
    }

    pub fn from_error_code(code: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.error_code() == code)
    }

    /// How `/metrics` counts it.
    pub fn counted_as(self) -> RefusalReason {
        match self {
            Refusal::MembershipExpired => RefusalReason::MembershipExpired,
            Refusal::MembershipNotStarted => RefusalReason::MembershipNotStarted,
            Refusal::GymNotInNetwork => RefusalReason::GymNotInNetwork,
            Refusal::GymNotInNetworkPlus1 => RefusalReason::GymNotInNetworkPlus1,
        }
    }

    /// What staff are told.
    pub fn says(self) -> &'static str {
        match self {
            Refusal::MembershipExpired => "Wellpass membership expired",
            Refusal::MembershipNotStarted => "Wellpass membership not started yet",
            Refusal::GymNotInNetwork => "this gym is not in the member's Wellpass plan",
            Refusal::GymNotInNetworkPlus1 => "this gym is not in the member's Wellpass Plus1 plan",
        }
    }
}

/// The membership type that must be admitted before a check-in (EGYM Wellpass).
pub const CORPORATE_FITNESS: &str = "CORPORATE_FITNESS";

/// The service's reading of EGYM's `membership.membershipType`.
pub fn membership(membership_type: Option<&str>) -> Membership {
    match membership_type {
        Some(CORPORATE_FITNESS) => Membership::Wellpass,
        _ => Membership::Other,
    }
}

/// What a lookup says of a member: the account, its membership type (Wellpass members must be
/// admitted), and a first name for the front desk. Only the account id and the membership type
/// are ever written down; the name is kept in memory alone and never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub membership: Membership,
    pub first_name: Option<String>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("account_id", &self.account_id)
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

/// A card enrolled for a member, as `GET accounts/{id}/rfids` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrolledRfid {
    pub rfid: String,
    pub tag_format: Option<String>,
}

/// What an unsuccessful answer means for the event (the README's outcome table, under Architecture).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same request again later (transport error, timeout, 408, 429, 5xx).
    Retry,
    /// The key is missing, wrong or lacks a permission (401, 403): pause all delivery.
    Pause,
    /// No member has this tag (404 `RFID` on lookup).
    UnknownTag,
    /// The cached account is gone (404 `ACCOUNT` on a post or an admission): look the tag up
    /// again.
    AccountGone,
    /// EGYM refused a Wellpass member's admission (403 with a corporate-fitness `errorCode`).
    AdmissionRefused(Refusal),
    /// The request can never succeed (any other 4xx).
    Reject,
    /// EGYM answered, but its answer cannot be read: the event is tried again later, and EGYM
    /// is not taken for out of reach.
    Unreadable,
}

/// What a failed call means. Whether to retry is decided here and only here; how long to wait
/// is the delivery worker's business.
pub fn classify(call: Call, failure: &Failure) -> Verdict {
    let (status, body) = match failure {
        Failure::Status { status, body } => (status, body),
        Failure::Malformed { .. } => return Verdict::Unreadable,
        Failure::Transport { .. } => return Verdict::Retry,
    };
    let entity = body.entity.as_deref();
    let refusal = body
        .error_code
        .as_deref()
        .and_then(Refusal::from_error_code);
    match (*status, call) {
        (403, Call::Admission) if refusal.is_some() => {
            Verdict::AdmissionRefused(refusal.expect("checked"))
        }
        (401 | 403, _) => Verdict::Pause,
        (408 | 429, _) | (500..=599, _) => Verdict::Retry,
        (404, Call::Lookup) if entity.is_none_or(|e| e == "RFID") => Verdict::UnknownTag,
        (404, Call::Post | Call::Admission) if entity == Some("ACCOUNT") => Verdict::AccountGone,
        (400..=499, _) => Verdict::Reject,
        // Informational or redirect answers are not part of the API: treat them as a passing
        // fault rather than lose the event.
        _ => Verdict::Retry,
    }
}

/// Whether an answer refuses the API key itself (401, or a 403 that is no Wellpass refusal),
/// rather than saying something of the request.
pub fn refuses_key(call: Call, failure: &Failure) -> bool {
    classify(call, failure) == Verdict::Pause
}

/// What EGYM said of the API key (`check-config --online`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// EGYM accepted it for a tag lookup, the call the service makes for every new tag.
    Accepted,
    /// 401 or 403: the key is missing, wrong, or lacks a permission.
    Refused(Failure),
    /// No answer: EGYM cannot be reached from here.
    Unreachable(Failure),
    /// EGYM answered, but with something else (a 5xx, say).
    Other(Failure),
}

/// The tag [`Client::check_key`] looks up: a valid rfid no card has.
const NO_SUCH_TAG: &str = "0x00";

impl Client {
    /// One cheap authenticated request: the lookup of a tag no member can have, which needs the
    /// same permission as the service's own lookups. A 404 for it means the key was accepted.
    pub async fn check_key(&self, key: &ApiKey) -> KeyCheck {
        match self.lookup(key, NO_SUCH_TAG, None).await {
            Ok(_) => KeyCheck::Accepted,
            Err(failure) => match (classify(Call::Lookup, &failure), &failure) {
                (Verdict::UnknownTag, _) => KeyCheck::Accepted,
                (Verdict::Pause, _) => KeyCheck::Refused(failure),
                (_, Failure::Transport { .. }) => KeyCheck::Unreachable(failure),
                _ => KeyCheck::Other(failure),
            },
        }
    }

    /// A client for EGYM at `base_url` that keeps to `rate_per_second` with bursts of `burst`.
    pub fn new(
        base_url: &Url,
        request_timeout: Duration,
        rate_per_second: f64,
        burst: u32,
    ) -> Result<Client, String> {
        let base_url = check_base_url(base_url.as_str())?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let mut api = base_url;
        let path = format!("{}/api/v2/", api.path().trim_end_matches('/'));
        api.set_path(&path);
        let limiter = std::sync::Arc::new(rate_limit::RateLimiter::new(rate_per_second, burst));
        Ok(Client {
            http,
            api,
            limiter,
            priority: rate_limit::Priority::default(),
            metrics: std::sync::Arc::default(),
        })
    }

    /// The same client (and rate limit), its requests made with `priority`.
    pub fn with_priority(&self, priority: rate_limit::Priority) -> Client {
        Client {
            priority,
            ..self.clone()
        }
    }

    /// Counts each request's duration and answer in `metrics`.
    pub fn with_metrics(self, metrics: std::sync::Arc<Metrics>) -> Client {
        Client { metrics, ..self }
    }

    /// `GET /api/v2/accounts/rfid/{rfid}`: the member with this tag.
    pub async fn lookup(
        &self,
        key: &ApiKey,
        rfid: &str,
        tag_format: Option<TagFormat>,
    ) -> Result<Account, Failure> {
        let mut url = self.endpoint(&["accounts", "rfid", rfid]);
        if let Some(format) = tag_format {
            url.query_pairs_mut()
                .append_pair("tagFormat", format.as_str());
        }
        self.get_account(key, url, EgymCall::Lookup).await
    }

    /// `GET /api/v2/accounts/email/{email}`.
    pub async fn account_by_email(&self, key: &ApiKey, email: &str) -> Result<Account, Failure> {
        let url = self.endpoint(&["accounts", "email", email]);
        self.get_account(key, url, EgymCall::Account).await
    }

    /// `GET /api/v2/accounts/membership/{membershipId}`.
    pub async fn account_by_membership(
        &self,
        key: &ApiKey,
        membership_id: &str,
    ) -> Result<Account, Failure> {
        let url = self.endpoint(&["accounts", "membership", membership_id]);
        self.get_account(key, url, EgymCall::Account).await
    }

    async fn get_account(
        &self,
        key: &ApiKey,
        url: Url,
        call: EgymCall,
    ) -> Result<Account, Failure> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct MembershipBody {
            membership_type: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct MemberAccount {
            account_id: String,
            first_name: Option<String>,
            membership: Option<MembershipBody>,
        }
        let body = self.get_ok(key, url, call).await?;
        // A 200 without an account id is not what the API promises: it is said as such, and
        // the event tried again later.
        let account: MemberAccount =
            serde_json::from_slice(&body).map_err(|e| Failure::Malformed {
                status: 200,
                detail: format!("no account in it ({e})"),
            })?;
        Ok(Account {
            account_id: account.account_id,
            membership: membership(
                account
                    .membership
                    .and_then(|m| m.membership_type)
                    .as_deref(),
            ),
            first_name: account.first_name,
        })
    }

    /// `GET /api/v2/accounts/{accountId}/rfids?allSources=true`: every card enrolled for the
    /// member, by the gym's software or elsewhere.
    pub async fn enrolled_rfids(
        &self,
        key: &ApiKey,
        account_id: &str,
    ) -> Result<Vec<EnrolledRfid>, Failure> {
        let mut url = self.endpoint(&["accounts", account_id, "rfids"]);
        url.query_pairs_mut().append_pair("allSources", "true");
        let body = self.get_ok(key, url, EgymCall::Rfids).await?;
        serde_json::from_slice(&body).map_err(|e| Failure::Malformed {
            status: 200,
            detail: format!("no list of cards in it ({e})"),
        })
    }

    /// `POST /api/v2/accounts/{accountId}/rfids` with an `RfidDTO`: adds a card to the member,
    /// as `rfid` with `tag_format` (the rendering and `tagFormat` a lookup of the card sends, so
    /// that the next lookup finds the member). Returns the card as EGYM keeps it; a success
    /// without a card in it (the document promises one) is the card as sent.
    pub async fn add_rfid(
        &self,
        key: &ApiKey,
        account_id: &str,
        rfid: &str,
        tag_format: Option<TagFormat>,
    ) -> Result<EnrolledRfid, Failure> {
        let url = self.endpoint(&["accounts", account_id, "rfids"]);
        let mut card = serde_json::json!({ "rfid": rfid });
        if let Some(format) = tag_format {
            card["tagFormat"] = serde_json::json!(format.as_str());
        }
        let request = self.http.post(url).json(&card);
        let response = self.send(request, key, EgymCall::AddRfid).await?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(Failure::Status {
                status: status.as_u16(),
                body: ErrorBody::parse(&body),
            });
        }
        Ok(
            serde_json::from_slice::<EnrolledRfid>(&body).unwrap_or_else(|_| EnrolledRfid {
                rfid: rfid.to_string(),
                tag_format: tag_format.map(|f| f.as_str().to_string()),
            }),
        )
    }

    /// `POST /api/v2/accounts/{accountId}/admissions` (no body): may this Wellpass member enter?
    /// Returns `firstAdmission`. EGYM logs a granted admission when it arrives: a success whose
    /// body cannot be read is an admission all the same, and gives `None` (never asked again).
    pub async fn admit(&self, key: &ApiKey, account_id: &str) -> Result<Option<bool>, Failure> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Admission {
            first_admission: bool,
        }
        let url = self.endpoint(&["accounts", account_id, "admissions"]);
        let response = self
            .send(self.http.post(url), key, EgymCall::Admission)
            .await?;
        let body = ok_body(response).await?;
        Ok(serde_json::from_slice::<Admission>(&body)
            .ok()
            .map(|a| a.first_admission))
    }

    /// `POST /api/v2/accounts/{accountId}/checkins` or `/checkouts` with the tap's timestamp.
    /// Returns the success status.
    pub async fn post_visit(
        &self,
        key: &ApiKey,
        account_id: &str,
        kind: crate::visit::Kind,
        timestamp: crate::clock::WallMs,
    ) -> Result<u16, Failure> {
        let what = match kind {
            crate::visit::Kind::CheckIn => "checkins",
            crate::visit::Kind::CheckOut => "checkouts",
        };
        let url = self.endpoint(&["accounts", account_id, what]);
        let request = self
            .http
            .post(url)
            .json(&serde_json::json!({ "timestamp": timestamp.as_millis() }));
        let response = self.send(request, key, EgymCall::Post).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let body = response.bytes().await.map_err(transport)?;
        Err(Failure::Status {
            status: status.as_u16(),
            body: ErrorBody::parse(&body),
        })
    }

    /// A GET whose only success is 200: its body.
    async fn get_ok(
        &self,
        key: &ApiKey,
        url: Url,
        call: EgymCall,
    ) -> Result<bytes::Bytes, Failure> {
        let response = self.send(self.http.get(url), key, call).await?;
        ok_body(response).await
    }

    /// The API's URL for these path segments (each percent-encoded as a path segment needs).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .expect("Client::new refuses a base URL that cannot take a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Whether requests are to spare now (see [`rate_limit::TokenBucket::has_spare`]).
    pub fn has_spare_requests(&self) -> bool {
        self.limiter.has_spare()
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        key: &ApiKey,
        call: EgymCall,
    ) -> Result<reqwest::Response, Failure> {
        self.limiter.acquire(self.priority).await;
        let started = timer::Instant::now();
        let sent = request.header("x-api-key", key.expose()).send().await;
        self.metrics.request(
            call,
            started.elapsed().as_secs_f64(),
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let response = sent.map_err(transport)?;
        let remaining = response
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        self.limiter.observe(response.status().as_u16(), remaining);
        Ok(response)
    }
}

/// The body of an answer whose only success is 200; any other status is a failure with
/// EGYM's error body.
async fn ok_body(response: reqwest::Response) -> Result<bytes::Bytes, Failure> {
    let status = response.status();
    let body = response.bytes().await.map_err(transport)?;
    if status != StatusCode::OK {
        return Err(Failure::Status {
            status: status.as_u16(),
            body: ErrorBody::parse(&body),
        });
    }
    Ok(body)
}

fn transport(e: reqwest::Error) -> Failure {
    // The error's own text names the URL, which holds the tag; keep only the cause.
    let timeout = e.is_timeout();
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        detail = e.without_url().to_string();
    }
    Failure::Transport { timeout, detail }
}

/// EGYM is reached over https only; plain http is allowed for a stand-in on this machine.
pub fn check_base_url(text: &str) -> Result<Url, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // A URL with no path to add the API's to is refused here, not retried at every call.
        let problem = check_base_url("mailto:egym@example.com").unwrap_err();
        assert!(problem.contains("cannot take a path"), "{problem}");
        let url = Url::parse("data:text/plain,egym").unwrap();
        let problem = Client::new(&url, Duration::from_secs(1), 1.0, 1).unwrap_err();
        assert!(problem.contains("cannot take a path"), "{problem}");
    }

    fn status(status: u16, entity: Option<&str>) -> Failure {
        Failure::Status {
            status,
            body: ErrorBody {
                error_code: None,
                message: None,
                entity: entity.map(str::to_string),
            },
        }
    }

    #[test]
    fn answers_are_classified_as_the_outcome_table_says() {
        use Call::*;
        use Verdict::*;
        let transport = Failure::Transport {
            timeout: true,
            detail: "x".into(),
        };
        let unreadable = Failure::Malformed {
            status: 200,
            detail: "x".into(),
        };
        let cases = [
            (Lookup, unreadable.clone(), Unreadable),
            (Admission, unreadable, Unreadable),
            (Lookup, transport.clone(), Retry),
            (Post, transport, Retry),
            (Post, status(408, None), Retry),
            (Post, status(429, None), Retry),
            (Lookup, status(500, None), Retry),
            (Post, status(503, None), Retry),
            (Lookup, status(401, None), Pause),
            (Post, status(403, None), Pause),
            (Lookup, status(404, Some("RFID")), UnknownTag),
            (Lookup, status(404, None), UnknownTag),
            (Lookup, status(404, Some("UNKNOWN")), Reject),
            (Post, status(404, Some("ACCOUNT")), AccountGone),
            (Post, status(404, None), Reject),
            (Post, status(400, None), Reject),
            (Post, status(422, None), Reject),
            (Post, status(302, None), Retry),
            (Admission, status(401, None), Pause),
            (Admission, status(403, None), Pause),
            (Admission, status(404, Some("ACCOUNT")), AccountGone),
            (Admission, status(503, None), Retry),
            (Admission, status(400, None), Reject),
        ];
        for (call, failure, expected) in cases {
            assert_eq!(classify(call, &failure), expected, "{call:?} {failure}");
        }
    }

    #[test]
    fn a_403_with_a_corporate_fitness_code_is_a_refused_admission_and_only_on_admissions() {
        for refusal in Refusal::ALL {
            let failure = Failure::Status {
                status: 403,
                body: ErrorBody {
                    error_code: Some(refusal.error_code().into()),
                    message: None,
                    entity: None,
                },
            };
            assert_eq!(
                classify(Call::Admission, &failure),
                Verdict::AdmissionRefused(refusal)
            );
            assert_eq!(classify(Call::Post, &failure), Verdict::Pause);
            assert_eq!(
                Refusal::from_error_code(refusal.error_code()),
                Some(refusal)
            );
        }
        let missing_permission = Failure::Status {
            status: 403,
            body: ErrorBody {
                error_code: Some("missingPermission".into()),
                message: None,
                entity: None,
            },
        };
        assert_eq!(
            classify(Call::Admission, &missing_permission),
            Verdict::Pause
        );
    }

    #[test]
    fn error_bodies_are_parsed() {
        let body = br#"{"status":404,"errorCode":"notFound","message":"No account with this RFID",
                        "requestId":"de625cf1-1","metadata":{"entity":"RFID"}}"#;
        assert_eq!(
            ErrorBody::parse(body),
            ErrorBody {
                error_code: Some("notFound".into()),
                message: Some("No account with this RFID".into()),
                entity: Some("RFID".into())
            }
        );
        assert_eq!(
            ErrorBody::parse(b"<html>bad gateway</html>"),
            ErrorBody::default()
        );
    }
}
