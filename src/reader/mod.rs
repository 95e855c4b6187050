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
/// A request the reader does not take within this is a reader gone (a USB-serial reader whose
/// firmware stopped reading, say): it is closed and reopened.
const WRITE_WITHIN: Duration = Duration::from_secs(2);
/// Requests in a row a reader the host asks may leave unanswered before staff are told.
const UNANSWERED_WARN_AT: u32 = 10;

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
    /// Whether "the reader does not answer" was said (and not yet taken back).
    said_unanswered: bool,
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

    /// Sends the reader what its codec asks for now, if anything. No flush: on a serial port
    /// that would wait in `tcdrain`, which nothing can cancel.
    async fn ask(&mut self, device: &mut Device) -> std::io::Result<()> {
        if let Some(request) = self.codec.to_send(Instant::now()) {
            if let Some(capture) = &mut self.capture {
                capture.sent(&request);
            }
            tokio::time::timeout(WRITE_WITHIN, device.write_all(&request))
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
                () = crate::clock::sleep_until(ask_at) => continue,
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

/// Turns a reader's frames into presentations: reads the id (`id-format`), debounces it, and
/// says which EGYM rfid and `tagFormat` it is. Pure but for its log lines: the reader task and
/// a capture's replay share it.
#[derive(Debug)]
pub struct Presenter {
    name: Arc<str>,
    config: ReaderConfig,
    debouncer: Debouncer,
    /// The reader says when a card is taken away: a card is one presentation while it stays.
    reports_removal: bool,
    /// The card on such a reader now, as last read.
    present: Option<RawId>,
    /// Its ids are ISO 14443A UIDs (unless it says the card is of another kind).
    reads_uids: bool,
    /// For `listen`: every read goes out (repeats marked), and unreadable ones too.
    listening: bool,
    /// Ids already said to be cut-short MIFARE UIDs (said once each, not at every tap).
    said_cut_short: HashSet<String>,
}

/// Cut-short ids remembered as said, at most; then the list starts again.
const SAID_CUT_SHORT_MAX: usize = 1024;

impl Presenter {
    pub fn new(config: ReaderConfig) -> Presenter {
        let (reports_removal, reads_uids) = match &config.driver {
            Driver::Serial { protocol, .. } => (protocol.reports_removal, protocol.reads_uids),
            Driver::Pcsc { .. } => (true, true),
            Driver::Keyboard { .. } | Driver::Stdin => (false, false),
        };
        Presenter {
            name: Arc::from(config.name.as_str()),
            debouncer: Debouncer::new(config.debounce),
            reports_removal,
            present: None,
            reads_uids,
            config,
            listening: false,
            said_cut_short: HashSet::new(),
        }
    }

    /// The reader was (re)opened: what it reads next is a new presentation.
    pub fn reopened(&mut self) {
        self.present = None;
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
                debug!(reader = %self.name, "card taken away");
                self.present = None;
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
        let repeat = if self.reports_removal {
            // Held for as long as it stays, however long a search or a reopen takes.
            let same = self.present.as_ref() == Some(&raw);
            self.present = Some(raw.clone());
            same
        } else {
            !self.debouncer.is_new_presentation(&raw, now.steady_ms)
        };
        if repeat && !self.listening {
            debug!(reader = %self.name, "same card still presented");
            return None;
        }
        let uid = match kind {
            TagKind::Format(format) => format == "MIFARE",
            TagKind::NoFormat => false,
            TagKind::Unsaid => self.reads_uids,
        };
        if uid && tag::is_random_uid(raw.bytes()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallTime;
    use crate::tag::{ByteOrder, IdBytes, IdFormat, Normalisation};

    fn config(driver: Driver, egym_tag_format: Option<&str>) -> ReaderConfig {
        ReaderConfig {
            name: "desk".into(),
            driver,
            direction: Direction::Toggle,
            debounce: Duration::from_millis(1500),
            id_format: IdFormat::Hex,
            normalisation: Normalisation {
                id_bytes: IdBytes::All,
                byte_order: ByteOrder::AsRead,
            },
            egym_tag_format: egym_tag_format.map(str::to_string),
        }
    }

    fn serial(protocol: &str) -> Driver {
        Driver::Serial {
            path: "/dev/null".into(),
            baud: 115_200,
            protocol: codec::protocol(protocol).unwrap(),
        }
    }

    /// What each frame, read at its second, gives: the tag's hex, or nothing.
    fn presented(presenter: &mut Presenter, frames: Vec<(i64, Frame)>) -> Vec<Option<String>> {
        frames
            .into_iter()
            .map(|(s, frame)| {
                let now = Now {
                    wall_ms: s * 1000,
                    wall: WallTime::Trusted,
                    steady_ms: s * 1000,
                };
                match presenter.present(frame, now) {
                    Some(ReaderMessage::Tap(tap)) => Some(tap.raw.hex()),
                    _ => None,
                }
            })
            .collect()
    }

    const A: [u8; 4] = [0x26, 0xDE, 0xFA, 0xE7];
    const B: [u8; 7] = [0x04, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80];

    #[test]
    fn a_card_on_a_reader_that_reports_removal_is_one_tap_while_it_stays() {
        let mut presenter = Presenter::new(config(serial("pn532"), Some("MIFARE")));
        let taps = presented(
            &mut presenter,
            vec![
                (0, Frame::id(&A)),
                // Read again long after any debounce (searches unanswered, the chip woken
                // again): the same presentation.
                (30, Frame::id(&A)),
                (31, Frame::NoTag),
                (31, Frame::id(&A)),
                // Another card without a removal in between: swapped.
                (32, Frame::id(&B)),
                (33, Frame::id(&B)),
            ],
        );
        let (a, b) = (
            Some(RawId::new(A.to_vec()).hex()),
            Some(RawId::new(B.to_vec()).hex()),
        );
        assert_eq!(taps, [a.clone(), None, None, a.clone(), b, None]);
        // Reopened (unplugged and back): a card still there is presented anew.
        presenter.reopened();
        assert_eq!(presented(&mut presenter, vec![(40, Frame::id(&A))]), [a]);
    }

    #[test]
    fn other_readers_keep_the_time_debounce() {
        let mut presenter = Presenter::new(config(serial("em4100"), None));
        let id = [0x0C, 0x00, 0x06, 0x21, 0xA5];
        let taps = presented(
            &mut presenter,
            vec![
                (0, Frame::id(&id)),
                (1, Frame::id(&id)),
                (10, Frame::id(&id)),
            ],
        );
        assert_eq!(taps.iter().filter(|t| t.is_some()).count(), 2);
    }

    #[test]
    fn random_uids_are_never_sent_from_readers_of_uids() {
        let random = [0x08, 0xA1, 0xB2, 0xC3];
        // Whatever tagFormat a PC/SC reader is set to send, its ids are UIDs.
        let mut pcsc = Presenter::new(config(Driver::Pcsc { reader: None }, Some("HITAG1")));
        assert_eq!(presented(&mut pcsc, vec![(0, Frame::id(&random))]), [None]);
        // A TWN4 says which cards are MIFARE; a LEGIC serial may start with 08.
        let mut twn4 = Presenter::new(config(serial("twn4"), None));
        let kind = |format| Frame::Id {
            bytes: random.to_vec(),
            kind: TagKind::Format(format),
        };
        assert_eq!(presented(&mut twn4, vec![(0, kind("MIFARE"))]), [None]);
        assert_eq!(
            presented(&mut twn4, vec![(1, Frame::NoTag), (1, kind("LEGIC"))]),
            [None, Some("08A1B2C3".to_string())]
        );
        // An EM reader's ids are no UIDs at all.
        let mut em = Presenter::new(config(serial("em4100"), None));
        let em_id = [0x08, 0xA1, 0xB2, 0xC3, 0xD4];
        assert!(presented(&mut em, vec![(0, Frame::id(&em_id))])[0].is_some());
    }
}
