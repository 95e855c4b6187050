//! The frame codecs: bytes from a reader in, ids out (pure, resynchronising).
//!
//! A codec is fed one byte at a time and never fails: anything that is not part of a valid frame
//! is thrown away and counted, and decoding goes on with the next byte. Feeding a stream in one
//! piece or split at any offset gives the same frames.
//!
//! Adding a reader protocol means one new entry in [`PROTOCOLS`] and one new codec file.

use super::em4100::Em4100Codec;
use super::line::LineCodec;

/// What one valid frame carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The 5 bytes of an EM4100 id: version byte, then the 4 card bytes.
    Em4100([u8; 5]),
    /// One line of text, trimmed, not empty; `id-format` says how to read it.
    Text(String),
}

/// Counts of what a codec threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    /// Bytes outside any frame.
    pub noise_bytes: u64,
    /// Frames that started but were cut short, malformed or failed their checksum.
    pub rejected_frames: u64,
}

pub trait Codec: Send + std::fmt::Debug {
    /// Feeds one byte; returns the frame this byte completes, if any.
    fn push(&mut self, byte: u8) -> Option<Frame>;

    /// What was thrown away so far.
    fn discarded(&self) -> Discarded;

    /// Feeds several bytes, appending every completed frame to `frames`.
    fn feed(&mut self, bytes: &[u8], frames: &mut Vec<Frame>) {
        frames.extend(bytes.iter().filter_map(|&b| self.push(b)));
    }
}

/// One supported reader protocol.
#[derive(Debug)]
pub struct Protocol {
    /// The name used in `readers[].protocol`.
    pub name: &'static str,
    /// Whether the codec yields text that `id-format` applies to.
    pub text: bool,
    pub new_codec: fn() -> Box<dyn Codec>,
}

/// Every protocol a serial reader can speak.
pub const PROTOCOLS: &[Protocol] = &[
    Protocol { name: "em4100", text: false, new_codec: || Box::new(Em4100Codec::default()) },
    Protocol { name: "line", text: true, new_codec: || Box::new(LineCodec::default()) },
];

pub fn protocol(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.name == name)
}
