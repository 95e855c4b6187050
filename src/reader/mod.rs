//! Readers: one task per reader turns the bytes of a device into presentations of tags.
//!
//! The task opens its device, feeds what it reads through the protocol's codec, turns each
//! frame into a raw id (`id-format`), debounces it, and hands each new presentation, with the
//! time it was read, to the recorder. A zero-length read or a read error means the device is
//! gone (unplugged): the task closes it, logs that once, and reopens the same path with backoff
//! until it is back.

pub mod capture;
mod em4100;
mod frame;
pub mod keyboard;
mod line;
mod message;
pub mod pcsc;
pub mod pn532;
mod poller;
mod presenter;
mod protocols;
mod source;
pub mod twn4;

/// The codecs as the rest of the crate knows them: what a codec is (`frame.rs`) and the
/// registry of serial protocols (`protocols.rs`), under one name. The files of `reader/` use
/// those two files directly: through here, a codec would use mod.rs, which uses it.
pub mod codec {
    pub use super::frame::{Codec, Discarded, Frame, Presence, TagKind};
    pub use super::protocols::{PROTOCOLS, Protocol, protocol};
}

use std::sync::Arc;
use std::time::Duration;

use crate::clock::timer::{self, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::liveness::Pulse;
use frame::Codec;
pub use message::{CUT_SHORT, RANDOM_UID, ReaderMessage, Tap};
pub use presenter::Presenter;
use source::{Device, open};
pub use source::{Driver, NO_PCSC, Port, ReaderConfig, Source, new_codec, stdin_problem, try_open};

/// The first reopen waits this long; each further one twice as long, up to the maximum.
const REOPEN_FIRST: Duration = Duration::from_millis(100);
const REOPEN_MAX: Duration = Duration::from_secs(2);
/// Malformed input is reported at most this often per reader.
const NOISE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// A request the reader does not take within this is a reader gone (a USB-serial reader whose
/// firmware stopped reading, say): it is closed and reopened.
const WRITE_WITHIN: Duration = Duration::from_secs(2);
/// Requests in a row a reader the host asks may leave unanswered before staff are told.
const UNANSWERED_WARN_AT: u32 = 10;

/// Why reading stopped.
enum Ended {
    /// The device is gone; reopen it.
    Gone {
        reason: String,
        had_data: bool,
    },
    /// End of input on a source that does not come back (standard input).
    EndOfInput,
    Shutdown,
}

/// One reader task: opens its device (again, when it is lost), decodes what it reads and hands
/// each new presentation to the recorder.
#[derive(Debug)]
pub struct Reader {
    name: Arc<str>,
    source: Source,
    codec: Box<dyn Codec>,
    presenter: Presenter,
    last_noise_log: Option<Instant>,
    reported_rejected: u64,
    /// Whether "the reader does not answer" was said (and not yet taken back).
    said_unanswered: bool,
    /// Where `listen --capture` writes what the reader sends.
    capture: Option<capture::Writer>,
    clock: Clock,
}

impl Reader {
    pub fn new(config: ReaderConfig, source: Source, clock: Clock) -> Reader {
        Reader {
            name: Arc::from(config.name.as_str()),
            source,
            codec: new_codec(&config.driver),
            presenter: Presenter::new(config),
            last_noise_log: None,
            reported_rejected: 0,
            said_unanswered: false,
            capture: None,
            clock,
        }
    }

    /// A reader for `listen`: it reports every read, including repeats of a presentation and
    /// text it cannot read as an id.
    pub fn listening(mut self) -> Reader {
        self.presenter.listening = true;
        self
    }

    /// Also writes every byte the reader sends to `capture`.
    pub fn capturing(mut self, capture: capture::Writer) -> Reader {
        self.capture = Some(capture);
        self
    }

    /// Reads until shutdown, sending every new presentation to `taps`.
    pub async fn run(
        mut self,
        taps: mpsc::Sender<ReaderMessage>,
        mut shutdown: watch::Receiver<bool>,
        mut pulse: Pulse,
    ) {
        let mut backoff = REOPEN_FIRST;
        // Whether "cannot open" was already said since the reader was last connected.
        let mut open_failure_logged = false;
        let device_name = self.source.describe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let opened = {
                let opening = open(&mut self.source);
                tokio::pin!(opening);
                loop {
                    tokio::select! {
                        opened = &mut opening => break opened,
                        () = pulse.asked() => pulse.answer(),
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            };
            match opened {
                Ok(device) => {
                    // Said by whoever hears it (the recorder: "reader connected").
                    let _ = taps.send(self.connected(&device_name)).await;
                    let ended = self
                        .read_until_gone(device, &taps, &mut shutdown, &mut pulse)
                        .await;
                    let lost = match &ended {
                        Ended::Gone { reason, .. } => Some(reason.clone()),
                        Ended::EndOfInput | Ended::Shutdown => None,
                    };
                    let _ = taps.send(self.disconnected(&device_name, lost)).await;
                    match ended {
                        Ended::Shutdown => return,
                        Ended::EndOfInput => {
                            warn!(reader = %self.name, device = %device_name, "end of input: nothing more can be read, and the reader stops");
                            return;
                        }
                        Ended::Gone { had_data, .. } => {
                            // Reported as disconnected: do not also report each failed reopen.
                            open_failure_logged = true;
                            if had_data {
                                backoff = REOPEN_FIRST;
                            }
                        }
                    }
                }
                Err(e) => {
                    if !open_failure_logged {
                        warn!(reader = %self.name, device = %device_name, error = %e, "cannot open reader; trying again until it is there");
                        open_failure_logged = true;
                    } else {
                        debug!(reader = %self.name, error = %e, "reader still cannot be opened");
                    }
                }
            }
            let wait = timer::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    () = pulse.asked() => pulse.answer(),
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
            backoff = (backoff * 2).min(REOPEN_MAX);
        }
    }

    /// Sends the reader what its codec asks for now, if anything. No flush: on a serial port
    /// that would wait in `tcdrain`, which nothing can cancel.
    async fn ask(&mut self, device: &mut Device) -> std::io::Result<()> {
        if let Some(request) = self.codec.to_send(Instant::now()) {
            if let Some(capture) = &mut self.capture {
                capture.sent(&request);
            }
            timer::timeout(WRITE_WITHIN, device.write_all(&request))
                .await
                .map_err(|_| {
                    std::io::Error::other(format!(
                        "the reader took nothing of what was sent to it for {} s",
                        WRITE_WITHIN.as_secs()
                    ))
                })??;
        }
        // Requests refused or never answered are counted as they are asked again.
        self.report_noise(Instant::now());
        self.report_unanswered();
        Ok(())
    }

    /// Says once when a reader the host asks stops answering, and when it answers again.
    fn report_unanswered(&mut self) {
        let unanswered = self.codec.unanswered();
        if unanswered >= UNANSWERED_WARN_AT && !self.said_unanswered {
            self.said_unanswered = true;
            warn!(reader = %self.name, unanswered, "the reader does not answer: check its wiring, its baud and that it speaks the configured protocol (a PN532 set to HSU, a TWN4 running the Simple Protocol)");
        } else if unanswered == 0 && self.said_unanswered {
            self.said_unanswered = false;
            info!(reader = %self.name, "the reader answers again");
        }
    }

    async fn read_until_gone(
        &mut self,
        mut device: Device,
        taps: &mpsc::Sender<ReaderMessage>,
        shutdown: &mut watch::Receiver<bool>,
        pulse: &mut Pulse,
    ) -> Ended {
        let mut buffer = [0u8; 512];
        let mut frames = Vec::new();
        let mut had_data = false;
        let ends_for_good = matches!(self.source, Source::Stdin | Source::Stream(_));
        self.codec.opened();
        self.presenter.reopened();
        if let Some(capture) = &mut self.capture {
            capture.opened();
        }
        loop {
            if let Err(e) = self.ask(&mut device).await {
                return Ended::Gone {
                    reason: e.to_string(),
                    had_data,
                };
            }
            let ask_at = self.codec.next_send_at();
            // Reading is cancel-safe: an answer to the watchdog, or a request due, loses no
            // bytes.
            let read = tokio::select! {
                read = device.read(&mut buffer) => read,
                // A request due, or one unanswered: asked (again) at the top of the loop.
                () = timer::sleep_until_or_never(ask_at) => continue,
                () = pulse.asked() => {
                    pulse.answer();
                    continue;
                }
                _ = shutdown.wait_for(|stop| *stop) => return Ended::Shutdown,
            };
            let n = match read {
                Ok(0) if ends_for_good => return Ended::EndOfInput,
                Ok(0) => {
                    return Ended::Gone {
                        reason: "end of data (device closed)".into(),
                        had_data,
                    };
                }
                Ok(n) => n,
                Err(e) => {
                    return Ended::Gone {
                        reason: e.to_string(),
                        had_data,
                    };
                }
            };
            had_data = true;
            let now = self.clock.now();
            if let Some(capture) = &mut self.capture {
                capture.read(&buffer[..n]);
            }
            frames.clear();
            self.codec.feed(&buffer[..n], &mut frames);
            for frame in frames.drain(..) {
                if let Some(message) = self.presenter.present(frame, now)
                    && taps.send(message).await.is_err()
                {
                    return Ended::Shutdown;
                }
            }
            self.report_noise(Instant::now());
        }
    }

    fn connected(&self, device: &str) -> ReaderMessage {
        ReaderMessage::Connected {
            reader: self.name.clone(),
            connected: true,
            device: device.into(),
            lost: None,
        }
    }

    /// The device is closed: `lost` says why, when it was lost (not at a stop).
    fn disconnected(&self, device: &str, lost: Option<String>) -> ReaderMessage {
        ReaderMessage::Connected {
            reader: self.name.clone(),
            connected: false,
            device: device.into(),
            lost,
        }
    }

    fn report_noise(&mut self, now: Instant) {
        let discarded = self.codec.discarded();
        if discarded.rejected_frames == self.reported_rejected {
            return;
        }
        if self
            .last_noise_log
            .is_some_and(|at| now.duration_since(at) < NOISE_LOG_INTERVAL)
        {
            return;
        }
        self.last_noise_log = Some(now);
        self.reported_rejected = discarded.rejected_frames;
        warn!(
            reader = %self.name,
            rejected_frames = discarded.rejected_frames,
            noise_bytes = discarded.noise_bytes,
            "malformed frames skipped (totals since start); check the reader's protocol and baud if this grows"
        );
    }
}

/// Why [`read_one`] read nothing.
#[derive(Debug)]
pub enum ReadOneError {
    /// The device cannot be opened.
    CannotOpen {
        device: String,
        error: std::io::Error,
    },
    /// The reader stopped (its input ended) before a card was read.
    Stopped,
    /// Nothing was presented in time.
    NothingWithin(Duration),
}

impl std::fmt::Display for ReadOneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadOneError::CannotOpen { device, error } => {
                write!(f, "cannot open the reader ({device}): {error}")
            }
            ReadOneError::Stopped => write!(f, "the reader stopped before a card was read"),
            ReadOneError::NothingWithin(within) => {
                write!(f, "no card was read within {} s", within.as_secs())
            }
        }
    }
}

