//! The screen's HTTP server: the two pages (embedded in the binary), the event stream, and
//! `/metrics`.
//!
//! It runs beside the service and never in its way: if the address cannot be bound (the port is
//! taken), it says why in the journal and in `status`, tries again with backoff, and taps are
//! recorded and delivered meanwhile as always. It holds at most `MAX_CONNECTIONS` connections,
//! and `MAX_CONNECTIONS_PER_CLIENT` from any one client ([`super::limits`]), each with a bounded
//! request buffer and a deadline for its headers, so a browser, or anything else on the network,
//! cannot use up the service's file descriptors or memory, nor leave a kiosk without a
//! connection. On a loopback address it answers only requests addressed to this machine by name
//! (`Host: 127.0.0.1`, `localhost`, `[::1]`), so a web page open in a browser on the box cannot
//! reach it through a rebound DNS name. Who may see which page is [`super::access`]'s to say.
//! `HEAD` is answered as `GET` is, without the body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::access::{self, Given, Resource, Verdict};
use super::enrol::{self, EnrolPage};
use super::limits::{Admitted, Client, Limits};
pub use super::limits::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT};
use super::{Audience, Screen, Sent, StaffContext, staff_json};
use crate::clock::Clock;
use crate::clock::timer;
use crate::enrolment::Enroller;
use crate::metrics::{self, Gauges, Metrics};
use crate::store::Store;

const MEMBER_PAGE: &str = include_str!("pages/member.html");
const STAFF_PAGE: &str = include_str!("pages/staff.html");

/// The first wait before binding again; it doubles up to the maximum.
const BIND_RETRY_FIRST: Duration = Duration::from_secs(1);
const BIND_RETRY_MAX: Duration = Duration::from_secs(60);
/// A stream with nothing to say for this long says `alive`: dead connections are found, and a
/// page that hears nothing for a few of these knows the service is gone (the pages say so).
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// A browser that loses the stream tries again after this long.
const RECONNECT_MS: u64 = 2_000;
/// The staff page's data is refreshed at most this often while something changes, and at
/// least this often while a staff page is open.
const STAFF_MIN_GAP: Duration = Duration::from_millis(250);
const STAFF_REFRESH: Duration = Duration::from_secs(2);
/// Taps listed on the staff page.
const STAFF_TAPS: usize = 50;
/// A connection that has not sent a request's headers within this long is closed (an idle
/// keep-alive connection too).
const HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// A request's headers may take at most this much memory.
const MAX_REQUEST_BUFFER: usize = 16 * 1024;

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// `[screen]`, as the server needs it.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Required for the staff page, its events and `/metrics`, for every page from another
    /// machine (always set for an address that is not loopback), and for enrolling on any
    /// address.
    pub token: Option<String>,
    /// How far back the staff page lists taps and refused admissions (`staff-history`).
    pub staff_history: Duration,
    /// Enrols cards for the staff page's Enrol action (`None`: the page cannot enrol).
    pub enroller: Option<Enroller>,
    /// The box's local time zone (the one `closing-time` is read in): the staff page's times.
    pub time_zone: jiff::tz::TimeZone,
}

/// What each request needs.
#[derive(Debug)]
pub(super) struct Context {
    screen: Screen,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Clock,
    token: Option<String>,
    pub(super) enroller: Option<Enroller>,
    /// Whether the page may enrol, and its CSRF token.
    pub(super) enrol: EnrolPage,
    time_zone: jiff::tz::TimeZone,
    /// Serving on a loopback address: requests must name this machine (see the module's notes).
    loopback: bool,
    /// Staff pages open now: the staff data is refreshed only while there are some.
    staff_open: AtomicUsize,
    staff_history: Duration,
}

