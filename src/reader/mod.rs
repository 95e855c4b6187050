//! Readers: one task per reader turns the bytes of a device into presentations of tags.
//!
//! The task opens its device, feeds what it reads through the protocol's codec, turns each
//! frame into a raw id (`id-format`), debounces it, and hands each new presentation, with the
//! time it was read, to the recorder. A zero-length read or a read error means the device is
//! gone (unplugged): the task closes it, logs that once, and reopens the same path with backoff
//! until it is back.

pub mod capture;
pub mod codec;
mod em4100;
pub mod keyboard;
mod line;
pub mod pcsc;
pub mod pn532;
pub mod twn4;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::{Clock, Now};
use crate::config::{Driver, ReaderConfig};
use crate::liveness::Pulse;
use crate::tag::{self, RawId};
use crate::visit::{Debouncer, Direction};
use codec::{Codec, Frame, TagKind};

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
    /// A MIFARE UID that is random, new at every power-up (a phone, or a DESFire card with
    /// random ids): it can never identify a member, so it is no tap (only `listen` sees these).
    RandomUid {
        reader: Arc<str>,
        raw: RawId,
    },
    /// The reader says the card was taken away (only `listen` sees these).
    Removed {
        reader: Arc<str>,
    },
    /// The reader saw a card but could not read it (only `listen` sees these; the service logs
    /// them).
    Warning {
        reader: Arc<str>,
        warning: String,
    },
}

/// What staff are told of a random MIFARE UID.
pub const RANDOM_UID: &str = "this is a random MIFARE id (4 bytes starting with 0x08): the card \
    or phone shows a new one at every tap, so it cannot identify a member and is not sent. Use \
    the member's wristband or card";

/// Where a reader's bytes come from.
pub enum Source {
    Serial {
        path: PathBuf,
        baud: u32,
    },
    /// A PC/SC reader through pcscd: the first whose name holds `name`, or the first found.
    Pcsc {
        name: Option<String>,
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
            Source::Pcsc { name } => write!(f, "Pcsc({name:?})"),
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
            Driver::Pcsc { reader } => Source::Pcsc {
                name: reader.clone(),
            },
            Driver::Stdin => Source::Stdin,
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Serial { path, .. } | Source::Keyboard { path } => path.display().to_string(),
            Source::Pcsc { name: Some(name) } => format!("PC/SC reader matching {name:?}"),
            Source::Pcsc { name: None } => "the first PC/SC reader".into(),
            Source::Stdin => "standard input".into(),
            Source::Stream(_) => "simulated reader".into(),
        }
    }
}

/// An open reader: bytes come in, and requests go out to readers the host must ask.
pub trait Port: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Port for T {}

type Device = Box<dyn Port>;

/// A source that only reads: what is written to it is dropped.
fn read_only(source: impl AsyncRead + Send + Unpin + 'static) -> Device {
    Box::new(tokio::io::join(source, tokio::io::sink()))
}

/// Opens a reader's device once and closes it again: whether it can be opened now (a serial
/// reader is opened exclusively, so not while the service has it).
pub fn try_open(config: &ReaderConfig) -> std::io::Result<()> {
    match Source::for_config(config) {
        #[cfg(feature = "pcsc")]
        Source::Pcsc { name } => pcsc::PcscDevice::check(name.as_deref()).map(drop),
        mut source => open_now(&mut source).map(drop),
    }
}

async fn open(source: &mut Source) -> std::io::Result<Device> {
    match source {
        #[cfg(feature = "pcsc")]
        Source::Pcsc { name } => Ok(Box::new(pcsc::PcscDevice::open(name.clone()).await?)),
        source => open_now(source),
    }
}

fn open_now(source: &mut Source) -> std::io::Result<Device> {
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
        Source::Keyboard { path } => Ok(read_only(keyboard::KeyboardDevice::open(path)?)),
        // With PC/SC support, `open` opens these.
        Source::Pcsc { .. } => Err(std::io::Error::other(NO_PCSC)),
        Source::Stdin => Ok(read_only(tokio::io::stdin())),
        Source::Stream(stream) => {
            let stream = std::mem::replace(stream, Box::new(tokio::io::empty()));
            Ok(read_only(stream))
        }
    }
}

/// Said when a PC/SC reader is configured in a build without PC/SC support.
pub const NO_PCSC: &str = "this build of gym-checkin has no PC/SC support: install the \
    gym-checkin package, or build with `cargo build --release --features pcsc` (needs \
    libpcsclite-dev)";

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
    presenter: Presenter,
    last_noise_log: Option<Instant>,
    reported_rejected: u64,
    /// Where `listen --capture` writes what the reader sends.
    capture: Option<capture::Writer>,
    clock: Clock,
}

