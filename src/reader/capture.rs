//! Captures: what a reader sent, byte for byte and with timing, and what the host asked it
//! (`gym-checkin listen --capture FILE`). A capture from the field replays through the same
//! codec and presentation logic as the service, so a report about a reader becomes a test (the
//! files under `tests/captures/`, each with the presentations expected).
//!
//! The file is text: a header of `# key: value` lines with the reader's settings, then one line
//! per read or request, with the seconds since the capture began (`open` where the device was
//! opened, or opened again after it was gone):
//!
//! ```text
//! # gym-checkin capture 1
//! # reader: desk
//! # driver: serial
//! # protocol: pn532
//! # id-format: hex
//! # id-bytes: all
//! # byte-order: as-read
//! # egym-tag-format: MIFARE
//! # debounce-ms: 1500
//! 0.000104 open
//! 0.000188 > 555500000000000000000000000000000000FF03FDD414011700
//! 0.004010 < 0000FF00FF000000FF02FED5151600
//! ```
//! `<` is what the reader sent, `>` what the host sent it; both are hex. A replay asks the codec
//! for each request where the capture has one, and fails if it would send something else: the
//! replay would no longer follow the capture.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::timer::Instant;

use super::frame::Codec;
use super::message::ReaderMessage;
use super::presenter::Presenter;
use super::source::{Driver, ReaderConfig, new_codec};
use crate::clock::{Now, SteadyMs, WallMs, WallTime};
use crate::tag::{ByteOrder, IdBytes, IdFormat, Normalisation, TagFormat, decode_hex, hex_upper};
use crate::visit::Direction;

const MAGIC: &str = "# gym-checkin capture 1";

/// Writes a capture as the reader reads.
#[derive(Debug)]
pub struct Writer {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    started: Instant,
    failed: bool,
}

impl Writer {
    /// Creates `path` (replacing it) and writes the header for `config`.
    pub fn create(path: &Path, config: &ReaderConfig) -> std::io::Result<Writer> {
        // A capture holds the ids of the cards read: its owner's alone, whatever the umask.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut file = std::io::BufWriter::new(file);
        file.write_all(header(config).as_bytes())?;
        file.flush()?;
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            started: Instant::now(),
            failed: false,
        })
    }

    /// Notes that the device was opened.
    pub fn opened(&mut self) {
        self.line("open");
    }

    /// Notes bytes the reader sent.
    pub fn read(&mut self, bytes: &[u8]) {
        self.line(&format!("< {}", hex_upper(bytes)));
    }

    /// Notes bytes sent to the reader.
    pub fn sent(&mut self, bytes: &[u8]) {
        self.line(&format!("> {}", hex_upper(bytes)));
    }

    fn line(&mut self, what: &str) {
        if self.failed {
            return;
        }
        let at = self.started.elapsed().as_secs_f64();
        let written = writeln!(self.file, "{at:.6} {what}").and_then(|()| self.file.flush());
        if let Err(e) = written {
            // Said once; reading goes on without the capture.
            self.failed = true;
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the capture; it stops here");
        }
    }
}

fn header(config: &ReaderConfig) -> String {
    let mut header = format!("{MAGIC}\n# reader: {}\n", config.name);
    let driver = match &config.driver {
        Driver::Serial { protocol, baud, .. } => {
            format!("serial\n# protocol: {}\n# baud: {baud}", protocol.name)
        }
        other => other.name().into(),
    };
    let _ = write!(
        header,
        "# driver: {driver}\n# id-format: {}\n# id-bytes: {}\n# byte-order: {}\n# egym-tag-format: {}\n# debounce-ms: {}\n",
        config.id_format.as_str(),
        config.normalisation.id_bytes.as_str(),
        config.normalisation.byte_order.as_str(),
        config.egym_tag_format.map_or("none", TagFormat::as_str),
        config.debounce.as_millis()
    );
    header
}

/// One presentation a replay found, as the golden files list them.
#[derive(Clone, Debug, PartialEq)]
pub struct Presented {
    /// Seconds into the capture.
    pub at_s: f64,
    pub rfid: String,
    pub tag_format: Option<TagFormat>,
}

impl std::fmt::Display for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.rfid,
            self.tag_format.map_or("-", TagFormat::as_str)
        )
    }
}

/// What a replay found: the presentations, and what the codec threw away.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replay {
    pub presented: Vec<Presented>,
    pub rejected_frames: u64,
    pub noise_bytes: u64,
}

