//! The recorder: the one owner of visit state. It turns presentations into decisions, and
//! decisions into committed events.
//!
//! Being the only task that decides, it never races with itself: two readers presenting the
//! same tag at once are decided one after the other. Taps that arrive together are committed
//! together, in one transaction (one fsync for a burst). An event is logged as recorded only
//! after its transaction has committed. When the database cannot be written, events are held in
//! memory (bounded) and written, in order, as soon as it can be.
//!
//! It also checks visits out by themselves (`auto-checkout-after`, `closing-time`): when one falls
//! due, and at start for those that fell due while the service was stopped, before any new tap is
//! decided. Such a check-out is an event like any other, marked automatic, and stamped with the
//! time the policy gives, not the time it was noticed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info};

use crate::clock::now_ms;
use crate::clock::rfc3339_ms;
use crate::daemon::liveness::Pulse;
use crate::reader::ReaderMessage;
use crate::store::{NewEvent, ReaderUpdate, Store, StoreError, Visit};
use crate::tag;
use crate::visit::{self, AutoCheckoutPolicy, Decision, Kind, TagState};

/// Events held in memory while the database cannot be written, at most.
pub const MAX_HELD: usize = 10_000;
/// At most this many events go into one transaction.
const MAX_BATCH: usize = 256;
/// How often writing held events is tried again.
const HELD_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Recorder {
    store: Store,
    visits: HashMap<String, Visit>,
    repeat_window: Duration,
    auto_checkout: Option<AutoCheckoutPolicy>,
    /// When the next open visit is due to be checked out automatically.
    next_auto_checkout_ms: Option<i64>,
    recorded: Arc<Notify>,
    /// Decided events not yet committed, oldest first.
    held: VecDeque<(NewEvent, TagState)>,
    /// Reader changes to write with the next transaction.
    readers: HashMap<Arc<str>, ReaderUpdate>,
    /// Writing failed and has not succeeded since: the error was said once already.
    write_failing: bool,
}

enum Wake {
    Messages(Vec<ReaderMessage>),
    RetryHeld,
    AutoCheckout,
    Asked,
    Shutdown,
}

impl Recorder {
    pub async fn new(
        store: Store,
        repeat_window: Duration,
        auto_checkout: Option<AutoCheckoutPolicy>,
        recorded: Arc<Notify>,
    ) -> Result<Recorder, StoreError> {
        let visits = store.visits().await?;
        Ok(Recorder {
            store,
            visits,
            repeat_window,
            auto_checkout,
            next_auto_checkout_ms: None,
            recorded,
            held: VecDeque::new(),
            readers: HashMap::new(),
            write_failing: false,
        })
    }

