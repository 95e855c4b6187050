//! The recorder: the one owner of visit state. It turns presentations into decisions, and
//! decisions into committed events.
//!
//! Being the only task that decides, it never races with itself: two readers presenting the
//! same tag at once are decided one after the other. Taps that arrive together are committed
//! together, in one transaction (one fsync for a burst). An event is logged as recorded only
//! after its transaction has committed. When the database cannot be written, events are held in
//! memory (bounded) and written, in order, as soon as it can be.
//!
//! A tap is recorded at once whatever the clock says: durability first. While the wall clock is
//! not trusted, the tap is stored with its boot and steady time and held from delivery; when the
//! clock becomes trusted, the recorder places the held taps (and the visits they began) and
//! wakes delivery for them.
//!
//! It also checks visits out by themselves (`auto-checkout-after`, `closing-time`): when one falls
//! due, and at start for those that fell due while the service was stopped, before any new tap is
//! decided. Such a check-out is an event like any other, marked automatic, and stamped with the
//! time the policy gives, not the time it was noticed.
//!
//! Visit state is personal data, kept no longer than needed: the state of a member who is
//! outside is forgotten, in memory and in the database, once `keep-closed` has passed since
//! their last tap (the pruner asks, through a [`RecorderHandle`]); and an erasure on request
//! (`gym-checkin forget`) goes through the recorder too, so that what it holds in memory of the
//! card goes with the rows, between two of its own writes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::clock::timer;
use crate::clock::{Clock, SteadyMs, Trust, WallMs};
use crate::enrolment::{Card, Claims};
use crate::events::{
    AutoCheckedOut, Erased, Known, Listeners, PresentationClaimed, ReaderChanged, TapIgnored,
    TapLost, TapPlaced, TapRecorded,
};
use crate::liveness::Pulse;
use crate::reader::{ReaderMessage, Tap};
use crate::store::{
    Batch, CachedAccount, EraseError, Holdings, NewEvent, ReaderUpdate, Store, StoreError, Subject,
    TimeQuality, Visit,
};
use crate::tag;
use crate::visit::Membership;
use crate::visit::{
    self, AutoCheckout, AutoCheckoutPolicy, CheckIn, Correction, Decision, Kind, TagState,
};

/// Events held in memory while the database cannot be written, at most.
pub const MAX_HELD: usize = 10_000;
/// At most this many events go into one transaction.
const MAX_BATCH: usize = 256;
/// How often writing held events is tried again.
const HELD_RETRY: Duration = Duration::from_secs(1);
/// Open visits are looked at again at least this often: `closing-time` follows the wall clock,
/// which may be stepped while the recorder sleeps.
const AUTO_CHECKOUT_LOOK_AGAIN: Duration = Duration::from_secs(60);
/// After placing held taps failed (the database), it is tried again this soon.
const PLACE_RETRY: Duration = Duration::from_secs(5);

/// What others ask of the recorder, the owner of visit state.
#[derive(Debug)]
enum Request {
    /// Erase everything about a subject (see [`Store::erase`]), and what the recorder holds of
    /// its cards.
    Erase {
        subject: Subject,
        open_confirmed: Option<u64>,
        by_uid: Option<u32>,
        reply: oneshot::Sender<Result<Holdings, EraseError>>,
    },
    /// Forget up to `at_most` closed visits whose last event is older than `before`.
    ForgetClosedVisits {
        before: SteadyMs,
        at_most: usize,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// How the service and the pruner ask the recorder. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RecorderHandle(mpsc::Sender<Request>);

impl RecorderHandle {
    /// Erases everything about `subject`, unless more of its events wait for delivery than
    /// `open_confirmed` (see [`Store::erase`]); `by_uid` is who asked, for the log.
    pub async fn erase(
        &self,
        subject: Subject,
        open_confirmed: Option<u64>,
        by_uid: Option<u32>,
    ) -> Result<Holdings, EraseError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Erase {
            subject,
            open_confirmed,
            by_uid,
            reply,
        };
        if self.0.send(request).await.is_err() {
            return Err(EraseError::Store(StoreError::Closed));
        }
        answer
            .await
            .unwrap_or(Err(EraseError::Store(StoreError::Closed)))
    }

    /// Forgets, in memory and in the database, the state of up to `at_most` visits whose
    /// members are outside and whose last event was before steady time `before`; returns how
    /// many. Fewer than `at_most`: there are no more.
    pub async fn forget_closed_visits(
        &self,
        before: SteadyMs,
        at_most: usize,
    ) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::ForgetClosedVisits {
            before,
            at_most,
            reply,
        };
        if self.0.send(request).await.is_err() {
            return Err(StoreError::Closed);
        }
        answer.await.unwrap_or(Err(StoreError::Closed))
    }
}