/// Replays a capture through its reader's codec and presentation logic.
pub fn replay(text: &str) -> Result<Replay, String> {
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, l)| l.trim()) != Some(MAGIC) {
        return Err(format!("not a capture: the first line must be {MAGIC:?}"));
    }
    let mut settings = std::collections::HashMap::new();
    let mut events = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            // Settings come in the header, before the first event; later `#` lines are notes.
            if events.is_empty()
                && let Some((key, value)) = comment.split_once(':')
            {
                settings.insert(key.trim().to_string(), value.trim().to_string());
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "line {}: expected \"SECONDS open\", \"SECONDS < HEX\" or \"SECONDS > HEX\"",
                i + 1
            )
        };
        let mut parts = line.split_whitespace();
        let at: f64 = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let what = parts.next().ok_or_else(bad)?;
        let event = match what {
            "open" => Event::Opened,
            "<" | ">" => {
                let bytes = decode_hex(&parts.collect::<String>()).ok_or_else(bad)?;
                if what == "<" {
                    Event::Read(bytes)
                } else {
                    Event::Sent(bytes)
                }
            }
            _ => return Err(bad()),
        };
        events.push((i + 1, at, event));
    }
    let config = config_from(&settings)?;
    let mut codec: Box<dyn Codec> = new_codec(&config.driver);
    let mut presenter = Presenter::new(config);
    let start = Instant::now();
    let mut replay = Replay::default();
    let mut frames = Vec::new();
    codec.opened();
    for (line, at, event) in events {
        let now = start + Duration::from_secs_f64(at);
        let bytes = match event {
            Event::Opened => {
                codec.opened();
                presenter.reopened();
                continue;
            }
            Event::Sent(sent) => {
                // The host asked here. The codec asks at its own moment, which the stamp (taken
                // just after) may precede by a hair.
                let due = codec.next_send_at().map_or(now, |due| due.max(now));
                let asked = codec.to_send(due);
                if asked.as_deref() != Some(&sent[..]) {
                    return Err(format!(
                        "line {line}: the capture shows {} sent, the codec would send {}",
                        hex_upper(&sent),
                        asked.map_or("nothing".into(), |a| hex_upper(&a))
                    ));
                }
                continue;
            }
            Event::Read(bytes) => bytes,
        };
        // A capture has one timeline, its seconds since the start: as wall time and as steady
        // time alike.
        let at_ms = (at * 1000.0).round() as i64;
        let now_read = Now {
            wall: WallMs::from_millis(at_ms),
            wall_is: WallTime::Trusted,
            steady: SteadyMs::from_millis(at_ms),
        };
        frames.clear();
        codec.feed(&bytes, &mut frames);
        for frame in frames.drain(..) {
            if let Some(ReaderMessage::Tap(tap)) = presenter.present(frame, now_read) {
                replay.presented.push(Presented {
                    at_s: at,
                    rfid: tap.rfid,
                    tag_format: tap.tag_format,
                });
            }
        }
    }
    let discarded = codec.discarded();
    replay.rejected_frames = discarded.rejected_frames;
    replay.noise_bytes = discarded.noise_bytes;
    Ok(replay)
}

/// One line of a capture after its header.
enum Event {
    Opened,
    Read(Vec<u8>),
    Sent(Vec<u8>),
}

/// The reader settings a capture's header gives.
fn config_from(
    settings: &std::collections::HashMap<String, String>,
) -> Result<ReaderConfig, String> {
    let get = |key: &str| {
        settings
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("the capture's header has no {key:?}"))
    };
    let choose = |key: &str, names: &[&'static str]| -> Result<usize, String> {
        let value = get(key)?;
        names
            .iter()
            .position(|n| *n == value)
            .ok_or_else(|| format!("{key}: unknown value {value:?}"))
    };
    let driver = match get("driver")? {
        "serial" => {
            let name = get("protocol")?;
            let protocol = super::protocols::protocol(name)
                .ok_or_else(|| format!("protocol: unknown value {name:?}"))?;
            Driver::Serial {
                path: PathBuf::from("/dev/null"),
                baud: get("baud")?.parse().map_err(|_| "baud: not a number")?,
                protocol,
            }
        }
        "keyboard" => Driver::Keyboard {
            path: PathBuf::from("/dev/null"),
        },
        "pcsc" => Driver::Pcsc { reader: None },
        "stdin" => Driver::Stdin,
        other => return Err(format!("driver: unknown value {other:?}")),
    };
    let id_format = IdFormat::ALL[choose("id-format", &IdFormat::ALL.map(IdFormat::as_str))?];
    let id_bytes = IdBytes::ALL[choose("id-bytes", &IdBytes::ALL.map(IdBytes::as_str))?];
    let byte_order = ByteOrder::ALL[choose("byte-order", &ByteOrder::ALL.map(ByteOrder::as_str))?];
    let egym_tag_format = match get("egym-tag-format")? {
        "none" => None,
        format => Some(
            TagFormat::parse(format)
                .ok_or_else(|| format!("egym-tag-format: unknown value {format:?}"))?,
        ),
    };
    let debounce_ms: u64 = get("debounce-ms")?
        .parse()
        .map_err(|_| "debounce-ms: not a number")?;
    Ok(ReaderConfig {
        name: get("reader")?.to_string(),
        driver,
        direction: Direction::Toggle,
        debounce: Duration::from_millis(debounce_ms),
        id_format,
        normalisation: Normalisation {
            id_bytes,
            byte_order,
        },
        egym_tag_format,
    })
}
