//! The staff page's **Enrol** action: `GET /staff/enrol` (whether enrolling is on here, and the
//! page's CSRF token), `POST /staff/enrol/preview` (the member and their cards, before staff
//! confirm) and `POST /staff/enrol` (the card added at EGYM).
//!
//! Enrolling writes to EGYM on behalf of staff, so every request needs the screen's token
//! (`[screen] token-file`), on every address, loopback included: with no token configured,
//! enrolling from the page is off and the page says why. A POST must also be a same-origin
//! request from the page: its `Origin` names this server (as its `Host`), a browser's
//! `Sec-Fetch-Site`, when sent, is `same-origin`, its body is JSON (which no form can send from
//! another site without the browser asking first), and it carries the CSRF token the page got
//! from `GET /staff/enrol`: random, made once per run. Each enrolment is logged with the
//! client's address ([`crate::enrolment`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::same;
use super::server::{Body, Context, full, set};
use crate::enrolment::{Holder, Preview, Refused};
use crate::tag;

/// An enrolment request's body is small; more is refused.
const MAX_BODY: usize = 4 * 1024;

/// The header a POST carries its CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";

/// Whether enrolling from the page is on, and the CSRF token for it; made once per run.
#[derive(Clone, Debug)]
pub(super) enum EnrolPage {
    On { csrf: String },
    Off { why: String },
}

impl EnrolPage {
    /// On, when the service can enrol and the screen has a token; the CSRF token from the
    /// kernel's random source.
    pub(super) fn new(can_enrol: bool, token: Option<&str>) -> EnrolPage {
        if !can_enrol {
            return EnrolPage::Off {
                why: "this service does not enrol cards".into(),
            };
        }
        if token.is_none() {
            return EnrolPage::Off {
                why: "enrolling from this page needs the screen's token: set [screen] \
                      token-file, restart the service, and open the page with ?token=…"
                    .into(),
            };
        }
        match random_token() {
            Ok(csrf) => EnrolPage::On { csrf },
            Err(e) => EnrolPage::Off {
                why: format!("cannot make the page's CSRF token: {e}"),
            },
        }
    }
}

/// 32 hex digits from `/dev/urandom`.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Answers a request for `/staff/enrol…` from `peer`, `authorised` when it carries the screen's
/// token (in the header, the query or the browser's cookie: see `access.rs`).
pub(super) async fn handle(
    ctx: &Context,
    request: Request<Incoming>,
    peer: SocketAddr,
    authorised: bool,
) -> Response<Body> {
    let path = request.uri().path().to_string();
    // The token on every address: enrolling is a write on behalf of staff.
    let csrf = match &ctx.enrol {
        EnrolPage::On { csrf } => csrf.clone(),
        EnrolPage::Off { why } => return answer(StatusCode::FORBIDDEN, refusal("off", why)),
    };
    if !authorised {
        return answer(
            StatusCode::UNAUTHORIZED,
            refusal(
                "token",
                "enrolling needs the screen's token: ?token=... or Authorization: Bearer ...",
            ),
        );
    }
    match (request.method().clone(), path.as_str()) {
        (hyper::Method::GET, "/staff/enrol") => {
            answer(StatusCode::OK, json!({ "available": true, "csrf": csrf }))
        }
        (hyper::Method::POST, "/staff/enrol/preview" | "/staff/enrol") => {
            if let Err(why) = same_origin(&request, &csrf) {
                return answer(StatusCode::FORBIDDEN, refusal("csrf", &why));
            }
            let asked = match read_body(request).await {
                Ok(asked) => asked,
                Err(why) => return answer(StatusCode::BAD_REQUEST, refusal("request", &why)),
            };
            let Some(enroller) = &ctx.enroller else {
                return answer(
                    StatusCode::FORBIDDEN,
                    refusal("off", "this service does not enrol cards"),
                );
            };
            let done = if path == "/staff/enrol/preview" {
                enroller
                    .preview(&asked.reader, &asked.rfid, &asked.member)
                    .await
                    .map(|p| preview_json(&p))
            } else {
                let by = format!("staff page at {peer}");
                let account_id = asked.account_id.unwrap_or_default();
                enroller
                    .enrol(&asked.reader, &asked.rfid, &asked.member, &account_id, &by)
                    .await
                    .map(|done| {
                        json!({
                            "tag": tag::short(&done.card.rfid),
                            "tag_format": done.card.tag_format.map(|f| f.as_str()),
                            "account_id": done.account_id,
                            "already": done.already,
                            "waiting": done.waiting,
                        })
                    })
            };
            match done {
                Ok(body) => answer(StatusCode::OK, body),
                Err(refused) => answer(status_of(&refused), refused_json(&refused)),
            }
        }
        (_, "/staff/enrol/preview" | "/staff/enrol") => {
            let mut response = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                refusal("method", "GET /staff/enrol, or POST"),
            );
            set(&mut response, "allow", "GET, POST");
            response
        }
        _ => answer(StatusCode::NOT_FOUND, refusal("path", "no such page")),
    }
}

