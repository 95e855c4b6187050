//! The delivery worker: claims due events, resolves their tags, posts them to EGYM, and records
//! each outcome as DESIGN.md's outcome table says.
//!
//! - It wakes at once when the recorder commits an event, when a retry falls due, and when a
//!   request finishes; it never polls.
//! - Only the oldest open event of a tag is ever in flight, so each tag's events reach EGYM in
//!   the order they happened; events of different tags go out side by side. Due events go oldest
//!   first, except that a tag tapped in the last `LIVE_WINDOW` goes ahead of a backlog.
//! - Posts in flight are few (see [`posts_in_flight`]): each one in flight when the process dies
//!   may reach EGYM twice.
//! - Every request first takes a token from the client's bucket ([`egym::rate_limit`]), so the
//!   daemon keeps under EGYM's limit by itself.
//! - After a failure that calls for a retry, the event's next attempt is stored in its row
//!   (exponential backoff with full jitter, capped), and the whole worker holds off for the same
//!   time: when EGYM is down or overloaded, one event probes, the rest wait.
//! - A refused key (401/403) pauses delivery: no row changes, one error line every few minutes,
//!   and a probe every [`PAUSE_PROBE_INTERVAL`] that reads the key again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::clock::now_ms;
use crate::config::{ApiKey, ApiKeySource};
use crate::daemon::liveness::Pulse;
use crate::egym::{self, Call, Failure, Verdict};
use crate::store::{Answer, OpenEvent, Store, StoreError};
use crate::tag;

/// Events in flight at once (each of a different tag), at least: their lookups go side by side.
pub const MIN_EVENTS_IN_FLIGHT: usize = 4;
/// Posts in flight are limited to what the rate needs if a request takes this long. Every post
/// in flight when the process dies may reach EGYM twice (it has no idempotency key), so no more
/// are sent at once than keeping to the rate requires: at the default 6 per second, one.
const POST_LATENCY_BUDGET: Duration = Duration::from_millis(100);
/// A tap made this recently is live: its tag's first event goes ahead of older events, so a
/// member tapping now does not wait behind a backlog left by an outage.
const LIVE_WINDOW: Duration = Duration::from_secs(30);
/// The worker looks at the outbox at least this often, even with nothing due. A safety net:
/// events are found through wake-ups and due times, never by this.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// After a database error the worker waits this long before it tries again.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(5);
/// The first retry waits up to this long; each further one up to twice as long as the last.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
const RETRY_CAP: Duration = Duration::from_secs(300);
/// An unknown tag is asked about again after this long, then less and less often.
const UNKNOWN_TAG_FIRST_RETRY: Duration = Duration::from_secs(300);
const UNKNOWN_TAG_RETRY_CAP: Duration = Duration::from_secs(3600);
/// How long EGYM's "no member has this tag" is believed without asking again.
const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(600);
/// While the key is refused, one probe this often (the key is read again for it).
pub const PAUSE_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// While the key is refused, the error line is repeated this often.
const PAUSE_LOG_INTERVAL: Duration = Duration::from_secs(300);
/// After EGYM could not be reached, a newly recorded tap may try it again this soon, rather
/// than wait for the backoff: the network is often back before the backoff runs out.
const UNREACHABLE_PROBE_GAP: Duration = Duration::from_secs(5);
/// On shutdown, requests in flight get this long to finish; then they are abandoned and their
/// events stay pending.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Settings from `[egym]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `rate-limit-per-second`: sets how many posts may be in flight at once.
    pub rate_per_second: f64,
    pub account_cache_ttl: Duration,
    pub unknown_tag_retry_window: Duration,
}

/// How many posts may be in flight at once for a rate: enough to keep up with it if each takes
/// `POST_LATENCY_BUDGET`, and no more.
pub fn posts_in_flight(rate_per_second: f64) -> usize {
    ((rate_per_second * POST_LATENCY_BUDGET.as_secs_f64()).ceil() as usize).clamp(1, 64)
}

/// How long the `attempts`-th retry waits: a random time up to `RETRY_BASE · 2^attempts`,
/// capped at `RETRY_CAP` ("full jitter"). `random` is in `[0, 1)`.
pub fn retry_delay(attempts: u32, random: f64) -> Duration {
    let ceiling = RETRY_BASE
        .saturating_mul(1u32 << attempts.min(20))
        .min(RETRY_CAP);
    ceiling.mul_f64(random.clamp(0.0, 1.0))
}

