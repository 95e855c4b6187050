//! Readers: one task per reader turns the bytes of a device into presentations of tags.
//!
//! The task opens its device, feeds what it reads through the protocol's codec, turns each
//! frame into a raw id (`id-format`), debounces it, and hands each new presentation, with the
//! time it was read, to the recorder. A zero-length read or a read error means the device is
//! gone (unplugged): the task closes it, logs that once, and reopens the same path with backoff
//! until it is back.

pub mod codec;
mod em4100;
pub mod keyboard;
mod line;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::{Clock, Now};
use crate::config::{Driver, ReaderConfig};
use crate::liveness::Pulse;
use crate::tag::{self, IdFormat, RawId};
use crate::visit::{Debouncer, Direction};
use codec::{Codec, Frame};

/// The first reopen waits this long; each further one twice as long, up to the maximum.
const REOPEN_FIRST: Duration = Duration::from_millis(100);
const REOPEN_MAX: Duration = Duration::from_secs(2);
/// Malformed input is reported at most this often per reader.
const NOISE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A new presentation of a tag at a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    pub reader: Arc<str>,
    pub raw: RawId,
    /// The normalised EGYM rfid.
    pub rfid: String,
    pub tag_format: Option<String>,
    pub direction: Direction,
    /// When the frame was read.
    pub at: Now,
    /// Part of a presentation already reported (only `listen` sees these).
    pub repeat: bool,
    /// A MIFARE UID the reader cut short (see [`tag::is_cut_short_uid`]).
    pub cut_short: bool,
    /// What a text reader sent, as sent (only a listening reader keeps it, for `calibrate`).
    pub text: Option<String>,
}

/// What staff are told of a cut-short MIFARE UID, in the log and by `listen`.
pub const CUT_SHORT: &str = "this id is 4 bytes starting with 0x88, the MIFARE cascade tag: the \
    reader sent only the first part of a 7-byte card number, which matches at EGYM only if the \
    card was enrolled through a reader that cuts it short the same way. Set the reader to send \
    full 7-byte UIDs, or use one that does (if this reader's cards are not MIFARE, ignore this)";

/// What a reader task tells the recorder (or `listen`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReaderMessage {
    Tap(Tap),
    /// The device was opened (`true`) or lost (`false`).
    Connected {
        reader: Arc<str>,
        connected: bool,
    },
    /// Text that is not an id in the reader's `id-format` (only `listen` sees these).
    Unreadable {
        reader: Arc<str>,
        text: String,
        error: String,
    },
}

/// Where a reader's bytes come from.
pub enum Source {
    Serial {
        path: PathBuf,
        baud: u32,
    },
    /// An evdev keyboard (a keyboard-wedge reader), grabbed.
    Keyboard {
        path: PathBuf,
    },
    /// This process's standard input (line protocol); ends at end of input.
    Stdin,
    /// Any byte stream (line protocol), e.g. the demo's simulated reader; ends at end of input.
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Serial { path, baud } => write!(f, "Serial({}, {baud})", path.display()),
            Source::Keyboard { path } => write!(f, "Keyboard({})", path.display()),
            Source::Stdin => write!(f, "Stdin"),
            Source::Stream(_) => write!(f, "Stream"),
        }
    }
}

impl Source {
    pub fn for_config(config: &ReaderConfig) -> Source {
        match &config.driver {
            Driver::Serial { path, baud, .. } => Source::Serial {
                path: path.clone(),
                baud: *baud,
            },
            Driver::Keyboard { path } => Source::Keyboard { path: path.clone() },
            Driver::Stdin => Source::Stdin,
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Serial { path, .. } | Source::Keyboard { path } => path.display().to_string(),
            Source::Stdin => "standard input".into(),
            Source::Stream(_) => "simulated reader".into(),
        }
    }
}

type Device = Box<dyn AsyncRead + Send + Unpin>;

/// Opens a reader's device once and closes it again: whether it can be opened now (a serial
/// reader is opened exclusively, so not while the service has it).
pub fn try_open(config: &ReaderConfig) -> std::io::Result<()> {
    open(&mut Source::for_config(config)).map(drop)
}

fn open(source: &mut Source) -> std::io::Result<Device> {
    match source {
        Source::Serial { path, baud } => {
            let port = tokio_serial::new(path.to_string_lossy(), *baud)
                .data_bits(tokio_serial::DataBits::Eight)
                .parity(tokio_serial::Parity::None)
                .stop_bits(tokio_serial::StopBits::One)
                .flow_control(tokio_serial::FlowControl::None);
            let stream = tokio_serial::SerialStream::open(&port).map_err(std::io::Error::other)?;
            Ok(Box::new(stream))
        }
        Source::Keyboard { path } => Ok(Box::new(keyboard::KeyboardDevice::open(path)?)),
        Source::Stdin => Ok(Box::new(tokio::io::stdin())),
        Source::Stream(stream) => {
            let stream = std::mem::replace(stream, Box::new(tokio::io::empty()));
            Ok(stream)
        }
    }
}

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

