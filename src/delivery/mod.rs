//! The delivery worker: claims due events, resolves their tags, posts them to EGYM, and records
//! each outcome as the README's outcome table (Architecture) says.
//!
//! - It wakes at once when the recorder commits an event, when a retry falls due, and when a
//!   request finishes; it never polls.
//! - Only the oldest open event of a tag is ever in flight, so each tag's events reach EGYM in
//!   the order they happened; events of different tags go out side by side.
//! - Live taps go first, decided by attempts, not age: a tap never tried that was recorded while
//!   delivery worked goes ahead of the *backlog*, which is every event being retried and every
//!   tap held back by an outage, a refused key or a restart. A member tapping now never waits
//!   behind a backlog, however young it is.
//! - Posts in flight are few (see [`policy::posts_in_flight`]): each one in flight when the
//!   process dies may reach EGYM twice.
//! - Every request first takes a token from the client's bucket ([`crate::egym::rate_limit`]),
//!   so the daemon keeps under EGYM's limit by itself.
//! - What an outcome means is decided by [`policy::decide`], in steady time: after a failure
//!   that calls for a retry, the event's next attempt is stored in its row (exponential backoff
//!   with full jitter, capped), and the whole worker holds off for the same time: when EGYM is
//!   down or overloaded, one event probes, the rest wait.
//! - A refused key (401/403) pauses delivery: no row changes, one error line every few minutes,
//!   and a probe every [`PAUSE_PROBE_INTERVAL`] that reads the key again.
//! - A card enrolled from the box ([`crate::enrolment`]): the worker makes the taps waiting on
//!   it due at once and forgets what the cache said of it, so they are looked up again and
//!   delivered. If an attempt of that card is in flight (its lookup may have been answered
//!   before the card was added), this is done once the attempt is recorded, so the attempt's
//!   "unknown" cannot put the card back on the slow schedule.

mod attempt;
mod in_flight;
pub mod policy;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::clock::timer::{self, Instant};
use crate::egym;
use crate::egym::rate_limit::Priority;
use crate::egym::{ApiKey, ApiKeySource};
use crate::events::{Delivery, DeliveryResumed, EgymRecovered, Listeners};
use crate::liveness::Pulse;
use crate::store::{OpenEvent, Store, StoreError};
use crate::tag;
use crate::visit::Correction;
use in_flight::InFlight;
use policy::{Decision, HoldCause, Outcome, RowChange, WorkerChange};
pub use policy::{Greeting, LateAdmission, Settings, posts_in_flight};

/// Events in flight at once (each of a different tag), at least: their lookups go side by side.
pub const MIN_EVENTS_IN_FLIGHT: usize = 4;
/// The worker looks at the outbox at least this often, even with nothing due. A safety net:
/// events are found through wake-ups and due times, never by this.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// After a database error the worker waits this long before it tries again.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(5);
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

/// What an attempt needs, shared by the tasks in flight.
#[derive(Debug)]
struct Context {
    store: Store,
    client: egym::Client,
    clock: Clock,
    posts: Semaphore,
    settings: Settings,
    listeners: Listeners,
}

#[derive(Debug)]
struct Paused {
    next_probe: Instant,
    last_logged: Instant,
}

/// An attempt that has finished.
struct Attempt {
    event: OpenEvent,
    outcome: Result<Outcome, StoreError>,
    /// The newest event recorded when the attempt started: if it failed, everything up to this
    /// waited through the failure, and is the backlog.
    recorded_before: i64,
}

type Attempts = InFlight<Attempt>;

enum Wake {
    Recorded,
    Enrolled(String),
    Timer,
    Asked,
    Finished(Box<Attempt>),
    Shutdown,
}

/// The worker's links with the recorder, and who hears of outcomes besides the database.
#[derive(Debug)]
pub struct RecorderLinks {
    pub listeners: Listeners,
    /// The id of the newest event recorded, changed at each commit (and sent again when held
    /// taps become due).
    pub recorded: watch::Receiver<i64>,
    /// What delivery learns about visits goes to the recorder, their owner.
    pub corrections: mpsc::UnboundedSender<Correction>,
}