/// The codec a reader's frames come from.
pub fn new_codec(driver: &Driver) -> Box<dyn Codec> {
    match driver {
        Driver::Serial { protocol, .. } => (protocol.new_codec)(),
        Driver::Pcsc { .. } => Box::new(pcsc::PcscCodec::default()),
        Driver::Stdin | Driver::Keyboard { .. } => (codec::protocol("line")
            .expect("the line protocol exists")
            .new_codec)(),
    }
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

    /// Sends the reader what its codec asks for now, if anything.
    async fn ask(&mut self, device: &mut Device) -> std::io::Result<()> {
        if let Some(request) = self.codec.to_send(Instant::now()) {
            if let Some(capture) = &mut self.capture {
                capture.sent(&request);
            }
            device.write_all(&request).await?;
            device.flush().await?;
        }
        Ok(())
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
                () = sleep_until_some(ask_at) => continue,
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

    fn connected(&self, connected: bool) -> ReaderMessage {
        ReaderMessage::Connected {
            reader: self.name.clone(),
            connected,
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

/// Sleeps until `at`, or for ever with none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Turns a reader's frames into presentations: reads the id (`id-format`), debounces it, and
/// says which EGYM rfid and `tagFormat` it is. Pure but for its log lines: the reader task and
/// a capture's replay share it.
#[derive(Debug)]
pub struct Presenter {
    name: Arc<str>,
    config: ReaderConfig,
    debouncer: Debouncer,
    /// For `listen`: every read goes out (repeats marked), and unreadable ones too.
    listening: bool,
    /// Ids already said to be cut-short MIFARE UIDs (said once each, not at every tap).
    said_cut_short: HashSet<String>,
}

/// Cut-short ids remembered as said, at most; then the list starts again.
const SAID_CUT_SHORT_MAX: usize = 1024;

impl Presenter {
    pub fn new(config: ReaderConfig) -> Presenter {
        Presenter {
            name: Arc::from(config.name.as_str()),
            debouncer: Debouncer::new(config.debounce),
            config,
            listening: false,
            said_cut_short: HashSet::new(),
        }
    }

    /// Turns a frame into a tap, unless it is unreadable or part of an ongoing presentation
    /// (both reported all the same when listening).
    pub fn present(&mut self, frame: Frame, now: Now) -> Option<ReaderMessage> {
        let from_text = matches!(frame, Frame::Text(_));
        let text = match &frame {
            Frame::Text(text) if self.listening => Some(text.clone()),
            _ => None,
        };
        let (raw, kind) = match frame {
            Frame::Id { bytes, kind } => (RawId::new(bytes), kind),
            Frame::Text(text) => match tag::parse_text_id(&text, self.config.id_format) {
                Ok(raw) => (raw, TagKind::Unsaid),
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
            Frame::NoTag => {
                self.debouncer.forget_all();
                return self.listening.then(|| ReaderMessage::Removed {
                    reader: self.name.clone(),
                });
            }
            Frame::Warning(warning) => {
                warn!(reader = %self.name, "{warning}");
                return self.listening.then(|| ReaderMessage::Warning {
                    reader: self.name.clone(),
                    warning,
                });
            }
        };
        let tag_format = match kind {
            TagKind::Unsaid => self.config.egym_tag_format.clone(),
            TagKind::NoFormat => None,
            TagKind::Format(format) => Some(format.to_string()),
        };
        let repeat = !self.debouncer.is_new_presentation(&raw, now.steady_ms);
        if repeat && !self.listening {
            debug!(reader = %self.name, "same card still presented");
            return None;
        }
        let mifare = tag_format.as_deref() == Some("MIFARE");
        if mifare && !from_text && tag::is_random_uid(raw.bytes()) {
            if self.listening {
                return Some(ReaderMessage::RandomUid {
                    reader: self.name.clone(),
                    raw,
                });
            }
            warn!(reader = %self.name, tag = %tag::short(&raw.hex()), "{RANDOM_UID}");
            return None;
        }
        let rfid = tag::normalise(&raw, self.config.normalisation);
        // An EM reader's ids, or HITAG and LEGIC cards', are never MIFARE UIDs.
        let cut_short = from_text
            && tag::is_cut_short_uid(&rfid)
            && !matches!(tag_format.as_deref(), Some("HITAG1" | "LEGIC"));
        if cut_short && !self.listening {
            self.say_cut_short(&rfid);
        }
        Some(ReaderMessage::Tap(Tap {
            reader: self.name.clone(),
            rfid,
            raw,
            tag_format,
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
}
