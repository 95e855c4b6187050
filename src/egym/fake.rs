//! A stand-in for the EGYM API on loopback, for the demo and the tests: one fake EGYM in the
//! project, not two.
//!
//! It knows a few members and their cards, answers the lookups (by card, e-mail and membership
//! id), the list of a member's cards, adding a card, admissions and the check-in/check-out calls
//! as EGYM does (including its error bodies), records every request it receives, and can be told
//! to go down (connections refused), to answer every call with a given status, to stall (accept
//! and never answer), or to take a key that may read but not write cards.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinSet;

use crate::clock::timer;

/// A member the stand-in knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The rfid of the member's first card as enrolled (`0x…`), matched without regard to case;
    /// empty for a member with no card yet. Cards added later are the stand-in's own
    /// ([`FakeEgym::cards`]).
    pub rfid: String,
    /// The `tagFormat` it was enrolled with, if any.
    pub tag_format: Option<String>,
    pub account_id: String,
    pub name: String,
    pub email: String,
    pub membership_id: String,
    /// `membership.membershipType`: `PREMIUM`, or `CORPORATE_FITNESS` for Wellpass members.
    pub membership_type: String,
    /// For a Wellpass member, the `errorCode` its admission is refused with; `None`: admitted.
    pub refusal: Option<String>,
}

impl Member {
    /// A `PREMIUM` member with this enrolled rfid; e-mail and membership id from the account.
    pub fn new(rfid: &str, account_id: &str, name: &str) -> Member {
        Member {
            rfid: rfid.into(),
            tag_format: None,
            account_id: account_id.into(),
            name: name.into(),
            email: format!("{account_id}@example.invalid"),
            membership_id: format!("m-{account_id}"),
            membership_type: "PREMIUM".into(),
            refusal: None,
        }
    }

    /// A Wellpass (corporate-fitness) member, admitted, or refused with `refusal`.
    pub fn wellpass(self, refusal: Option<&str>) -> Member {
        Member {
            membership_type: crate::egym::CORPORATE_FITNESS.into(),
            refusal: refusal.map(str::to_string),
            ..self
        }
    }

    /// With this e-mail address.
    pub fn email(self, email: &str) -> Member {
        Member {
            email: email.into(),
            ..self
        }
    }

    /// A `PREMIUM` member with no card enrolled yet.
    pub fn without_card(account_id: &str, name: &str) -> Member {
        Member::new("", account_id, name)
    }

    /// Enrolled with this `tagFormat`.
    pub fn enrolled_as(self, tag_format: &str) -> Member {
        Member {
            tag_format: Some(tag_format.into()),
            ..self
        }
    }
}

/// The members of the demo gym. Their tags are EM4100 ids as an RDM6300 reads them; two are
/// Wellpass members, one admitted, one whose membership has expired; the last has no card yet,
/// for staff to enrol one.
pub fn demo_members() -> Vec<Member> {
    let mut members: Vec<Member> = [
        ("0x0C000621A5", "a1c3e5f7-0001", "Alex Demo"),
        ("0x4B00423C15", "a1c3e5f7-0002", "Billie Demo"),
        ("0x06001259E3", "a1c3e5f7-0003", "Charlie Demo"),
        ("0x01026F6C3A", "a1c3e5f7-0004", "Dana Demo"),
        ("0x0102B0A5FD", "a1c3e5f7-0005", "Eli Demo"),
    ]
    .into_iter()
    .map(|(rfid, account_id, name)| Member::new(rfid, account_id, name))
    .collect();
    members.push(Member::new("0x0D00A1B2C3", "a1c3e5f7-0006", "Frankie Wellpass").wellpass(None));
    members.push(
        Member::new("0x0D00D4E5F6", "a1c3e5f7-0007", "Gabi Wellpass")
            .wellpass(Some("corporateFitnessMembershipExpired")),
    );
    members.push(Member::without_card("a1c3e5f7-0008", "Hana Demo").email("hana@example.invalid"));
    members
}

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As EGYM does.
    Normal,
    /// Not listening: every connection is refused, open ones are closed.
    Down,
    /// Every call is answered with this status and an EGYM error body.
    Status(u16),
    /// Connections are accepted and requests read, but never answered.
    Stall,
    /// Each request, at random (from this seed): as EGYM would (60 %), 500 (25 %), or stalled
    /// (15 %).
    Random { seed: u64 },
}

/// Which calls an injected answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    Lookups,
    Admissions,
    Visits,
    /// `POST accounts/{id}/rfids`.
    AddRfids,
}