/// The worker: one task that claims, and a task per attempt in flight.
#[derive(Debug)]
pub struct Worker {
    ctx: Arc<Context>,
    max_in_flight: usize,
    key_source: ApiKeySource,
    key: ApiKey,
    /// The id of the newest event recorded, changed at each commit (and sent again when held
    /// taps become due).
    recorded: watch::Receiver<i64>,
    /// What delivery learns about visits goes to the recorder, their owner.
    corrections: mpsc::UnboundedSender<Correction>,
    hold: Option<(Instant, HoldCause)>,
    last_unreachable_probe: Option<Instant>,
    /// Since when requests have been failing (transport errors, 408, 429, 5xx), if they are.
    failing_since: Option<Instant>,
    paused: Option<Paused>,
    /// The last database call failed (and the error was said).
    database_failing: bool,
    /// Events up to this id are the backlog: recorded before this run, or before delivery last
    /// failed or was paused. Newer events never tried go first.
    backlog_through_id: i64,
    /// Tags of cards enrolled from the box, as they are announced.
    enrolled: Option<mpsc::UnboundedReceiver<String>>,
    /// Cards enrolled whose taps are not yet made due: at the next look at the outbox that finds
    /// no attempt of theirs in flight.
    enrolled_pending: HashSet<String>,
}

impl Worker {
    pub fn new(
        store: Store,
        client: egym::Client,
        clock: Clock,
        settings: Settings,
        key_source: ApiKeySource,
        key: ApiKey,
        recorder: RecorderLinks,
    ) -> Self {
        let posts = posts_in_flight(settings.rate_per_second);
        Worker {
            max_in_flight: posts.max(MIN_EVENTS_IN_FLIGHT),
            ctx: Arc::new(Context {
                store,
                client,
                clock,
                posts: Semaphore::new(posts),
                settings,
                listeners: recorder.listeners,
            }),
            key_source,
            key,
            recorded: recorder.recorded,
            corrections: recorder.corrections,
            hold: None,
            last_unreachable_probe: None,
            failing_since: None,
            paused: None,
            database_failing: false,
            backlog_through_id: 0,
            enrolled: None,
            enrolled_pending: HashSet::new(),
        }
    }

    /// Hears of cards enrolled from the box (their tags) on `cards`.
    pub fn hearing_enrolments(self, cards: mpsc::UnboundedReceiver<String>) -> Worker {
        Worker {
            enrolled: Some(cards),
            ..self
        }
    }

    /// Runs until `shutdown` turns true; returns once in-flight requests are finished or
    /// abandoned. A database error does not stop it: it says so and tries again shortly.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, mut pulse: Pulse) {
        let mut tasks = Attempts::new();
        // What is already in the outbox waited through a restart: it is the backlog.
        self.recorded.mark_unchanged();
        self.backlog_through_id = match self.ctx.store.last_event_id().await {
            Ok(id) => id,
            Err(e) => {
                self.database_failed(&e);
                *self.recorded.borrow()
            }
        };
        loop {
            self.make_enrolled_due(&tasks).await;
            let timer = match self.claim_and_start(&mut tasks).await {
                Ok(timer) => timer,
                Err(e) => self.database_failed(&e),
            };
            let enrolled = async {
                match self.enrolled.as_mut() {
                    Some(cards) => cards.recv().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                Ok(()) = self.recorded.changed() => Wake::Recorded,
                Some(tag) = enrolled => Wake::Enrolled(tag),
                () = timer::sleep_until(timer) => Wake::Timer,
                () = pulse.asked() => Wake::Asked,
                Some((tag, joined)) = tasks.next(), if !tasks.is_empty() => match joined {
                    Ok(attempt) => Wake::Finished(Box::new(attempt)),
                    Err(e) => {
                        // Tasks are aborted only at shutdown, and a panic aborts the process;
                        // built otherwise, the event stays pending and is tried again.
                        error!(error = %e, tag = %tag::short(&tag), "delivery attempt ended abnormally; its event stays pending and is tried again");
                        continue;
                    }
                },
                _ = shutdown.wait_for(|stop| *stop) => Wake::Shutdown,
            };
            match wake {
                Wake::Recorded => self.on_recorded(),
                Wake::Enrolled(tag) => {
                    self.enrolled_pending.insert(tag);
                }
                Wake::Timer => {}
                Wake::Asked => pulse.answer(),
                Wake::Finished(attempt) => self.record_attempt(*attempt).await,
                Wake::Shutdown => break,
            }
        }
        self.drain_at_shutdown(tasks).await;
    }

