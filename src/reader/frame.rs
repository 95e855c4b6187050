//! What a frame codec is: bytes from a reader in, frames out (pure, resynchronising). The codecs
//! (one file each) and the registry of protocols (`protocols.rs`) use this file; it uses none of
//! them.
//!
//! A codec is fed one byte at a time and never fails: anything that is not part of a valid frame
//! is thrown away and counted, and decoding goes on with the next byte. Feeding a stream in one
//! piece or split at any offset gives the same frames.
//!
//! Most readers send on their own. Some (PN532, TWN4) answer only what the host asks: their
//! codec also says what to send and when ([`Codec::to_send`]), with the time passed in, and
//! asks again when an answer is lost or spoiled.

use crate::clock::timer::Instant;
use crate::tag::TagFormat;

/// What one valid frame carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// An id the reader sent as bytes: an EM4100 frame's 5 bytes (version byte, then the 4
    /// card bytes), a MIFARE UID in anticollision order, a TWN4 id.
    Id { bytes: Vec<u8>, kind: TagKind },
    /// One line of text, trimmed, not empty; `id-format` says how to read it.
    Text(String),
    /// The reader says no card is there (any more): the presentation, if one was going on, has
    /// ended, and the same card presented again is a new tap.
    NoTag,
    /// The reader saw a card but could not read its id; staff are told why.
    Warning(String),
}

impl Frame {
    /// An id frame whose reader says nothing of the tag's kind.
    pub fn id(bytes: &[u8]) -> Frame {
        Frame::Id {
            bytes: bytes.to_vec(),
            kind: TagKind::Unsaid,
        }
    }
}

/// What a reader says of a tag's kind, as EGYM's `tagFormat` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// Nothing: the reader's `egym-tag-format` (or its protocol's default) applies.
    Unsaid,
    /// A kind EGYM has no `tagFormat` for (EM4x02): none is sent, whatever the reader's setting.
    NoFormat,
    /// One of EGYM's `tagFormat` values: `MIFARE`, `HITAG1` or `LEGIC`.
    Format(TagFormat),
}

/// Counts of what a codec threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    /// Bytes outside any frame.
    pub noise_bytes: u64,
    /// Frames that started but were cut short, malformed or failed their checksum, and (for
    /// readers the host asks) answers refused or never given.
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

    /// The device was (re)opened: a reader the host asks starts its conversation afresh.
    fn opened(&mut self) {}

    /// What to send to the reader at `now`, if anything. Called when the device is opened,
    /// after every read, and at [`Codec::next_send_at`].
    fn to_send(&mut self, _now: Instant) -> Option<Vec<u8>> {
        None
    }

    /// When [`Codec::to_send`] must be asked next if nothing is read before; `None` for
    /// readers that send on their own.
    fn next_send_at(&self) -> Option<Instant> {
        None
    }

    /// Requests in a row the reader has not answered (0 for readers that send on their own).
    fn unanswered(&self) -> u32 {
        0
    }
}

/// Searches in a row that find no card before a presentation is over: one search that misses
/// a card still on the reader does not end it.
const ABSENT_AFTER: u32 = 2;

/// Whether a card is on a reader the host searches (PN532, TWN4), from what its searches find.
#[derive(Debug, Default)]
pub struct Presence {
    card_present: bool,
    empty_searches: u32,
}

impl Presence {
    /// A search found a card.
    pub fn found(&mut self) {
        self.empty_searches = 0;
        self.card_present = true;
    }

    /// A search found nothing: [`Frame::NoTag`] when that ends a presentation.
    pub fn found_nothing(&mut self) -> Option<Frame> {
        self.empty_searches += 1;
        if self.card_present && self.empty_searches >= ABSENT_AFTER {
            self.card_present = false;
            return Some(Frame::NoTag);
        }
        None
    }
}