    pub async fn run(
        mut self,
        mut messages: mpsc::Receiver<ReaderMessage>,
        mut shutdown: watch::Receiver<bool>,
        mut pulse: Pulse,
    ) {
        // Visits that fell due while the service was stopped go first, with their own times.
        self.check_out_due_visits().await;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let auto_checkout_in = self
                .next_auto_checkout_ms
                .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
            let wake = tokio::select! {
                n = messages.recv_many(&mut batch, MAX_BATCH) => match n {
                    0 => Wake::Shutdown,
                    _ => Wake::Messages(std::mem::take(&mut batch)),
                },
                () = tokio::time::sleep(HELD_RETRY), if !self.held.is_empty() => Wake::RetryHeld,
                () = sleep_for(auto_checkout_in) => Wake::AutoCheckout,
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
                Wake::RetryHeld => self.write().await,
                Wake::AutoCheckout => self.check_out_due_visits().await,
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

    /// Decides a tap, or notes a reader's state; nothing is written yet.
    fn handle(&mut self, message: ReaderMessage) {
        let tap = match message {
            ReaderMessage::Connected { reader, connected } => {
                let update = self.reader_update(&reader);
                update.connected = Some(connected);
                return;
            }
            ReaderMessage::Tap(tap) => tap,
            // Only a listening reader reports these.
            ReaderMessage::Unreadable { .. } => return,
        };
        self.reader_update(&tap.reader).last_read_at_ms = Some(tap.at_ms);
        let short = tag::short(&tap.rfid);
        let decision = visit::decide(
            self.visits.get(&tap.rfid).map(|v| &v.state),
            tap.direction,
            tap.at_ms,
            self.repeat_window,
        );
        let kind = match decision {
            Decision::IgnoreRepeat { since_last_ms } => {
                info!(outcome = "ignored", reader = %tap.reader, tag = %short, since_last_s = since_last_ms / 1000, "tap ignored: same tag within repeat-window");
                return;
            }
            Decision::Record(kind) => kind,
        };
        let state = visit::after_event(kind, tap.at_ms);
        let event = NewEvent {
            reader: tap.reader.to_string(),
            raw_id: tap.raw.hex(),
            tag: tap.rfid,
            tag_format: tap.tag_format,
            kind,
            tapped_at_ms: tap.at_ms,
            automatic: false,
        };
        self.visits.insert(
            event.tag.clone(),
            Visit {
                state,
                reader: event.reader.clone(),
                raw_id: event.raw_id.clone(),
                tag_format: event.tag_format.clone(),
            },
        );
        if self.held.len() >= MAX_HELD {
            error!(outcome = "lost", reader = %event.reader, tag = %short, kind = %kind.as_str(), tapped_at = %rfc3339_ms(event.tapped_at_ms), "tap LOST: the database cannot be written and the in-memory buffer is full");
            return;
        }
        self.held.push_back((event, state));
    }

    /// Checks out every open visit whose automatic check-out is due, stamped with its due time.
    async fn check_out_due_visits(&mut self) {
        let Some(policy) = &self.auto_checkout else {
            return;
        };
        let now = now_ms();
        let mut due: Vec<(i64, String, visit::AutoReason)> = self
            .visits
            .iter()
            .filter_map(|(tag, v)| {
                let (at, reason) = policy.due(v.state.checked_in_at_ms?)?;
                (v.state.inside && at <= now).then(|| (at, tag.clone(), reason))
            })
            .collect();
        due.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (at, tag, reason) in due {
            let Some(v) = self.visits.get_mut(&tag) else {
                continue;
            };
            v.state = visit::after_auto_checkout(v.state);
            let event = NewEvent {
                reader: v.reader.clone(),
                raw_id: v.raw_id.clone(),
                tag: tag.clone(),
                tag_format: v.tag_format.clone(),
                kind: Kind::CheckOut,
                tapped_at_ms: at,
                automatic: true,
            };
            info!(
                outcome = "auto_checkout",
                tag = %tag::short(&tag),
                reason = reason.as_str(),
                stamped_at = %rfc3339_ms(at),
                late_s = (now - at) / 1000,
                "automatic check-out"
            );
            if self.held.len() < MAX_HELD {
                self.held.push_back((event, v.state));
            }
        }
        self.write().await;
        self.plan_auto_checkout();
    }

    /// Finds when the next open visit is due for an automatic check-out.
    fn plan_auto_checkout(&mut self) {
        self.next_auto_checkout_ms = self.auto_checkout.as_ref().and_then(|policy| {
            self.visits
                .values()
                .filter(|v| v.state.inside)
                .filter_map(|v| Some(policy.due(v.state.checked_in_at_ms?)?.0))
                .min()
        });
    }

    fn reader_update(&mut self, reader: &Arc<str>) -> &mut ReaderUpdate {
        self.readers
            .entry(reader.clone())
            .or_insert_with(|| ReaderUpdate {
                name: reader.to_string(),
                connected: None,
                last_read_at_ms: None,
            })
    }

    /// Writes held events, in order and in batches, until one batch fails; reader changes go
    /// with the first batch.
    async fn write(&mut self) {
        loop {
            let n = self.held.len().min(MAX_BATCH);
            if n == 0 && self.readers.is_empty() {
                return;
            }
            let events: Vec<(NewEvent, TagState)> = self.held.iter().take(n).cloned().collect();
            let readers: Vec<ReaderUpdate> = self.readers.values().cloned().collect();
            let recorded = self.recorded.clone();
            // Said, and delivery woken, on the database thread right after the commit.
            let committed = move |events: &[(NewEvent, TagState)], ids: &[i64]| {
                for ((event, _), id) in events.iter().zip(ids) {
                    info!(
                        outcome = "recorded",
                        automatic = event.automatic,
                        event_id = id,
                        reader = %event.reader,
                        tag = %tag::short(&event.tag),
                        kind = %event.kind.as_str(),
                        tapped_at_ms = event.tapped_at_ms,
                        "tap recorded"
                    );
                }
                if !ids.is_empty() {
                    recorded.notify_one();
                }
            };
            match self.store.record_batch(events, readers, committed).await {
                Ok(ids) => {
                    self.readers.clear();
                    if std::mem::take(&mut self.write_failing) {
                        info!(
                            held = self.held.len(),
                            "the database can be written again; the held taps are written, in order"
                        );
                    }
                    self.held.drain(..ids.len());
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

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