impl Calls {
    fn matches(self, request: &Received) -> bool {
        match self {
            Calls::Lookups => request.lookup_rfid().is_some(),
            Calls::Admissions => request.admission().is_some(),
            Calls::Visits => request.visit().is_some(),
            Calls::AddRfids => request.add_rfid().is_some(),
        }
    }
}

/// A card enrolled at the stand-in: whose, its rfid, and its `tagFormat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    pub account_id: String,
    pub rfid: String,
    pub tag_format: Option<String>,
}

/// An answer to give the next few calls of a kind, whatever else the mode says.
#[derive(Clone, Debug)]
struct Injected {
    calls: Calls,
    status: u16,
    error_code: String,
    left: usize,
}

/// EGYM's rate limit, as the stand-in enforces it: a token bucket per key.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: timer::Instant,
}

impl Bucket {
    /// Takes a token if there is one; returns whether it did, and the tokens left.
    fn take(&mut self) -> (bool, u32) {
        let now = timer::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate)
            .min(self.capacity);
        self.updated = now;
        let taken = self.tokens >= 1.0;
        if taken {
            self.tokens -= 1.0;
        }
        (taken, self.tokens.floor() as u32)
    }
}

/// One request as the stand-in received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub api_key: Option<String>,
    pub user_agent: Option<String>,
    pub content_type: Option<String>,
    /// The body's length in bytes, and the body itself if it is JSON.
    pub body_len: usize,
    pub body: Option<serde_json::Value>,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// When it arrived, on the timers' clock: what a test on paused time measures with.
    pub at: timer::Instant,
    /// The status it was answered with (`None` while stalled).
    pub status: Option<u16>,
}

impl Received {
    /// The account id of a check-in or check-out, and which of the two it was.
    pub fn visit(&self) -> Option<(&str, &str)> {
        let rest = self.path.strip_prefix("/api/v2/accounts/")?;
        let (account, what) = rest.split_once('/')?;
        matches!(what, "checkins" | "checkouts").then_some((account, what))
    }

    /// The `timestamp` of a check-in or check-out body.
    pub fn timestamp(&self) -> Option<i64> {
        self.body.as_ref()?.get("timestamp")?.as_i64()
    }

    /// The rfid of a lookup.
    pub fn lookup_rfid(&self) -> Option<&str> {
        self.path.strip_prefix("/api/v2/accounts/rfid/")
    }

    /// The account id of an admission.
    pub fn admission(&self) -> Option<&str> {
        let rest = self.path.strip_prefix("/api/v2/accounts/")?;
        let account = rest.strip_suffix("/admissions")?;
        (self.method == "POST" && !account.contains('/')).then_some(account)
    }

    /// The account id of a card added (`POST accounts/{id}/rfids`).
    pub fn add_rfid(&self) -> Option<&str> {
        let rest = self.path.strip_prefix("/api/v2/accounts/")?;
        let account = rest.strip_suffix("/rfids")?;
        (self.method == "POST" && !account.contains('/')).then_some(account)
    }

    /// The `tagFormat` query parameter of a lookup.
    pub fn tag_format(&self) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| pair.strip_prefix("tagFormat="))
    }
}