/// One reader task.
#[derive(Debug)]
pub struct Reader {
    name: Arc<str>,
    source: Source,
    codec: Box<dyn Codec>,
    /// How text frames are read (em4100 frames carry bytes and ignore it).
    id_format: IdFormat,
    debouncer: Debouncer,
    config: ReaderConfig,
    last_noise_log: Option<Instant>,
    reported_rejected: u64,
    /// For `listen`: every read goes out (repeats marked), and unreadable ones too.
    listening: bool,
    /// Ids already said to be cut-short MIFARE UIDs (said once each, not at every tap).
    said_cut_short: HashSet<String>,
    clock: Clock,
}

/// Cut-short ids remembered as said, at most; then the list starts again.
const SAID_CUT_SHORT_MAX: usize = 1024;

impl Reader {
    pub fn new(config: ReaderConfig, source: Source, clock: Clock) -> Reader {
        let codec = match &config.driver {
            Driver::Serial { protocol, .. } => (protocol.new_codec)(),
            Driver::Stdin | Driver::Keyboard { .. } => (codec::protocol("line")
                .expect("the line protocol exists")
                .new_codec)(),
        };
        Reader {
            name: Arc::from(config.name.as_str()),
            source,
            codec,
            id_format: config.id_format,
            debouncer: Debouncer::new(config.debounce),
            config,
            last_noise_log: None,
            reported_rejected: 0,
            listening: false,
            said_cut_short: HashSet::new(),
            clock,
        }
    }

    /// A reader for `listen`: it reports every read, including repeats of a presentation and
    /// text it cannot read as an id.
    pub fn listening(mut self) -> Reader {
        self.listening = true;
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
            match open(&mut self.source) {
                Ok(device) => {
                    info!(reader = %self.name, device = %device_name, "reader connected");
                    let _ = taps.send(self.connected(true)).await;
                    let ended = self
                        .read_until_gone(device, &taps, &mut shutdown, &mut pulse)
                        .await;
                    let _ = taps.send(self.connected(false)).await;
                    match ended {
                        Ended::Shutdown => return,
                        Ended::EndOfInput => {
                            info!(reader = %self.name, device = %device_name, "end of input; the reader stops");
                            return;
                        }
                        Ended::Gone { reason, had_data } => {
                            warn!(reader = %self.name, device = %device_name, reason = %reason, "reader disconnected; reopening it when it is back");
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
            let wait = tokio::time::sleep(backoff);
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
        loop {
            // Reading is cancel-safe: an answer to the watchdog loses no bytes.
            let read = tokio::select! {
                read = device.read(&mut buffer) => read,
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
            frames.clear();
            self.codec.feed(&buffer[..n], &mut frames);
            for frame in frames.drain(..) {
                if let Some(message) = self.presentation(frame, now)
                    && taps.send(message).await.is_err()
                {
                    return Ended::Shutdown;
                }
            }
            self.report_noise(Instant::now());
        }
    }

    fn connected(&self, connected: bool) -> ReaderMessage {
        ReaderMessage::Connected {
            reader: self.name.clone(),
            connected,
        }
    }

    /// Turns a frame into a tap, unless it is unreadable or part of an ongoing presentation
    /// (both reported all the same when listening).
    fn presentation(&mut self, frame: Frame, now: Now) -> Option<ReaderMessage> {
        let from_text = matches!(frame, Frame::Text(_));
        let text = match &frame {
            Frame::Text(text) if self.listening => Some(text.clone()),
            _ => None,
        };
        let raw = match frame {
            Frame::Em4100(bytes) => RawId::new(bytes.to_vec()),
            Frame::Text(text) => match tag::parse_text_id(&text, self.id_format) {
                Ok(raw) => raw,
                Err(e) if self.listening => {
                    return Some(ReaderMessage::Unreadable {
                        reader: self.name.clone(),
                        text,
                        error: e.to_string(),
                    });
                }
                Err(e) => {
                    // The text may be a card number: log its length, not its content.
                    warn!(reader = %self.name, length = text.len(), error = %e, "unreadable id skipped; check the reader's id-format");
                    return None;
                }
            },
        };
        let repeat = !self.debouncer.is_new_presentation(&raw, now.steady_ms);
        if repeat && !self.listening {
            debug!(reader = %self.name, "same card still presented");
            return None;
        }
        let rfid = tag::normalise(&raw, self.config.normalisation);
        // An EM reader's ids, or HITAG and LEGIC cards', are never MIFARE UIDs.
        let cut_short = from_text
            && tag::is_cut_short_uid(&rfid)
            && !matches!(
                self.config.egym_tag_format.as_deref(),
                Some("HITAG1" | "LEGIC")
            );
        if cut_short && !self.listening {
            self.say_cut_short(&rfid);
        }
        Some(ReaderMessage::Tap(Tap {
            reader: self.name.clone(),
            rfid,
            raw,
            tag_format: self.config.egym_tag_format.clone(),
            direction: self.config.direction,
            at: now,
            repeat,
            cut_short,
            text,
        }))
    }

    fn say_cut_short(&mut self, rfid: &str) {
        if self.said_cut_short.len() >= SAID_CUT_SHORT_MAX {
            self.said_cut_short.clear();
        }
        if !self.said_cut_short.insert(rfid.to_string()) {
            return;
        }
        warn!(reader = %self.name, tag = %tag::short(rfid), "{CUT_SHORT}");
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
