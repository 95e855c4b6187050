//! The recorder: the one owner of visit state. It turns presentations into decisions, and
//! decisions into committed events.
//!
//! Being the only task that decides, it never races with itself: two readers presenting the
//! same tag at once are decided one after the other. Taps that arrive together are committed
//! together, in one transaction (one fsync for a burst). An event is logged as recorded only
//! after its transaction has committed. When the database cannot be written, events are held in
//! memory (bounded) and written, in order, as soon as it can be.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info};

use crate::clock::rfc3339_ms;
use crate::daemon::liveness::Pulse;
use crate::reader::ReaderMessage;
use crate::store::{NewEvent, ReaderUpdate, Store, StoreError};
use crate::tag;
use crate::visit::{self, Decision, TagState};

/// Events held in memory while the database cannot be written, at most.
pub const MAX_HELD: usize = 10_000;
/// At most this many events go into one transaction.
const MAX_BATCH: usize = 256;
/// How often writing held events is tried again.
const HELD_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Recorder {
    store: Store,
    visits: HashMap<String, TagState>,
    repeat_window: Duration,
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
    Asked,
    Shutdown,
}

impl Recorder {
    pub async fn new(
        store: Store,
        repeat_window: Duration,
        recorded: Arc<Notify>,
    ) -> Result<Recorder, StoreError> {
        let visits = store.visit_states().await?;
        Ok(Recorder {
            store,
            visits,
            repeat_window,
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
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let wake = tokio::select! {
                n = messages.recv_many(&mut batch, MAX_BATCH) => match n {
                    0 => Wake::Shutdown,
                    _ => Wake::Messages(std::mem::take(&mut batch)),
                },
                () = tokio::time::sleep(HELD_RETRY), if !self.held.is_empty() => Wake::RetryHeld,
                () = pulse.asked() => Wake::Asked,
                _ = shutdown.wait_for(|stop| *stop) => Wake::Shutdown,
            };
            match wake {
                Wake::Messages(messages) => {
                    for message in messages {
                        self.handle(message);
                    }
                    self.write().await;
                }
                Wake::RetryHeld => self.write().await,
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
            self.visits.get(&tap.rfid),
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
        self.visits.insert(tap.rfid.clone(), state);
        let event = NewEvent {
            reader: tap.reader.to_string(),
            raw_id: tap.raw.hex(),
            tag: tap.rfid,
            tag_format: tap.tag_format,
            kind,
            tapped_at_ms: tap.at_ms,
        };
        if self.held.len() >= MAX_HELD {
            error!(outcome = "lost", reader = %event.reader, tag = %short, kind = %kind.as_str(), tapped_at = %rfc3339_ms(event.tapped_at_ms), "tap LOST: the database cannot be written and the in-memory buffer is full");
            return;
        }
        self.held.push_back((event, state));
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
            match self.store.record_batch(events, readers).await {
                Ok(ids) => {
                    self.readers.clear();
                    if std::mem::take(&mut self.write_failing) {
                        info!(
                            held = self.held.len(),
                            "the database can be written again; writing the held taps"
                        );
                    }
                    for id in ids {
                        let (event, _) = self.held.pop_front().expect("one held event per id");
                        info!(
                            outcome = "recorded",
                            event_id = id,
                            reader = %event.reader,
                            tag = %tag::short(&event.tag),
                            kind = %event.kind.as_str(),
                            tapped_at_ms = event.tapped_at_ms,
                            "tap recorded"
                        );
                    }
                    if n > 0 {
                        self.recorded.notify_one();
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
