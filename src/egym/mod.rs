//! The EGYM MMS API V2 client: the calls the daemon makes, their error bodies, and the one
//! function that says what an answer means for an event ([`classify`]).
//!
//! Only this module (and its stand-in, [`fake`]) knows EGYM's paths, headers and JSON.

pub mod fake;
pub mod rate_limit;

use std::fmt;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::config::ApiKey;

pub const USER_AGENT: &str = concat!("gym-checkin/", env!("CARGO_PKG_VERSION"));
/// Connecting to EGYM takes well under this on any working network; a dead one fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    api: Url,
    limiter: std::sync::Arc<rate_limit::RateLimiter>,
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
            Failure::Status { status, .. } => Some(*status),
            Failure::Transport { .. } => None,
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            Failure::Status { body, .. } => body.error_code.as_deref(),
            Failure::Transport { .. } => None,
        }
    }
}

/// Which call an answer belongs to; a 404 means different things for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Lookup,
    Post,
}

/// What an unsuccessful answer means for the event (DESIGN.md's outcome table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same request again later (transport error, timeout, 408, 429, 5xx).
    Retry,
    /// The key is missing, wrong or lacks a permission (401, 403): pause all delivery.
    Pause,
    /// No member has this tag (404 `RFID` on lookup).
    UnknownTag,
    /// The cached account is gone (404 `ACCOUNT` on a post): look the tag up again.
    AccountGone,
    /// The request can never succeed (any other 4xx).
    Reject,
}

/// What a failed call means. Whether to retry is decided here and only here; how long to wait
/// is the delivery worker's business.
pub fn classify(call: Call, failure: &Failure) -> Verdict {
    let Failure::Status { status, body } = failure else {
        return Verdict::Retry;
    };
    let entity = body.entity.as_deref();
    match (*status, call) {
        (401 | 403, _) => Verdict::Pause,
        (408 | 429, _) | (500..=599, _) => Verdict::Retry,
        (404, Call::Lookup) if entity.is_none_or(|e| e == "RFID") => Verdict::UnknownTag,
        (404, Call::Post) if entity == Some("ACCOUNT") => Verdict::AccountGone,
        (400..=499, _) => Verdict::Reject,
        // Informational or redirect answers are not part of the API: treat them as a passing
        // fault rather than lose the event.
        _ => Verdict::Retry,
    }
}

impl Client {
    /// A client for EGYM at `base_url` that keeps to `rate_per_second` with bursts of `burst`.
    pub fn new(
        base_url: &Url,
        request_timeout: Duration,
        rate_per_second: f64,
        burst: u32,
    ) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let mut api = base_url.clone();
        let path = format!("{}/api/v2/", api.path().trim_end_matches('/'));
        api.set_path(&path);
        let limiter = std::sync::Arc::new(rate_limit::RateLimiter::new(rate_per_second, burst));
        Ok(Client { http, api, limiter })
    }

    /// `GET /api/v2/accounts/rfid/{rfid}`: the account id of the member with this tag.
    pub async fn lookup(
        &self,
        key: &ApiKey,
        rfid: &str,
        tag_format: Option<&str>,
    ) -> Result<String, Failure> {
        let mut url = self.url(&format!("accounts/rfid/{rfid}"));
        if let Some(format) = tag_format {
            url.query_pairs_mut().append_pair("tagFormat", format);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Account {
            account_id: String,
        }
        let response = self.send(self.http.get(url), key).await?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if status != StatusCode::OK {
            return Err(Failure::Status {
                status: status.as_u16(),
                body: ErrorBody::parse(&body),
            });
        }
        // A 200 without an account id is not what the API promises; retrying is the safe answer.
        serde_json::from_slice::<Account>(&body)
            .map(|a| a.account_id)
            .map_err(|e| Failure::Transport {
                timeout: false,
                detail: format!("unreadable lookup answer: {e}"),
            })
    }

    /// `POST /api/v2/accounts/{accountId}/checkins` or `/checkouts` with the tap's timestamp.
    /// Returns the success status.
    pub async fn post_visit(
        &self,
        key: &ApiKey,
        account_id: &str,
        kind: crate::visit::Kind,
        timestamp_ms: i64,
    ) -> Result<u16, Failure> {
        let what = match kind {
            crate::visit::Kind::CheckIn => "checkins",
            crate::visit::Kind::CheckOut => "checkouts",
        };
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|_| Failure::Transport {
                timeout: false,
                detail: "base-url cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(["accounts", account_id, what]);
        let request = self
            .http
            .post(url)
            .json(&serde_json::json!({ "timestamp": timestamp_ms }));
        let response = self.send(request, key).await?;
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

    fn url(&self, path: &str) -> Url {
        let mut url = self.api.clone();
        url.set_path(&format!("{}{path}", self.api.path()));
        url
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        key: &ApiKey,
    ) -> Result<reqwest::Response, Failure> {
        self.limiter.acquire().await;
        let response = request
            .header("x-api-key", key.expose())
            .send()
            .await
            .map_err(transport)?;
        let remaining = response
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        self.limiter.observe(response.status().as_u16(), remaining);
        Ok(response)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let cases = [
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
        ];
        for (call, failure, expected) in cases {
            assert_eq!(classify(call, &failure), expected, "{call:?} {failure}");
        }
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