/// How long an event for an unknown tag waits before its tag is asked about again.
pub fn unknown_tag_delay(unknown_attempts: u32) -> Duration {
    UNKNOWN_TAG_FIRST_RETRY
        .saturating_mul(1u32 << unknown_attempts.min(10))
        .min(UNKNOWN_TAG_RETRY_CAP)
}

/// What became of one delivery attempt.
#[derive(Debug)]
enum Outcome {
    Delivered { account_id: String, status: u16 },
    Retry { failure: Failure },
    Paused { failure: Failure },
    UnknownTag { failure: Option<Failure> },
    Rejected { failure: Failure },
}

/// What the attempt needs, shared by the tasks in flight.
#[derive(Debug)]
struct Context {
    store: Store,
    client: egym::Client,
    posts: Semaphore,
    settings: Settings,
}

/// Why the worker holds back all claims for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldCause {
    Unreachable,
    Overloaded,
    Database,
}

#[derive(Debug)]
struct Paused {
    next_probe: Instant,
    last_logged: Instant,
}

enum Wake {
    Recorded,
    Timer,
    Asked,
    Finished(Box<OpenEvent>, Result<Outcome, StoreError>),
    Shutdown,
}

/// The worker.
#[derive(Debug)]
pub struct Worker {
    ctx: Arc<Context>,
    max_in_flight: usize,
    key_source: ApiKeySource,
    key: ApiKey,
    recorded: Arc<Notify>,
    in_flight_tags: HashSet<String>,
    hold: Option<(Instant, HoldCause)>,
    last_unreachable_probe: Option<Instant>,
    /// Since when requests have been failing (transport errors, 408, 429, 5xx), if they are.
    failing_since: Option<Instant>,
    paused: Option<Paused>,
    /// The last database call failed (and the error was said).
    database_failing: bool,
}

impl Worker {
    pub fn new(
        store: Store,
        client: egym::Client,
        settings: Settings,
        key_source: ApiKeySource,
        key: ApiKey,
        recorded: Arc<Notify>,
    ) -> Self {
        let posts = posts_in_flight(settings.rate_per_second);
        Worker {
            max_in_flight: posts.max(MIN_EVENTS_IN_FLIGHT),
            ctx: Arc::new(Context {
                store,
                client,
                posts: Semaphore::new(posts),
                settings,
            }),
            key_source,
            key,
            recorded,
            in_flight_tags: HashSet::new(),
            hold: None,
            last_unreachable_probe: None,
            failing_since: None,
            paused: None,
            database_failing: false,
        }
    }