    /// Lets requests in flight finish for a short while, records what they achieved, and
    /// abandons the rest (their events stay pending).
    async fn drain_at_shutdown(mut self, mut tasks: Attempts) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !tasks.is_empty() {
            match timer::timeout_at(deadline, tasks.next()).await {
                Ok(Some((_, Ok(attempt)))) => self.record_attempt(attempt).await,
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
    async fn record_attempt(&mut self, attempt: Attempt) {
        let Attempt {
            event,
            outcome,
            recorded_before,
        } = attempt;
        let carried_out = match outcome {
            Ok(outcome) => {
                let now = self.ctx.clock.now();
                let decision =
                    policy::decide(&event, outcome, &now, &self.ctx.settings, fastrand::f64());
                self.carry_out(&event, decision, recorded_before).await
            }
            Err(e) => Err(e),
        };
        match carried_out {
            Ok(()) => self.database_failing = false,
            Err(e) => {
                self.database_failed(&e);
            }
        }
    }

    /// Cards enrolled with no attempt of theirs in flight: their waiting taps are due at once
    /// and looked up anew. (One in flight is done once that attempt is recorded.) EGYM just
    /// answered the enrolment, so a hold for EGYM out of reach ends too.
    async fn make_enrolled_due(&mut self, tasks: &Attempts) {
        let free: Vec<String> = self
            .enrolled_pending
            .iter()
            .filter(|tag| !tasks.holds(tag))
            .cloned()
            .collect();
        for tag in free {
            if let Err(e) = self.ctx.store.card_enrolled(tag.clone()).await {
                // Kept, and done once the database answers again.
                self.database_failed(&e);
                return;
            }
            self.enrolled_pending.remove(&tag);
            if let Some((_, HoldCause::Unreachable)) = self.hold {
                self.hold = None;
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

    /// An attempt started when `recorded_before` was the newest event failed: events up to it
    /// are the backlog, behind taps made since.
    fn note_backlog(&mut self, recorded_before: i64) {
        self.backlog_through_id = self.backlog_through_id.max(recorded_before);
    }

    /// A newly recorded event: if EGYM was unreachable, it may try again now rather than wait
    /// for the backoff (at most every few seconds); an overloaded EGYM is left alone. The event
    /// is live until a failure says otherwise: it goes first once delivery may go on.
    fn on_recorded(&mut self) {
        self.recorded.mark_unchanged();
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
    async fn claim_and_start(&mut self, tasks: &mut Attempts) -> Result<Instant, StoreError> {
        let now = Instant::now();
        if let Some((until, _)) = self.hold {
            if until > now {
                return Ok(until);
            }
            self.hold = None;
        }
        let mut capacity = self.max_in_flight.saturating_sub(tasks.len());
        if let Some(paused) = &mut self.paused {
            if paused.next_probe > now || !tasks.is_empty() {
                return Ok(paused.next_probe);
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
        let now_steady = self.ctx.clock.steady();
        if capacity > 0 {
            let limit = capacity + tasks.len();
            let due = self
                .ctx
                .store
                .claim_due(now_steady, self.backlog_through_id, limit)
                .await?;
            let startable: Vec<OpenEvent> = due
                .into_iter()
                .filter(|e| !tasks.holds(&e.tag))
                .take(capacity)
                .collect();
            let recorded_before = *self.recorded.borrow();
            for event in startable {
                let tag = event.tag.clone();
                let ctx = self.ctx.clone();
                let key = self.key.clone();
                // Claimed as live above: its requests go before those of the backlog's
                // attempts already in flight.
                let priority = if event.attempts == 0 && event.id > self.backlog_through_id {
                    Priority::Member
                } else {
                    Priority::Backlog
                };
                tasks.start(tag, async move {
                    let outcome = attempt::attempt(&ctx, &key, &event, priority).await;
                    Attempt {
                        event,
                        outcome,
                        recorded_before,
                    }
                });
            }
        }
        if let Some(paused) = &self.paused {
            return Ok(paused.next_probe);
        }
        // Heads due by `now_steady` were just started, are in flight, or wait for a free slot: a
        // finishing task wakes the worker for them. The timer is for the first head due later.
        let next_due = self.ctx.store.next_due_after(now_steady).await?;
        let timer = next_due.map(|due| self.ctx.clock.deadline(due));
        Ok(timer.map_or(now + MAX_IDLE, |at| at.min(now + MAX_IDLE)))
    }

    /// Carries out what [`policy::decide`] decided: the row, the worker's state, the log.
    async fn carry_out(
        &mut self,
        event: &OpenEvent,
        decision: Decision,
        recorded_before: i64,
    ) -> Result<(), StoreError> {
        let store = &self.ctx.store;
        let now = self.ctx.clock.now();
        // When the event was finished, for `keep-delivered`: with the time unknown (a box just
        // booted, its clock not yet trusted), the tap's own time, which is earlier.
        let finished_ms = if now.wall_known() {
            now.wall
        } else {
            event.tapped_at
        };
        if let Some(error) = decision.last_error {
            store.set_last_error(error, now.wall).await?;
        }
        match decision.row {
            RowChange::Delivered { account_id, status } => {
                store
                    .mark_delivered(event.id, account_id, status, finished_ms)
                    .await?;
            }
            RowChange::Retry {
                next_attempt,
                answer,
            } => {
                store.schedule_retry(event.id, next_attempt, answer).await?;
            }
            RowChange::UnknownTag {
                next_attempt,
                since,
                answer,
            } => {
                store
                    .mark_unknown_tag(event.id, next_attempt, since, answer)
                    .await?;
            }
            RowChange::Rejected { answer } => {
                store.mark_rejected(event.id, answer, finished_ms).await?;
            }
            RowChange::Refused { answer, reason } => {
                store
                    .mark_refused(event.id, answer, reason, finished_ms)
                    .await?;
                // The member was turned away: the visit the tap began did not happen.
                let _ = self.corrections.send(Correction::NotAdmitted {
                    tag: event.tag.clone(),
                    checked_in: event.tapped_steady,
                });
            }
            RowChange::Unchanged => {}
        }
        let say = match decision.worker {
            WorkerChange::Recovered => {
                if let Some(since) = self.failing_since.take() {
                    EgymRecovered {
                        failing_for: since.elapsed(),
                    }
                    .emit(&self.ctx.listeners);
                }
                self.hold = None;
                if self.paused.take().is_some() {
                    self.ctx.store.set_delivery_paused(None, now.wall).await?;
                    DeliveryResumed.emit(&self.ctx.listeners);
                }
                true
            }
            WorkerChange::Hold { delay, cause } => {
                if cause != HoldCause::RateLimited {
                    self.note_backlog(recorded_before);
                }
                let until = Instant::now() + delay;
                self.failing_since.get_or_insert_with(Instant::now);
                if self.hold.is_none_or(|(current, _)| current < until) {
                    self.hold = Some((until, cause));
                }
                true
            }
            WorkerChange::Pause { reason } => {
                self.note_backlog(recorded_before);
                let at = Instant::now();
                if self.paused.is_none() {
                    self.ctx
                        .store
                        .set_delivery_paused(Some(reason), now.wall)
                        .await?;
                }
                let log_now = self
                    .paused
                    .as_ref()
                    .is_none_or(|p| at.duration_since(p.last_logged) >= PAUSE_LOG_INTERVAL);
                let last_logged = match &self.paused {
                    Some(p) if !log_now => p.last_logged,
                    _ => at,
                };
                self.paused = Some(Paused {
                    next_probe: at + PAUSE_PROBE_INTERVAL,
                    last_logged,
                });
                log_now
            }
            WorkerChange::Nothing => true,
        };
        Delivery {
            event_id: event.id,
            reader: event.reader.clone(),
            tag: event.tag.clone(),
            kind: event.kind,
            report: decision.report,
            said: say,
        }
        .emit(&self.ctx.listeners);
        Ok(())
    }
}