#[derive(Debug)]
pub struct Recorder {
    store: Store,
    clock: Clock,
    listeners: Listeners,
    trust: watch::Receiver<Trust>,
    visits: HashMap<String, Visit>,
    repeat_window: Duration,
    auto_checkout: Option<AutoCheckoutPolicy>,
    /// When to look at open visits again for automatic check-outs.
    next_auto_checkout_in: Option<Duration>,
    /// The id of the newest event committed; sent again when held events become due.
    recorded: Arc<watch::Sender<i64>>,
    /// Decided events not yet committed, oldest first.
    held: VecDeque<(NewEvent, TagState)>,
    /// Reader changes to write with the next transaction.
    readers: HashMap<Arc<str>, ReaderUpdate>,
    /// Visit changes without an event (corrections), to write with the next transaction.
    visit_changes: HashMap<String, TagState>,
    /// Taps lost since the last successful write (counted in `status` with it).
    lost: u64,
    /// Writing failed and has not succeeded since: the error was said once already.
    write_failing: bool,
    /// An automatic check-out was put off for want of room: said once until there is room.
    said_postponed: bool,
    /// Placing held taps failed: it is tried again after `PLACE_RETRY`.
    placing_failed: bool,
    requests: mpsc::Receiver<Request>,
    /// Handed out by [`Recorder::requests`].
    handle: RecorderHandle,
    /// Presentations staff claimed for an enrolment: such a card is handed over, not recorded.
    claims: Claims,
}

enum Wake {
    Messages(Vec<ReaderMessage>),
    Request(Request),
    Correction(Correction),
    RetryHeld,
    RetryPlacing,
    AutoCheckout,
    ClockChanged,
    Asked,
    Shutdown,
}

impl Recorder {
    pub async fn new(
        store: Store,
        clock: Clock,
        repeat_window: Duration,
        auto_checkout: Option<AutoCheckoutPolicy>,
        recorded: Arc<watch::Sender<i64>>,
        listeners: Listeners,
    ) -> Result<Recorder, StoreError> {
        let visits = store.visits().await?;
        let (handle, requests) = mpsc::channel(8);
        Ok(Recorder {
            requests,
            handle: RecorderHandle(handle),
            store,
            listeners,
            trust: clock.subscribe(),
            clock,
            visits,
            repeat_window,
            auto_checkout,
            next_auto_checkout_in: None,
            recorded,
            held: VecDeque::new(),
            readers: HashMap::new(),
            visit_changes: HashMap::new(),
            lost: 0,
            write_failing: false,
            said_postponed: false,
            placing_failed: false,
            claims: Claims::default(),
        })
    }