/// Opens `config`'s reader on its own, as `listen` does, and returns the first message that
/// `wanted` takes, at most `within` after it was opened; then closes the reader again. What
/// `calibrate` and `enrol` read one card with.
pub async fn read_one(
    config: &ReaderConfig,
    clock: Clock,
    within: Duration,
    wanted: impl Fn(&ReaderMessage) -> bool,
) -> Result<ReaderMessage, ReadOneError> {
    let device = match &config.driver {
        Driver::Serial { path, .. } | Driver::Keyboard { path } => path.display().to_string(),
        Driver::Pcsc { reader: Some(name) } => format!("PC/SC reader matching {name:?}"),
        Driver::Pcsc { reader: None } => "the first PC/SC reader".into(),
        Driver::Stdin => "standard input".into(),
    };
    try_open(config).map_err(|error| ReadOneError::CannotOpen { device, error })?;
    let (messages, mut inbox) = mpsc::channel(16);
    let (stop, stopping) = watch::channel(false);
    let task = tokio::spawn(
        Reader::new(config.clone(), Source::for_config(config), clock)
            .listening()
            .run(messages, stopping, Pulse::unwatched()),
    );
    let deadline = Instant::now() + within;
    let read = loop {
        match timer::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(message)) if wanted(&message) => break Ok(message),
            Ok(Some(_)) => {}
            Ok(None) => break Err(ReadOneError::Stopped),
            Err(_) => break Err(ReadOneError::NothingWithin(within)),
        }
    };
    let _ = stop.send(true);
    let _ = task.await;
    read
}
