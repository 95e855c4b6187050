//! The recorder: the one owner of visit state. It turns presentations into decisions, and
//! decisions into committed events.
//!
//! Being the only task that decides, it never races with itself: two readers presenting the
//! same tag at once are decided one after the other. An event is logged as recorded only after
//! its transaction has committed. When the database cannot be written, the event is held in
//! memory (bounded) and written, in order, as soon as it can be.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info};

use crate::clock::rfc3339_ms;
use crate::reader::Tap;
use crate::store::{NewEvent, Store, StoreError};
use crate::tag;
use crate::visit::{self, Decision, TagState};

/// Events held in memory while the database cannot be written, at most.
const MAX_HELD: usize = 10_000;
/// How often writing held events is tried again.
const HELD_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Recorder {
    store: Store,
    visits: HashMap<String, TagState>,
    repeat_window: Duration,
    recorded: Arc<Notify>,
    held: VecDeque<(NewEvent, TagState)>,
    /// Writing failed and has not succeeded since: the error was said once already.
    write_failing: bool,
}

enum Wake {
    Tap(Tap),
    RetryHeld,
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
            write_failing: false,
        })
    }

    pub async fn run(mut self, mut taps: mpsc::Receiver<Tap>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let wake = tokio::select! {
                tap = taps.recv() => match tap {
                    Some(tap) => Wake::Tap(tap),
                    None => Wake::Shutdown,
                },
                () = tokio::time::sleep(HELD_RETRY), if !self.held.is_empty() => Wake::RetryHeld,
                _ = shutdown.wait_for(|stop| *stop) => Wake::Shutdown,
            };
            match wake {
                Wake::Tap(tap) => self.handle(tap).await,
                Wake::RetryHeld => self.write_held().await,
                Wake::Shutdown => break,
            }
        }
        // Taps already read are recorded before stopping.
        while let Ok(tap) = taps.try_recv() {
            self.handle(tap).await;
        }
        self.write_held().await;
        if !self.held.is_empty() {
            error!(
                held = self.held.len(),
                "stopping with taps that could not be written to the database; they are lost"
            );
        }
    }

    async fn handle(&mut self, tap: Tap) {
        let short = tag::short(&tap.rfid);
        let decision = visit::decide(
            self.visits.get(&tap.rfid),
            tap.direction,
            tap.at_ms,
            self.repeat_window,
        );
        let kind = match decision {
            Decision::IgnoreRepeat { since_last_ms } => {
                info!(reader = %tap.reader, tag = %short, since_last_s = since_last_ms / 1000, "tap ignored: same tag within repeat-window");
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
            error!(reader = %event.reader, tag = %short, kind = %kind.as_str(), tapped_at = %rfc3339_ms(event.tapped_at_ms), "tap LOST: the database cannot be written and the in-memory buffer is full");
            return;
        }
        self.held.push_back((event, state));
        self.write_held().await;
    }

    /// Writes held events in order until one fails.
    async fn write_held(&mut self) {
        while let Some((event, state)) = self.held.front().cloned() {
            match self.store.record_event(event.clone(), state).await {
                Ok(event_id) => {
                    self.held.pop_front();
                    if std::mem::take(&mut self.write_failing) {
                        info!(
                            held = self.held.len() + 1,
                            "the database can be written again; writing the held taps"
                        );
                    }
                    info!(
                        event_id,
                        reader = %event.reader,
                        tag = %tag::short(&event.tag),
                        kind = %event.kind.as_str(),
                        tapped_at_ms = event.tapped_at_ms,
                        "tap recorded"
                    );
                    self.recorded.notify_one();
                }
                Err(e) => {
                    if !self.write_failing {
                        self.write_failing = true;
                        error!(error = %e, held = self.held.len(), "cannot write to the database; taps are held in memory and written when it recovers");
                    }
                    return;
                }
            }
        }
    }
}