    /// How to ask the recorder to forget (see [`RecorderHandle`]).
    pub fn requests(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Hands a presentation claimed in `claims` to its enrolment instead of recording it.
    pub fn with_claims(self, claims: Claims) -> Recorder {
        Recorder { claims, ..self }
    }

    /// Runs until shutdown: taps and reader changes come in on `messages`, what delivery learns
    /// about visits on `corrections`.
    pub async fn run(
        mut self,
        mut messages: mpsc::Receiver<ReaderMessage>,
        mut corrections: mpsc::UnboundedReceiver<Correction>,
        mut shutdown: watch::Receiver<bool>,
        mut pulse: Pulse,
    ) {
        // Taps held from an earlier run go out if the clock is trusted already; visits that
        // fell due while the service was stopped go next, with their own times.
        self.trust.mark_unchanged();
        if self.clock.anchor().is_some() {
            self.place_held().await;
        }
        self.check_out_due_visits().await;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let wake = tokio::select! {
                n = messages.recv_many(&mut batch, MAX_BATCH) => match n {
                    0 => Wake::Shutdown,
                    _ => Wake::Messages(std::mem::take(&mut batch)),
                },
                Some(correction) = corrections.recv() => Wake::Correction(correction),
                Some(request) = self.requests.recv() => Wake::Request(request),
                () = timer::sleep(HELD_RETRY), if !self.held.is_empty() => Wake::RetryHeld,
                () = timer::sleep(PLACE_RETRY), if self.placing_failed => Wake::RetryPlacing,
                () = timer::sleep_until_or_never(
                    self.next_auto_checkout_in.map(|d| timer::Instant::now() + d)
                ) => Wake::AutoCheckout,
                Ok(()) = self.trust.changed() => Wake::ClockChanged,
                () = pulse.asked() => Wake::Asked,
                _ = shutdown.wait_for(|stop| *stop) => Wake::Shutdown,
            };
            match wake {
                Wake::Messages(messages) => {
                    for message in messages {
                        self.handle(message);
                    }
                    self.write().await;
                    self.plan_auto_checkout();
                }
                Wake::Correction(correction) => {
                    self.correct(correction);
                    self.write().await;
                    self.plan_auto_checkout();
                }
                Wake::Request(request) => self.answer(request).await,
                Wake::RetryHeld => self.write().await,
                Wake::RetryPlacing => self.place_held().await,
                Wake::AutoCheckout => self.check_out_due_visits().await,
                Wake::ClockChanged => {
                    self.trust.mark_unchanged();
                    // Trusted now, or at least once in this boot (trust may have come and gone
                    // between two looks): held taps can be placed.
                    self.place_held().await;
                    self.check_out_due_visits().await;
                }
                Wake::Asked => pulse.answer(),
                Wake::Shutdown => break,
            }
        }
        // Taps already read are recorded before stopping.
        while let Ok(message) = messages.try_recv() {
            self.handle(message);
        }
        self.write().await;
        if !self.held.is_empty() {
            error!(
                held = self.held.len(),
                "stopping with taps that could not be written to the database; they are lost"
            );
        }
    }

    async fn answer(&mut self, request: Request) {
        match request {
            Request::Erase {
                subject,
                open_confirmed,
                by_uid,
                reply,
            } => {
                let erased = self.erase(subject, open_confirmed).await;
                if let Ok(erased) = &erased {
                    Erased {
                        erased: erased.clone(),
                        by_uid,
                    }
                    .emit(&self.listeners);
                }
                let _ = reply.send(erased);
            }
            Request::ForgetClosedVisits {
                before,
                at_most,
                reply,
            } => {
                let _ = reply.send(self.forget_closed_visits(before, at_most).await);
            }
        }
    }

    /// Erases `subject` in the database, then what the recorder holds of its cards: their
    /// visit state, and taps not yet written.
    async fn erase(
        &mut self,
        subject: Subject,
        open_confirmed: Option<u64>,
    ) -> Result<Holdings, EraseError> {
        // Taps already decided are written first: they are part of what the box holds.
        self.write().await;
        let mut erased = self.store.erase(subject, open_confirmed).await?;
        for card in &erased.cards {
            self.visits.remove(card);
            self.visit_changes.remove(card);
            let before = self.held.len();
            self.held.retain(|(event, _)| event.tag != *card);
            let dropped = (before - self.held.len()) as u64;
            erased.events += dropped;
            erased.open += dropped;
        }
        self.plan_auto_checkout();
        Ok(erased)
    }

    /// Forgets up to `at_most` closed visits last tapped before `before`: members outside, whose
    /// state decides nothing any more (a tag with no state is outside).
    async fn forget_closed_visits(
        &mut self,
        before: SteadyMs,
        at_most: usize,
    ) -> Result<usize, StoreError> {
        let pending: std::collections::HashSet<&str> =
            self.held.iter().map(|(e, _)| e.tag.as_str()).collect();
        let tags: Vec<String> = self
            .visits
            .iter()
            .filter(|(tag, v)| {
                !v.state.inside
                    && v.state.last_event < before
                    && !self.visit_changes.contains_key(*tag)
                    && !pending.contains(tag.as_str())
            })
            .map(|(tag, _)| tag.clone())
            .take(at_most)
            .collect();
        if tags.is_empty() {
            return Ok(0);
        }
        self.store.forget_visits(tags.clone()).await?;
        for tag in &tags {
            self.visits.remove(tag);
        }
        Ok(tags.len())
    }