    /// Runs until `shutdown` turns true; returns once in-flight requests are finished or
    /// abandoned. A database error does not stop it: it says so and tries again shortly.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, mut pulse: Pulse) {
        let mut tasks: JoinSet<(Box<OpenEvent>, Result<Outcome, StoreError>)> = JoinSet::new();
        loop {
            let timer = match self.claim_and_start(&mut tasks).await {
                Ok(timer) => timer,
                Err(e) => Some(self.database_failed(&e)),
            };
            let wake = tokio::select! {
                () = self.recorded.notified() => Wake::Recorded,
                () = sleep_until(timer) => Wake::Timer,
                () = pulse.asked() => Wake::Asked,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => match joined {
                    Ok((event, outcome)) => Wake::Finished(event, outcome),
                    Err(e) => {
                        // Tasks are only aborted at shutdown and a panic aborts the process.
                        error!(error = %e, "delivery task ended abnormally");
                        continue;
                    }
                },
                _ = shutdown.wait_for(|stop| *stop) => Wake::Shutdown,
            };
            match wake {
                Wake::Recorded => self.on_recorded(),
                Wake::Timer => {}
                Wake::Asked => pulse.answer(),
                Wake::Finished(event, outcome) => self.finished(*event, outcome).await,
                Wake::Shutdown => break,
            }
        }
        self.finish(tasks).await;
    }

    /// Lets requests in flight finish for a short while, records what they achieved, and
    /// abandons the rest (their events stay pending).
    async fn finish(mut self, mut tasks: JoinSet<(Box<OpenEvent>, Result<Outcome, StoreError>)>) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(Ok((event, outcome)))) => self.finished(*event, outcome).await,
                Ok(_) => {}
                Err(_) => {
                    info!(
                        abandoned = tasks.len(),
                        "stopping: requests still in flight abandoned; their events stay pending"
                    );
                    tasks.abort_all();
                    break;
                }
            }
        }
    }

    /// Records what one attempt achieved.
    async fn finished(&mut self, event: OpenEvent, outcome: Result<Outcome, StoreError>) {
        self.in_flight_tags.remove(&event.tag);
        let recorded = match outcome {
            Ok(outcome) => self.record_outcome(event, outcome).await,
            Err(e) => Err(e),
        };
        match recorded {
            Ok(()) => self.database_failing = false,
            Err(e) => {
                self.database_failed(&e);
            }
        }
    }

    /// Holds delivery back for a while after a database error (the event concerned stays as it
    /// was, and is tried again); says so once until the database works again.
    fn database_failed(&mut self, error: &StoreError) -> Instant {
        if !std::mem::replace(&mut self.database_failing, true) {
            error!(error = %error, "delivery cannot use the database; trying again every few seconds");
        }
        let until = Instant::now() + STORE_ERROR_PAUSE;
        self.hold = Some((until, HoldCause::Database));
        until
    }

    /// A newly recorded event: if EGYM was unreachable, let it try again now rather than wait
    /// for the backoff (at most every few seconds); an overloaded EGYM is left alone.
    fn on_recorded(&mut self) {
        if let Some((_, HoldCause::Unreachable)) = self.hold {
            let now = Instant::now();
            if self
                .last_unreachable_probe
                .is_none_or(|at| now.duration_since(at) >= UNREACHABLE_PROBE_GAP)
            {
                self.last_unreachable_probe = Some(now);
                self.hold = None;
            }
        }
    }

    /// Starts what may start now; returns when the worker should next look, if no other
    /// wake-up comes first.
    async fn claim_and_start(
        &mut self,
        tasks: &mut JoinSet<(Box<OpenEvent>, Result<Outcome, StoreError>)>,
    ) -> Result<Option<Instant>, StoreError> {
        let now = Instant::now();
        if let Some((until, _)) = self.hold {
            if until > now {
                return Ok(Some(until));
            }
            self.hold = None;
        }
        let mut capacity = self.max_in_flight.saturating_sub(tasks.len());
        if let Some(paused) = &mut self.paused {
            if paused.next_probe > now || !tasks.is_empty() {
                return Ok(Some(paused.next_probe));
            }
            // One probe, with the key as it is now on disk.
            paused.next_probe = now + PAUSE_PROBE_INTERVAL;
            match self.key_source.read() {
                Ok(key) => {
                    if key != self.key {
                        info!("the API key has changed; trying it");
                    }
                    self.key = key;
                }
                Err(e) => warn!(error = %e, "cannot read the API key"),
            }
            capacity = 1;
        }
        // One clock reading for the claim and for the timer below, so that no head falls due
        // between the two unseen.
        let now_ms = now_ms();
        if capacity > 0 {
            let limit = capacity + self.in_flight_tags.len();
            let live_since_ms = now_ms - LIVE_WINDOW.as_millis() as i64;
            let due = self
                .ctx
                .store
                .claim_due(now_ms, live_since_ms, limit)
                .await?;
            let startable: Vec<OpenEvent> = due
                .into_iter()
                .filter(|e| !self.in_flight_tags.contains(&e.tag))
                .take(capacity)
                .collect();
            for event in startable {
                self.in_flight_tags.insert(event.tag.clone());
                let ctx = self.ctx.clone();
                let key = self.key.clone();
                tasks.spawn(async move {
                    let outcome = attempt(&ctx, &key, &event).await;
                    (Box::new(event), outcome)
                });
            }
        }
        if let Some(paused) = &self.paused {
            return Ok(Some(paused.next_probe));
        }
        // Heads due by `now_ms` were just started, are in flight, or wait for a free slot: a
        // finishing task wakes the worker for them. The timer is for the first head due later.
        let next_due = self.ctx.store.next_due_after(now_ms).await?;
        let timer =
            next_due.map(|due_ms| now + Duration::from_millis((due_ms - now_ms).max(0) as u64));
        Ok(Some(
            timer.map_or(now + MAX_IDLE, |at| at.min(now + MAX_IDLE)),
        ))
    }

    async fn record_outcome(
        &mut self,
        event: OpenEvent,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let store = &self.ctx.store;
        let tag = tag::short(&event.tag);
        let kind = event.kind.as_str();
        match outcome {
            Outcome::Delivered { account_id, status } => {
                store.mark_delivered(event.id, account_id, status).await?;
                if let Some(since) = self.failing_since.take() {
                    info!(
                        failing_for_s = since.elapsed().as_secs(),
                        "EGYM is accepting requests again"
                    );
                }
                self.hold = None;
                if self.paused.take().is_some() {
                    store.set_delivery_paused(None).await?;
                    info!("delivery resumed: the API key is accepted");
                }
                info!(
                    outcome = "delivered",
                    event_id = event.id,
                    reader = %event.reader,
                    tag = %tag,
                    kind = %kind,
                    delay_s = (now_ms() - event.tapped_at_ms) / 1000,
                    "delivered"
                );
            }
            Outcome::Retry { failure } => {
                let delay = retry_delay(event.attempts, fastrand::f64());
                store.set_last_error(failure.to_string()).await?;
                let cause = match failure {
                    Failure::Transport { .. } => HoldCause::Unreachable,
                    Failure::Status { .. } => HoldCause::Overloaded,
                };
                store
                    .schedule_retry(
                        event.id,
                        now_ms() + delay.as_millis() as i64,
                        answer(&failure),
                    )
                    .await?;
                let until = Instant::now() + delay;
                self.failing_since.get_or_insert_with(Instant::now);
                if self.hold.is_none_or(|(current, _)| current < until) {
                    self.hold = Some((until, cause));
                }
                warn!(
                    outcome = "retry",
                    event_id = event.id,
                    tag = %tag,
                    kind = %kind,
                    attempt = event.attempts + 1,
                    retry_in_s = %format_args!("{:.1}", delay.as_secs_f64()),
                    error = %failure,
                    "delivery failed, will retry"
                );
            }
            Outcome::Paused { failure } => {
                let now = Instant::now();
                let error_code = failure.error_code().unwrap_or("none");
                if self.paused.is_none() {
                    let reason =
                        format!("HTTP {} {error_code}", failure.status().unwrap_or_default());
                    store.set_delivery_paused(Some(reason)).await?;
                    store.set_last_error(failure.to_string()).await?;
                }
                let log_now = self
                    .paused
                    .as_ref()
                    .is_none_or(|p| now.duration_since(p.last_logged) >= PAUSE_LOG_INTERVAL);
                if log_now {
                    error!(
                        outcome = "paused",
                        status = failure.status().unwrap_or_default(),
                        error_code,
                        error = %failure,
                        "delivery paused: EGYM refused the API key. Nothing is dropped; taps are \
                         still recorded. Check the key (egym.api-key-file) and its permissions; \
                         delivery resumes by itself once EGYM accepts it"
                    );
                }
                let last_logged = if log_now {
                    now
                } else {
                    self.paused.as_ref().map_or(now, |p| p.last_logged)
                };
                self.paused = Some(Paused {
                    next_probe: now + PAUSE_PROBE_INTERVAL,
                    last_logged,
                });
            }
            Outcome::UnknownTag { failure } => {
                let answer = failure.as_ref().map(answer).unwrap_or_else(|| Answer {
                    status: Some(404),
                    error_code: None,
                    message: "no member has this tag (cached answer)".into(),
                });
                store
                    .set_last_error(format!("unknown tag {tag}: {}", answer.message))
                    .await?;
                let since = event.unknown_since_ms.unwrap_or_else(now_ms);
                let window_ms = self.ctx.settings.unknown_tag_retry_window.as_millis() as i64;
                let renderings = tag::RawId::from_hex(&event.raw_id)
                    .map(|raw| tag::renderings_line(&raw))
                    .unwrap_or_default();
                if now_ms() - since >= window_ms {
                    store
                        .mark_rejected(
                            event.id,
                            Answer {
                                message: format!(
                                    "unknown tag for the whole unknown-tag-retry-window: {}",
                                    answer.message
                                ),
                                ..answer
                            },
                        )
                        .await?;
                    warn!(outcome = "rejected", event_id = event.id, reader = %event.reader, tag = %tag, kind = %kind, renderings = %renderings, "rejected: EGYM still knows no member with this tag after unknown-tag-retry-window");
                } else {
                    let unknown_attempts = if event.unknown_since_ms.is_some() {
                        event.attempts
                    } else {
                        0
                    };
                    let delay = unknown_tag_delay(unknown_attempts);
                    store
                        .mark_unknown_tag(event.id, now_ms() + delay.as_millis() as i64, answer)
                        .await?;
                    warn!(
                        outcome = "unknown_tag",
                        event_id = event.id,
                        reader = %event.reader,
                        tag = %tag,
                        kind = %kind,
                        retry_in_s = delay.as_secs(),
                        renderings = %renderings,
                        "unknown tag: EGYM has no member with this rfid. Compare these renderings of the \
                         card with the one enrolled in EGYM; the reader's id-format, id-bytes or byte-order \
                         may need changing"
                    );
                }
            }
            Outcome::Rejected { failure } => {
                store.set_last_error(failure.to_string()).await?;
                store.mark_rejected(event.id, answer(&failure)).await?;
                warn!(outcome = "rejected", event_id = event.id, reader = %event.reader, tag = %tag, kind = %kind, error = %failure, "rejected by EGYM; the event will not be sent again");
            }
        }
        Ok(())
    }
}