/// Serves the screen until `stopping` turns true; `bound` hears the address once listening.
pub async fn serve(
    settings: ServerSettings,
    screen: Screen,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Clock,
    mut stopping: watch::Receiver<bool>,
    bound: watch::Sender<Option<SocketAddr>>,
) {
    let enrol = EnrolPage::new(settings.enroller.is_some(), settings.token.as_deref());
    let ctx = Arc::new(Context {
        screen,
        store,
        metrics,
        clock,
        enrol,
        enroller: settings.enroller,
        token: settings.token,
        time_zone: settings.time_zone,
        loopback: settings.listen.ip().is_loopback(),
        staff_open: AtomicUsize::new(0),
        staff_history: settings.staff_history,
    });
    let limits = Limits::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT);
    let mut tasks = JoinSet::new();
    tasks.spawn(refresh_staff(ctx.clone()));
    tasks.spawn(tick_views(ctx.screen.clone()));
    let mut retry = BIND_RETRY_FIRST;
    let mut said_failing = false;
    let listener = loop {
        match TcpListener::bind(settings.listen).await {
            Ok(listener) => break listener,
            Err(e) => {
                let state = format!(
                    "NOT SERVING: cannot listen on {}: {e}; trying again",
                    settings.listen
                );
                if !std::mem::replace(&mut said_failing, true) {
                    warn!(listen = %settings.listen, error = %e, "the screen cannot listen on {}: {e}. Taps are recorded and delivered as always; trying again every minute at most", settings.listen);
                    let now = ctx.clock.now().wall;
                    let _ = ctx.store.set_part_state("screen", state, now).await;
                }
                tokio::select! {
                    () = timer::sleep(retry) => {}
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
                retry = (retry * 2).min(BIND_RETRY_MAX);
            }
        }
    };
    let address = listener.local_addr().unwrap_or(settings.listen);
    info!(listen = %address, "the screen is served at http://{address}/ (staff: /staff)");
    let now = ctx.clock.now().wall;
    let _ = ctx
        .store
        .set_part_state("screen", format!("serving at http://{address}/"), now)
        .await;
    bound.send_replace(Some(address));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = tasks.join_next() => continue,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let client = Client::of(peer.ip());
                let connection = match limits.admit(client) {
                    Admitted::Yes(connection) => connection,
                    Admitted::Full { say } => {
                        if say {
                            warn!(%peer, "the screen holds {MAX_CONNECTIONS} connections already; closing new ones until some end (said once)");
                        }
                        drop(stream);
                        continue;
                    }
                    Admitted::ClientFull { say } => {
                        if say {
                            warn!(%client, "the screen holds {MAX_CONNECTIONS_PER_CLIENT} connections from {client} already; closing its new ones until some end (said again once they all have)");
                        }
                        drop(stream);
                        continue;
                    }
                };
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, Infallible>(handle(ctx, request, peer).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_DEADLINE)
                        .max_buf_size(MAX_REQUEST_BUFFER)
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        debug!(error = %e, "screen connection ended");
                    }
                    drop(connection);
                });
            }
            Err(e) => {
                warn!(error = %e, "the screen cannot accept a connection");
                timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tasks.abort_all();
}

async fn handle(ctx: Arc<Context>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header("host");
    if ctx.loopback && !host.is_some_and(access::names_this_machine) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "on a loopback address the screen answers only http://127.0.0.1, http://localhost or http://[::1]\n",
        );
    }
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let resource = Resource::of(
        &path,
        query_param(&query, "staff").is_some_and(|v| v == "1"),
    );
    let given = Given {
        bearer: header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string),
        query: query_param(&query, "token"),
        cookie: header("cookie").and_then(access::from_cookie),
    };
    let on_this_machine = access::on_this_machine(peer.ip(), host);
    let verdict = access::decide(resource, on_this_machine, ctx.token.as_deref(), &given);
    // The Enrol action takes its POSTs, and says itself whether it is on at all.
    if resource == Resource::Enrol {
        let authorised = verdict != Verdict::Refused;
        return enrol::handle(&ctx, request, peer, authorised).await;
    }
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        set(&mut response, "allow", "GET, HEAD");
        return response;
    }
    let token = ctx.token.as_deref().unwrap_or_default();
    let mut response = match verdict {
        Verdict::Refused => return refused(resource),
        Verdict::SetCookie => {
            // The one-time URL: the browser keeps the token, and goes on without it in the
            // address (nor in its history).
            let mut response = text(
                StatusCode::SEE_OTHER,
                "this browser keeps the screen's token now\n",
            );
            set_text(
                &mut response,
                "location",
                &access::without_token(&path, &query),
            );
            set_text(&mut response, "set-cookie", &access::set_cookie(token));
            set(&mut response, "cache-control", "no-store");
            return response;
        }
        Verdict::Open | Verdict::Token | Verdict::Cookie => match resource {
            Resource::MemberPage => page(MEMBER_PAGE),
            Resource::StaffPage => page(STAFF_PAGE),
            Resource::MemberEvents | Resource::StaffEvents if head => events_head(),
            Resource::MemberEvents | Resource::StaffEvents => {
                let audience = if resource == Resource::StaffEvents {
                    Audience::Staff
                } else {
                    Audience::Member
                };
                let last = header("last-event-id").map(str::to_string);
                events(ctx.clone(), audience, last.as_deref()).await
            }
            Resource::Metrics => metrics(&ctx).await,
            Resource::Enrol => unreachable!("answered above"),
            Resource::Health => text(StatusCode::OK, "ok\n"),
            Resource::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    // Let in by the cookie: it is set again, so a browser that keeps using it keeps it.
    if verdict == Verdict::Cookie {
        set_text(&mut response, "set-cookie", &access::set_cookie(token));
    }
    response
}

/// The answer to a request without the token it needs.
fn refused(resource: Resource) -> Response<Body> {
    let says = if resource.is_page() || resource == Resource::MemberEvents {
        "this screen needs its token on this device: open this address once with ?token=... \
         added (the browser keeps it), or send Authorization: Bearer ...\n"
    } else {
        "this page needs the screen's token: ?token=... or Authorization: Bearer ...\n"
    };
    text(StatusCode::UNAUTHORIZED, says)
}

/// The value of `name` in a query string, percent-decoded.
pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

pub(super) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    set(&mut response, "content-type", "text/plain; charset=utf-8");
    response
}