    /// Decides a tap, or notes a reader's state; nothing is written yet.
    fn handle(&mut self, message: ReaderMessage) {
        let tap = match message {
            ReaderMessage::Connected {
                reader,
                connected,
                device,
                lost,
            } => {
                let update = self.reader_update(&reader);
                update.connected = Some(connected);
                ReaderChanged {
                    reader: reader.to_string(),
                    device: device.to_string(),
                    connected,
                    lost,
                }
                .emit(&self.listeners);
                return;
            }
            ReaderMessage::Tap(tap) => tap,
            // Only a listening reader reports these.
            ReaderMessage::Unreadable { .. }
            | ReaderMessage::RandomUid { .. }
            | ReaderMessage::Removed { .. }
            | ReaderMessage::Warning { .. } => return,
        };
        self.reader_update(&tap.reader).last_read_at = Some(tap.at.wall);
        let card = || Card {
            rfid: tap.rfid.clone(),
            tag_format: tap.tag_format,
        };
        if self.claims.take(&tap.reader, card) {
            PresentationClaimed {
                reader: tap.reader.to_string(),
                tag: tap.rfid.clone(),
            }
            .emit(&self.listeners);
            return;
        }
        let decision = visit::decide(
            self.visits.get(&tap.rfid).map(|v| &v.state),
            tap.direction,
            tap.at.steady,
            self.repeat_window,
            self.clock.boot().start,
        );
        let kind = match decision {
            Decision::IgnoreRepeat { since_last_ms } => {
                TapIgnored {
                    reader: tap.reader.to_string(),
                    tag: tap.rfid.clone(),
                    since_last_ms,
                    inside: self.visits.get(&tap.rfid).is_some_and(|v| v.state.inside),
                }
                .emit(&self.listeners);
                return;
            }
            Decision::Record(kind) => kind,
        };
        if self.held.len() >= MAX_HELD {
            // Nothing changes for a tap that is not kept: the member's visit stays as it was.
            self.lost += 1;
            TapLost {
                reader: tap.reader.to_string(),
                tag: tap.rfid.clone(),
                kind,
                tapped_at: tap.at.wall,
            }
            .emit(&self.listeners);
            return;
        }
        let event = self.new_event(&tap, kind);
        let state = visit::after_event(
            kind,
            CheckIn {
                steady: event.tapped_steady,
                at: (event.time != TimeQuality::Untrusted).then_some(event.tapped_at),
            },
        );
        self.visits.insert(
            event.tag.clone(),
            Visit {
                state,
                reader: event.reader.clone(),
                raw_id: event.raw_id.clone(),
                tag_format: event.tag_format,
            },
        );
        // The event writes the tag's state; an earlier correction is behind it.
        self.visit_changes.remove(&event.tag);
        self.held.push_back((event, state));
    }

    /// Applies what delivery learnt about a visit, if the visit is still the one it concerns.
    fn correct(&mut self, correction: Correction) {
        match correction {
            Correction::NotAdmitted { tag, checked_in } => {
                let Some(visit) = self.visits.get_mut(&tag) else {
                    return;
                };
                if visit.state.inside
                    && visit.state.checked_in.map(|c| c.steady) == Some(checked_in)
                {
                    visit.state = visit::after_refused_admission(visit.state);
                    self.visit_changes.insert(tag, visit.state);
                }
            }
        }
    }

    /// The event for a tap: stamped with its wall time if the clock was trusted when it was
    /// read, or could be placed by now from a trusted reading in this boot; else held.
    fn new_event(&self, tap: &Tap, kind: Kind) -> NewEvent {
        let (tapped_at, time) = match TimeQuality::of(tap.at.wall_is) {
            TimeQuality::Untrusted => match self.clock.wall_at(tap.at.steady) {
                Some(at) => (at, TimeQuality::Restamped),
                None => (tap.at.wall, TimeQuality::Untrusted),
            },
            quality => (tap.at.wall, quality),
        };
        NewEvent {
            reader: tap.reader.to_string(),
            raw_id: tap.raw.hex(),
            tag: tap.rfid.clone(),
            tag_format: tap.tag_format,
            kind,
            tapped_at,
            tapped_steady: tap.at.steady,
            boot: self.clock.boot().id,
            time,
            automatic: false,
        }
    }