/// What the page sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Asked {
    reader: String,
    rfid: String,
    member: String,
    /// The member shown to staff, when they confirm.
    account_id: Option<String>,
}

async fn read_body(request: Request<Incoming>) -> Result<Asked, String> {
    let mut types = request.headers().get_all("content-type").iter();
    let json = match (types.next(), types.next()) {
        (Some(only), None) => only
            .to_str()
            .is_ok_and(|t| t.starts_with("application/json")),
        _ => false,
    };
    if !json {
        return Err("the request's body must be JSON (Content-Type: application/json)".into());
    }
    let body: Bytes = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not an enrolment request: {e}"))
}

/// A POST from the page itself: its origin is this server, and it carries the page's CSRF
/// token.
fn same_origin(request: &Request<Incoming>, csrf: &str) -> Result<(), String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = header("host").unwrap_or_default();
    match header("origin") {
        Some(origin) if origin.eq_ignore_ascii_case(&format!("http://{host}")) => {}
        Some(origin) => {
            return Err(format!(
                "a request from {origin} may not enrol cards: only the staff page served here may"
            ));
        }
        None => return Err("a request without an Origin may not enrol cards".into()),
    }
    if let Some(site) = header("sec-fetch-site")
        && site != "same-origin"
    {
        return Err(format!(
            "a {site} request may not enrol cards: only the staff page served here may"
        ));
    }
    match header(CSRF_HEADER) {
        Some(given) if same(given.as_bytes(), csrf.as_bytes()) => Ok(()),
        Some(_) => Err(
            "the page's CSRF token is not this service's (it restarted since the page got it): \
             open the Enrol dialog again"
                .into(),
        ),
        None => Err(format!("no CSRF token ({CSRF_HEADER})")),
    }
}

fn preview_json(preview: &Preview) -> Value {
    let member = &preview.member;
    json!({
        "account_id": member.account_id,
        "first_name": member.first_name,
        "cards": member.cards.iter().map(|c| json!({
            "tag": tag::short(&c.rfid),
            "tag_format": c.tag_format,
        })).collect::<Vec<_>>(),
        "card": {
            "tag": tag::short(&preview.card.rfid),
            "tag_format": preview.card.tag_format.map(|f| f.as_str()),
        },
        "already_theirs": preview.holder == Holder::ThisMember,
    })
}

fn refusal(reason: &str, message: &str) -> Value {
    json!({ "refused": { "reason": reason, "message": message } })
}

fn refused_json(refused: &Refused) -> Value {
    refusal(refused.code(), &refused.to_string())
}

/// The HTTP status of a refusal: the request was understood, and EGYM (or the box) would not.
fn status_of(refused: &Refused) -> StatusCode {
    match refused {
        Refused::NotACard { .. } | Refused::NoSuchReader { .. } => StatusCode::BAD_REQUEST,
        Refused::NoSuchMember { .. } | Refused::AccountGone => StatusCode::NOT_FOUND,
        Refused::HeldByAnother { .. } | Refused::MemberChanged => StatusCode::CONFLICT,
        Refused::KeyRefused(_) | Refused::MayNotWriteCards(_) | Refused::Egym { .. } => {
            StatusCode::BAD_GATEWAY
        }
        Refused::Unreachable { .. } => StatusCode::GATEWAY_TIMEOUT,
        Refused::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    set(&mut response, "content-type", "application/json");
    set(&mut response, "cache-control", "no-store");
    response
}