struct State {
    members: Vec<Member>,
    /// Every card enrolled, the members' first cards and those added since.
    cards: Vec<Card>,
    /// Whether the key may add cards (EGYM's keys have permissions of their own).
    rfid_writes: bool,
    api_key: String,
    received: Vec<Received>,
    bucket: Option<Bucket>,
    latency: Duration,
    random: Option<(u64, fastrand::Rng)>,
    /// Accounts admitted so far (`firstAdmission` is true only the first time).
    admitted: std::collections::HashSet<String>,
    injected: Vec<Injected>,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    events: broadcast::Sender<Received>,
    mode: watch::Sender<Mode>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock aborts the process (panic = "abort"), so the lock is
        // never poisoned in a running process.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running stand-in. Dropping it stops it.
#[derive(Debug)]
pub struct FakeEgym {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Drop for FakeEgym {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeEgym {
    /// Starts the stand-in on `127.0.0.1` and a free port, knowing `members` and accepting
    /// `api_key`.
    pub async fn start(members: Vec<Member>, api_key: &str) -> std::io::Result<FakeEgym> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Normal);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cards: members
                    .iter()
                    .filter(|m| !m.rfid.is_empty())
                    .map(|m| Card {
                        account_id: m.account_id.clone(),
                        rfid: m.rfid.clone(),
                        tag_format: m.tag_format.clone(),
                    })
                    .collect(),
                members,
                rfid_writes: true,
                api_key: api_key.to_string(),
                received: Vec::new(),
                bucket: None,
                latency: Duration::ZERO,
                random: None,
                admitted: std::collections::HashSet::new(),
                injected: Vec::new(),
            }),
            changed: Notify::new(),
            events: broadcast::channel(1024).0,
            mode,
        });
        let server = tokio::spawn(serve(listener, addr, shared.clone()));
        Ok(FakeEgym {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, for `egym.base-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// Enforces EGYM's rate limit: a bucket of `burst` tokens refilled at `rate` per second,
    /// starting full; a request without a token is answered 429. Every answer carries
    /// `X-RateLimit-Remaining`.
    pub fn set_rate_limit(&self, rate: f64, burst: u32) {
        self.shared.state().bucket = Some(Bucket {
            rate,
            capacity: f64::from(burst),
            tokens: f64::from(burst),
            updated: timer::Instant::now(),
        });
    }

    /// The next `times` calls of this kind are answered `status` with this `errorCode`.
    pub fn answer_next(&self, calls: Calls, times: usize, status: u16, error_code: &str) {
        self.shared.state().injected.push(Injected {
            calls,
            status,
            error_code: error_code.into(),
            left: times,
        });
    }

    /// Every answer is sent this long after the request arrived.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state().latency = latency;
    }

    pub fn set_api_key(&self, api_key: &str) {
        self.shared.state().api_key = api_key.to_string();
    }

    /// Whether the key may add cards: without the permission, `POST …/rfids` is answered 403
    /// `missingPermission`, and every other call as before.
    pub fn allow_rfid_writes(&self, allowed: bool) {
        self.shared.state().rfid_writes = allowed;
    }

    /// The cards enrolled for `account_id` now, in the order they were enrolled.
    pub fn cards(&self, account_id: &str) -> Vec<Card> {
        self.shared
            .state()
            .cards
            .iter()
            .filter(|c| c.account_id == account_id)
            .cloned()
            .collect()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// Each request as it arrives.
    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        self.shared.events.subscribe()
    }

    /// Waits until `done` holds for the requests received, or `timeout` passes; returns the
    /// requests either way, and whether `done` held.
    #[must_use = "whether `done` held: a wait that ran out proves nothing unless it is asserted"]
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> (bool, Vec<Received>) {
        let deadline = timer::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let received = self.received();
            if done(&received) {
                return (true, received);
            }
            if timer::timeout_at(deadline, changed).await.is_err() {
                let received = self.received();
                return (done(&received), received);
            }
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // The same port is bound again after an outage; connections from before may linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn serve(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut mode = shared.mode.subscribe();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let down = *mode.borrow_and_update() == Mode::Down;
        if down {
            listener = None;
            connections.abort_all();
        } else if listener.is_none() {
            match bind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        api_key: header("x-api-key"),
        user_agent: header("user-agent"),
        content_type: header("content-type"),
        body_len: body.len(),
        body: serde_json::from_slice(&body).ok(),
        at_ms: crate::clock::wall_now().as_millis(),
        at: timer::Instant::now(),
        status: None,
    };
    let mode = *shared.mode.borrow();
    let (latency, rate_limit, outcome, injected) = {
        let mut state = shared.state();
        let rate_limit = state.bucket.as_mut().map(Bucket::take);
        let injected = state
            .injected
            .iter_mut()
            .find(|i| i.left > 0 && i.calls.matches(&received))
            .map(|i| {
                i.left -= 1;
                (i.status, i.error_code.clone())
            });
        let outcome = match mode {
            Mode::Random { seed } => {
                if state.random.as_ref().is_none_or(|(s, _)| *s != seed) {
                    state.random = Some((seed, fastrand::Rng::with_seed(seed)));
                }
                let roll = state.random.as_mut().map_or(0.0, |(_, rng)| rng.f64());
                match roll {
                    r if r < 0.60 => Mode::Normal,
                    r if r < 0.85 => Mode::Status(500),
                    _ => Mode::Stall,
                }
            }
            other => other,
        };
        (state.latency, rate_limit, outcome, injected)
    };
    if !latency.is_zero() {
        timer::sleep(latency).await;
    }
    let (status, body) = match (rate_limit, outcome) {
        (Some((false, _)), _) => (
            429,
            error_body(429, "tooManyRequests", "Rate limit exceeded", None),
        ),
        (_, Mode::Stall) => {
            record(&shared, received);
            return std::future::pending().await;
        }
        (_, Mode::Status(status)) => (
            status,
            error_body(status, "injected", "injected failure", None),
        ),
        (_, _) if injected.is_some() => {
            let (status, code) = injected.expect("checked");
            (status, error_body(status, &code, "injected failure", None))
        }
        (_, Mode::Normal | Mode::Down | Mode::Random { .. }) => {
            answer(&mut shared.state(), &received)
        }
    };
    received.status = Some(status);
    record(&shared, received);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status != 204 {
        response.headers_mut().insert(
            "content-type",
            "application/json".parse().expect("valid header"),
        );
    }
    if let Some((_, remaining)) = rate_limit {
        response
            .headers_mut()
            .insert("x-ratelimit-remaining", remaining.into());
    }
    Ok(response)
}

fn record(shared: &Shared, received: Received) {
    shared.state().received.push(received.clone());
    let _ = shared.events.send(received);
    shared.changed.notify_waiters();
}

/// What EGYM would answer: status and body.
fn answer(state: &mut State, request: &Received) -> (u16, String) {
    match request.api_key.as_deref() {
        None => {
            return (
                401,
                error_body(401, "unauthorized", "Missing API key", None),
            );
        }
        Some(key) if key != state.api_key => {
            return (
                403,
                error_body(
                    403,
                    "missingPermission",
                    "Invalid API key or missing permission",
                    None,
                ),
            );
        }
        Some(_) => {}
    }
    if request.method == "POST"
        && let Some(account) = request.admission()
    {
        let Some(member) = state.members.iter().find(|m| m.account_id == account) else {
            return (
                404,
                error_body(404, "notFound", "Account not found", Some("ACCOUNT")),
            );
        };
        if member.membership_type != crate::egym::CORPORATE_FITNESS {
            return (
                400,
                error_body(
                    400,
                    "notCorporateFitness",
                    "Not a corporate-fitness member",
                    None,
                ),
            );
        }
        if let Some(code) = &member.refusal {
            return (403, error_body(403, code, "Admission refused", None));
        }
        let first = state.admitted.insert(account.to_string());
        return (
            200,
            serde_json::json!({ "firstAdmission": first }).to_string(),
        );
    }
    if let Some(account) = request.add_rfid() {
        return add_rfid(state, account, request);
    }
    let by_account: HashMap<&str, &Member> = state
        .members
        .iter()
        .map(|m| (m.account_id.as_str(), m))
        .collect();
    let path = request.path.strip_prefix("/api/v2/accounts/").unwrap_or("");
    let segments: Vec<&str> = path.split('/').collect();
    let decoded = |segment: &str| percent_decode(segment);
    if request.method == "GET" {
        let found = match segments.as_slice() {
            ["rfid", rfid] => Some((
                state
                    .cards
                    .iter()
                    .find(|c| c.rfid.eq_ignore_ascii_case(&decoded(rfid)))
                    .and_then(|card| by_account.get(card.account_id.as_str()).copied()),
                "No member with this RFID",
                "RFID",
            )),
            ["email", email] => Some((
                state.members.iter().find(|m| m.email == decoded(email)),
                "No member with this e-mail",
                "ACCOUNT",
            )),
            ["membership", id] => Some((
                state
                    .members
                    .iter()
                    .find(|m| m.membership_id == decoded(id)),
                "No member with this membership id",
                "ACCOUNT",
            )),
            _ => None,
        };
        if let Some((member, missing, entity)) = found {
            return match member {
                Some(member) => (200, account_body(member)),
                None => (404, error_body(404, "notFound", missing, Some(entity))),
            };
        }
        if let [account, "rfids"] = segments.as_slice() {
            return match by_account.get(account) {
                Some(_) => {
                    let cards: Vec<serde_json::Value> = state
                        .cards
                        .iter()
                        .filter(|c| c.account_id == *account)
                        .map(rfid_body)
                        .collect();
                    (200, serde_json::Value::from(cards).to_string())
                }
                None => (
                    404,
                    error_body(404, "notFound", "Account not found", Some("ACCOUNT")),
                ),
            };
        }
    }
    if request.method == "POST"
        && let Some((account, _)) = request.visit()
    {
        if !by_account.contains_key(account) {
            return (
                404,
                error_body(404, "notFound", "Account not found", Some("ACCOUNT")),
            );
        }
        return match request.timestamp() {
            Some(_) => (204, String::new()),
            None => (
                400,
                error_body(400, "invalidRequest", "timestamp is required", None),
            ),
        };
    }
    (
        404,
        error_body(404, "notFound", "No such endpoint", Some("UNKNOWN")),
    )
}

/// An `RfidDTO`.
fn rfid_body(card: &Card) -> serde_json::Value {
    let mut rfid = serde_json::json!({ "rfid": card.rfid });
    if let Some(format) = &card.tag_format {
        rfid["tagFormat"] = serde_json::json!(format);
    }
    rfid
}

/// `POST accounts/{account}/rfids` (`addRFIDToUser`): the key must have the permission to write
/// cards (else 403 `missingPermission`, as for any permission a key lacks); the account must
/// exist (else 404 with entity `ACCOUNT`); the body must be an `RfidDTO` (`rfid` of whole hex
/// bytes after `0x`, `tagFormat` one of the three formats), else 400 with `fieldErrors`. The
/// answer is 200 with the card. Adding a card the member has already changes nothing.
///
/// A card another member holds: the document lists 400 for a request EGYM will not carry out,
/// and documents no `errorCode` for this one. The stand-in answers 400 `rfidAlreadyAssigned`;
/// the client relies on no code: it looks the card up before adding it, and otherwise says
/// EGYM's own message.
fn add_rfid(state: &mut State, account: &str, request: &Received) -> (u16, String) {
    if !state.rfid_writes {
        return (
            403,
            error_body(
                403,
                "missingPermission",
                "The API key lacks the permission to manage RFIDs",
                None,
            ),
        );
    }
    if !state.members.iter().any(|m| m.account_id == account) {
        return (
            404,
            error_body(404, "notFound", "Account not found", Some("ACCOUNT")),
        );
    }
    let field_error = |field: &str, message: &str| {
        let mut body: serde_json::Value = serde_json::from_str(&error_body(
            400,
            "validationError",
            "The request is not valid",
            None,
        ))
        .expect("error_body makes JSON");
        body["fieldErrors"] = serde_json::json!([{ "field": field, "message": message }]);
        (400, body.to_string())
    };
    let body = request.body.as_ref().and_then(serde_json::Value::as_object);
    let rfid = body.and_then(|b| b.get("rfid")).and_then(|r| r.as_str());
    let Some(rfid) = rfid.filter(|r| is_rfid(r)) else {
        return field_error("rfid", "must match ^0x([0-9a-fA-F]{2})+$");
    };
    let tag_format = match body.and_then(|b| b.get("tagFormat")) {
        None => None,
        Some(serde_json::Value::String(f))
            if ["HITAG1", "MIFARE", "LEGIC"].contains(&f.as_str()) =>
        {
            Some(f.clone())
        }
        Some(_) => return field_error("tagFormat", "must be one of HITAG1, MIFARE, LEGIC"),
    };
    match state
        .cards
        .iter()
        .find(|c| c.rfid.eq_ignore_ascii_case(rfid))
    {
        Some(card) if card.account_id != account => (
            400,
            error_body(
                400,
                "rfidAlreadyAssigned",
                "The RFID is assigned to another account",
                None,
            ),
        ),
        Some(card) => (200, rfid_body(card).to_string()),
        None => {
            let card = Card {
                account_id: account.to_string(),
                rfid: rfid.to_string(),
                tag_format,
            };
            let body = rfid_body(&card).to_string();
            state.cards.push(card);
            (200, body)
        }
    }
}

/// `^0x([0-9a-fA-F]{2})+$`.
fn is_rfid(text: &str) -> bool {
    text.strip_prefix("0x").is_some_and(|hex| {
        !hex.is_empty() && hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A `MemberAccountDTO`.
fn account_body(member: &Member) -> String {
    let (first, last) = member.name.split_once(' ').unwrap_or((&member.name, ""));
    serde_json::json!({
        "accountId": member.account_id,
        "firstName": first,
        "lastName": last,
        "email": member.email,
        "gender": "FEMALE",
        "membership": {
            "membershipId": member.membership_id,
            "membershipType": member.membership_type,
            "startOfContract": "2025-01-01",
        },
    })
    .to_string()
}

/// A path segment as sent, `%XX` escapes decoded.
fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

fn error_body(status: u16, error_code: &str, message: &str, entity: Option<&str>) -> String {
    let mut body = serde_json::json!({
        "status": status,
        "errorCode": error_code,
        "message": message,
        "requestId": "fake-egym",
    });
    if let Some(entity) = entity {
        body["metadata"] = serde_json::json!({ "entity": entity });
    }
    body.to_string()
}