fn page(html: &'static str) -> Response<Body> {
    let mut response = Response::new(full(html));
    set(&mut response, "content-type", "text/html; charset=utf-8");
    set(&mut response, "cache-control", "no-store");
    // Nothing from elsewhere, ever.
    set(
        &mut response,
        "content-security-policy",
        "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
    );
    response
}

pub(super) fn set(response: &mut Response<Body>, name: &'static str, value: &'static str) {
    response
        .headers_mut()
        .insert(name, hyper::header::HeaderValue::from_static(value));
}

/// Sets a header whose value is made at run time (one that cannot be a header value is left
/// out: a token is checked to be printable when it is read).
fn set_text(response: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

async fn metrics(ctx: &Context) -> Response<Body> {
    let now = ctx.clock.now();
    let gauges = match ctx.store.status().await {
        Ok(status) => Gauges {
            events: vec![
                ("pending", status.events.pending),
                ("unknown_tag", status.events.unknown_tag),
                ("rejected", status.events.rejected),
                ("delivered", status.events.delivered),
            ],
            oldest_pending_age_s: status
                .oldest_pending
                .map(|t| now.steady.since(t).as_secs_f64()),
            waiting_for_enrolment: status.events.waiting_for_enrolment,
            readers: status
                .readers
                .iter()
                .map(|r| (r.name.clone(), r.connected))
                .collect(),
            delivery_paused: status.paused_since.is_some(),
            clock_trusted: ctx.clock.trust().trusted,
            held_for_clock: status.clock.held,
        },
        Err(e) => {
            warn!(error = %e, "cannot read the database for /metrics");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database cannot be read\n",
            );
        }
    };
    let mut response = Response::new(full(ctx.metrics.render(&gauges)));
    set(
        &mut response,
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8",
    );
    response
}

/// The staff page's data, fresh from the database: taps and refused admissions of the last
/// `staff-history` only.
async fn staff_now(ctx: &Context) -> Option<String> {
    let now = ctx.clock.now();
    let today = crate::clock::local_day(now.wall, &ctx.time_zone);
    let status = ctx.store.status().await.ok()?;
    let mut staff = ctx.store.staff(STAFF_TAPS, today).await.ok()?;
    let history = ctx.staff_history.as_millis() as i64;
    staff
        .taps
        .retain(|row| now.wall.millis_since(row.tapped_at) <= history);
    staff
        .refused
        .retain(|row| now.wall.millis_since(row.tapped_at) <= history);
    let tags = staff
        .inside
        .iter()
        .map(|m| m.tag.as_str())
        .chain(staff.taps.iter().map(|t| t.tag.as_str()))
        .chain(staff.refused.iter().map(|t| t.tag.as_str()));
    let names = ctx.screen.first_names(tags);
    Some(staff_json(
        &status,
        &staff,
        &StaffContext {
            now: &now,
            zone: &ctx.time_zone,
            names: &names,
        },
    ))
}

/// While staff pages are open: their data again on each change (at most every
/// `STAFF_MIN_GAP`) and every `STAFF_REFRESH`.
async fn refresh_staff(ctx: Arc<Context>) {
    loop {
        tokio::select! {
            () = ctx.screen.staff_change() => {}
            () = timer::sleep(STAFF_REFRESH) => {}
        }
        if ctx.staff_open.load(Ordering::Relaxed) > 0
            && let Some(data) = staff_now(&ctx).await
        {
            ctx.screen.publish_staff(data);
        }
        timer::sleep(STAFF_MIN_GAP).await;
    }
}