    /// Places held taps now that the clock is trusted: those still in memory, then those in the
    /// database, and the visits they began; wakes delivery for them.
    async fn place_held(&mut self) {
        let Some(anchor) = self.clock.anchor() else {
            return;
        };
        let boot = self.clock.boot().id;
        for (event, state) in self.held.iter_mut() {
            if event.time == TimeQuality::Untrusted && event.boot == boot {
                event.tapped_at = anchor.wall_at(event.tapped_steady);
                event.time = TimeQuality::Restamped;
                place_check_in(state, event.tapped_steady, event.tapped_at);
                if let Some(visit) = self.visits.get_mut(&event.tag) {
                    place_check_in(&mut visit.state, event.tapped_steady, event.tapped_at);
                }
            }
        }
        let placed = match self.store.place_held(boot, anchor).await {
            Ok(placed) => placed,
            Err(e) => {
                if !std::mem::replace(&mut self.placing_failed, true) {
                    error!(error = %e, "cannot place the taps held for the clock; trying again every few seconds");
                }
                return;
            }
        };
        if std::mem::take(&mut self.placing_failed) {
            info!("the taps held for the clock can be placed again");
        }
        for event in &placed {
            TapPlaced {
                event_id: event.id,
                reader: event.reader.clone(),
                tag: event.tag.clone(),
                kind: event.kind,
                placed: event.placed,
            }
            .emit(&self.listeners);
            if event.kind == Kind::CheckIn
                && let Some(visit) = self.visits.get_mut(&event.tag)
            {
                place_check_in(&mut visit.state, event.tapped_steady, event.placed.at());
            }
        }
        if !placed.is_empty() {
            info!(
                placed = placed.len(),
                "taps held for the clock are placed and go to EGYM"
            );
            self.recorded.send_modify(|_| {});
        }
        self.plan_auto_checkout();
    }

    /// Checks out every open visit whose automatic check-out is due, stamped with its due time.
    async fn check_out_due_visits(&mut self) {
        let Some(policy) = &self.auto_checkout else {
            return;
        };
        let now = self.clock.now();
        let mut due: Vec<(WallMs, String, visit::AutoReason)> = self
            .visits
            .iter()
            .filter(|(_, v)| v.state.inside)
            .filter_map(|(tag, v)| match policy.check(v.state.checked_in?, &now) {
                AutoCheckout::Due { at, reason } => Some((at, tag.clone(), reason)),
                AutoCheckout::NotYet(_) => None,
            })
            .collect();
        due.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (at, tag, reason) in due {
            if self.held.len() >= MAX_HELD {
                // The visit stays open and due: it is checked out once there is room.
                if !std::mem::replace(&mut self.said_postponed, true) {
                    warn!(tag = %tag::short(&tag), "automatic check-outs put off: the database cannot be written and the in-memory buffer is full; they are made once it can be");
                }
                break;
            }
            let Some(v) = self.visits.get_mut(&tag) else {
                continue;
            };
            let Some(checked_in) = v.state.checked_in else {
                continue;
            };
            v.state = visit::after_auto_checkout(v.state);
            let event = NewEvent {
                reader: v.reader.clone(),
                raw_id: v.raw_id.clone(),
                tag: tag.clone(),
                tag_format: v.tag_format,
                kind: Kind::CheckOut,
                tapped_at: at,
                // As far after the check-in in steady time as its stamp is after it on the wall
                // clock (both are known: a check-in without its time is never due).
                tapped_steady: checked_in.steady
                    + checked_in
                        .at
                        .map_or(Duration::ZERO, |checked_in_at| at.since(checked_in_at)),
                boot: self.clock.boot().id,
                // Stamped from its check-in's time, which is known (else it is not due).
                time: TimeQuality::Trusted,
                automatic: true,
            };
            AutoCheckedOut {
                tag: tag.clone(),
                reason,
                stamped_at: at,
                late: now.steady.since(event.tapped_steady),
            }
            .emit(&self.listeners);
            self.visit_changes.remove(&tag);
            self.held.push_back((event, v.state));
        }
        self.write().await;
        self.plan_auto_checkout();
    }