/// The row's record of a failure.
fn answer(failure: &Failure) -> Answer {
    Answer {
        status: failure.status(),
        error_code: failure.error_code().map(str::to_string),
        message: failure.to_string(),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One delivery attempt: resolve the tag (cache or lookup), then post.
async fn attempt(ctx: &Context, key: &ApiKey, event: &OpenEvent) -> Result<Outcome, StoreError> {
    let tag_format = event.tag_format.as_deref();
    let cached = ctx
        .store
        .cached_account(event.tag.clone(), event.tag_format.clone())
        .await?;
    let age =
        |resolved_at_ms: i64| Duration::from_millis((now_ms() - resolved_at_ms).max(0) as u64);
    let mut account_id = match cached {
        Some(c)
            if c.account_id.is_some() && age(c.resolved_at_ms) < ctx.settings.account_cache_ttl =>
        {
            c.account_id
        }
        Some(c)
            if c.account_id.is_none()
                && age(c.resolved_at_ms)
                    < NEGATIVE_CACHE_TTL.min(ctx.settings.account_cache_ttl) =>
        {
            debug!(event_id = event.id, "tag known to be unknown (cached)");
            return Ok(Outcome::UnknownTag { failure: None });
        }
        _ => None,
    };
    let mut looked_up = false;
    loop {
        let account = match account_id.take() {
            Some(account) => account,
            None => {
                looked_up = true;
                match ctx.client.lookup(key, &event.tag, tag_format).await {
                    Ok(account) => {
                        ctx.store
                            .cache_account(
                                event.tag.clone(),
                                event.tag_format.clone(),
                                Some(account.clone()),
                            )
                            .await?;
                        account
                    }
                    Err(failure) => {
                        return Ok(match egym::classify(Call::Lookup, &failure) {
                            Verdict::UnknownTag => {
                                ctx.store
                                    .cache_account(
                                        event.tag.clone(),
                                        event.tag_format.clone(),
                                        None,
                                    )
                                    .await?;
                                Outcome::UnknownTag {
                                    failure: Some(failure),
                                }
                            }
                            verdict => outcome_of(verdict, failure),
                        });
                    }
                }
            }
        };
        let posted = {
            let _permit = ctx
                .posts
                .acquire()
                .await
                .expect("the semaphore is never closed");
            ctx.client
                .post_visit(key, &account, event.kind, event.tapped_at_ms)
                .await
        };
        match posted {
            Ok(status) => {
                return Ok(Outcome::Delivered {
                    account_id: account,
                    status,
                });
            }
            Err(failure) => match egym::classify(Call::Post, &failure) {
                // The cached account is gone: drop it and look the tag up once more.
                Verdict::AccountGone if !looked_up => {
                    ctx.store
                        .forget_account(event.tag.clone(), event.tag_format.clone())
                        .await?;
                    continue;
                }
                verdict => return Ok(outcome_of(verdict, failure)),
            },
        }
    }
}

fn outcome_of(verdict: Verdict, failure: Failure) -> Outcome {
    match verdict {
        Verdict::Retry => Outcome::Retry { failure },
        Verdict::Pause => Outcome::Paused { failure },
        Verdict::UnknownTag => Outcome::UnknownTag {
            failure: Some(failure),
        },
        Verdict::AccountGone | Verdict::Reject => Outcome::Rejected { failure },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_exponentially_with_full_jitter_and_a_cap() {
        assert_eq!(retry_delay(0, 0.0), Duration::ZERO);
        assert_eq!(retry_delay(0, 0.5), Duration::from_millis(500));
        assert_eq!(retry_delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(retry_delay(8, 1.0), Duration::from_secs(256));
        assert_eq!(retry_delay(9, 1.0), RETRY_CAP);
        assert_eq!(retry_delay(u32::MAX, 0.999), RETRY_CAP.mul_f64(0.999));
    }

    #[test]
    fn unknown_tags_are_retried_slowly() {
        assert_eq!(unknown_tag_delay(0), Duration::from_secs(300));
        assert_eq!(unknown_tag_delay(1), Duration::from_secs(600));
        assert_eq!(unknown_tag_delay(5), UNKNOWN_TAG_RETRY_CAP);
    }
}