/// Moves the member screen on as time passes: "will sync" for a check that takes too long, and
/// each answer dropped from memory (the member's first name with it) once its time is over.
async fn tick_views(screen: Screen) {
    loop {
        match screen.tick() {
            Some(wait) => tokio::select! {
                () = screen.shown() => {}
                () = timer::sleep(wait) => {}
            },
            None => screen.shown().await,
        }
    }
}

/// `text/event-stream` for `audience`: first the state it lacks, then each event as it comes.
async fn events(ctx: Arc<Context>, audience: Audience, last: Option<&str>) -> Response<Body> {
    let staff_page = (audience == Audience::Staff).then(|| StaffPage::open(ctx.clone()));
    if staff_page.is_some()
        && let Some(data) = staff_now(&ctx).await
    {
        ctx.screen.publish_staff(data);
    }
    let member_screen = staff_page
        .is_none()
        .then(|| ctx.screen.member_screen_open());
    let (first, receiver) = ctx.screen.subscribe(audience, last);
    let run = ctx.screen.run().to_string();
    let hello = format!(
        "retry: {RECONNECT_MS}\n\nevent: hello\ndata: {}\n\n",
        serde_json::json!({ "build": format!("{} {}", metrics::VERSION, metrics::COMMIT) })
    );
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(8);
    // The stream runs as long as the browser listens.
    tokio::spawn(async move {
        let mut open = sender.send(Frame::data(Bytes::from(hello))).await.is_ok();
        // By value: a name in the answer on screen is not kept for as long as the stream lasts.
        for sent in first {
            if open {
                open = sender.send(Frame::data(sse(&run, &sent))).await.is_ok();
            }
        }
        if open {
            stream_events(&mut sender, receiver, audience, &run).await;
        }
        drop(staff_page);
        drop(member_screen);
    });
    let mut response = Response::new(body.boxed());
    set(&mut response, "content-type", "text/event-stream");
    set(&mut response, "cache-control", "no-cache");
    response
}

/// The answer to `HEAD /events`: a stream's headers, no stream (and no screen counted as open).
fn events_head() -> Response<Body> {
    // A body that ends at once and says no length, as a stream's does.
    let (_, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
    let mut response = Response::new(body.boxed());
    set(&mut response, "content-type", "text/event-stream");
    set(&mut response, "cache-control", "no-cache");
    response
}

/// A staff page's stream, counted while it lasts (also when its request is dropped early).
struct StaffPage(Arc<Context>);

impl StaffPage {
    fn open(ctx: Arc<Context>) -> StaffPage {
        ctx.staff_open.fetch_add(1, Ordering::Relaxed);
        StaffPage(ctx)
    }
}

impl Drop for StaffPage {
    fn drop(&mut self) {
        // The last staff page closed: its data is not kept in memory until the next one opens
        // (which reads it afresh from the database).
        if self.0.staff_open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.screen.staff_closed();
        }
    }
}

async fn stream_events(
    sender: &mut http_body_util::channel::Sender<Bytes, Infallible>,
    mut receiver: broadcast::Receiver<Arc<Sent>>,
    audience: Audience,
    run: &str,
) {
    // Counted from what this stream last sent: events for the other audience do not count.
    let mut quiet_until = timer::Instant::now() + KEEP_ALIVE;
    loop {
        let next = timer::timeout_at(quiet_until, receiver.recv()).await;
        let frame = match next {
            Ok(Ok(sent)) if Screen::for_audience(&sent, audience) => sse(run, &sent),
            Ok(Ok(_)) => continue,
            // Fell behind: the next event carries the whole state anyway.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => return,
            // No `id:`: the browser keeps the last event's id to resume from.
            Err(_) => Bytes::from_static(b"event: alive\ndata: {}\n\n"),
        };
        if sender.send(Frame::data(frame)).await.is_err() {
            return;
        }
        quiet_until = timer::Instant::now() + KEEP_ALIVE;
    }
}

/// One event in the stream's format.
fn sse(run: &str, sent: &Sent) -> Bytes {
    Bytes::from(format!(
        "id: {run}-{}\nevent: {}\ndata: {}\n\n",
        sent.number,
        sent.name(),
        sent.data
    ))
}