    /// Finds when to look at open visits again.
    fn plan_auto_checkout(&mut self) {
        let Some(policy) = &self.auto_checkout else {
            self.next_auto_checkout_in = None;
            return;
        };
        let now = self.clock.now();
        let mut any_open = false;
        let mut next: Option<Duration> = None;
        for visit in self.visits.values().filter(|v| v.state.inside) {
            any_open = true;
            let Some(checked_in) = visit.state.checked_in else {
                continue;
            };
            let wait = match policy.check(checked_in, &now) {
                AutoCheckout::Due { .. } => Some(Duration::ZERO),
                AutoCheckout::NotYet(wait) => wait,
            };
            next = match (next, wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // With no room for a check-out, due ones wait for the room, not in a loop.
        let floor = if self.held.len() >= MAX_HELD {
            HELD_RETRY
        } else {
            Duration::ZERO
        };
        self.next_auto_checkout_in = any_open.then(|| {
            next.map_or(AUTO_CHECKOUT_LOOK_AGAIN, |n| {
                n.min(AUTO_CHECKOUT_LOOK_AGAIN)
            })
            .max(floor)
        });
    }

    fn reader_update(&mut self, reader: &Arc<str>) -> &mut ReaderUpdate {
        self.readers
            .entry(reader.clone())
            .or_insert_with(|| ReaderUpdate {
                name: reader.to_string(),
                connected: None,
                last_read_at: None,
            })
    }

    /// Writes held events, in order and in batches, until one batch fails; reader changes and
    /// the count of lost taps go with the first batch.
    async fn write(&mut self) {
        loop {
            let n = self.held.len().min(MAX_BATCH);
            if n == 0 && self.readers.is_empty() && self.visit_changes.is_empty() && self.lost == 0
            {
                return;
            }
            let batch = Batch {
                events: self.held.iter().take(n).cloned().collect(),
                visits: self
                    .visit_changes
                    .iter()
                    .map(|(tag, state)| (tag.clone(), *state))
                    .collect(),
                readers: self.readers.values().cloned().collect(),
                lost: self.lost,
                now_wall: self.clock.now().wall,
            };
            match self.store.record_batch(batch).await {
                Ok(committed) => {
                    // Said, answered on the screen, and delivery woken, now that the commit
                    // has returned.
                    for ((event, _), (id, cached)) in self
                        .held
                        .iter()
                        .zip(committed.ids.iter().zip(&committed.cached))
                    {
                        TapRecorded {
                            event_id: *id,
                            reader: event.reader.clone(),
                            tag: event.tag.clone(),
                            kind: event.kind,
                            tapped_at: event.tapped_at,
                            time: event.time,
                            automatic: event.automatic,
                            known: known(cached.as_ref()),
                        }
                        .emit(&self.listeners);
                    }
                    if let Some(&last) = committed.ids.last() {
                        self.recorded.send_replace(last);
                    }
                    let ids = committed.ids;
                    self.readers.clear();
                    self.visit_changes.clear();
                    self.lost = 0;
                    if std::mem::take(&mut self.write_failing) {
                        info!(
                            held = self.held.len(),
                            "the database can be written again; the held taps are written, in order"
                        );
                    }
                    self.held.drain(..ids.len());
                    if self.held.is_empty() {
                        self.said_postponed = false;
                    }
                }
                Err(e) => {
                    if !self.write_failing {
                        self.write_failing = true;
                        error!(error = %e, held = self.held.len(), "cannot write to the database; taps are held in memory and written when it recovers. Nothing is lost unless the service stops before then");
                    }
                    return;
                }
            }
        }
    }
}

/// What the tag cache knew of a tag, for the screen's first answer.
fn known(cached: Option<&CachedAccount>) -> Known {
    match cached {
        None => Known::NotYet,
        Some(c) if c.account_id.is_none() => Known::Nobody,
        Some(c) if c.membership == Membership::Wellpass => Known::WellpassMember,
        Some(_) => Known::Member,
    }
}

/// Gives a visit whose check-in was held the check-in's placed time.
fn place_check_in(state: &mut TagState, steady: SteadyMs, at: WallMs) {
    if let Some(checked_in) = &mut state.checked_in
        && checked_in.steady == steady
        && checked_in.at.is_none()
    {
        checked_in.at = Some(at);
    }
}
