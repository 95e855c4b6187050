//! What a reader task tells the recorder (or `listen`): taps, and what staff are told. The
//! reader task, the presenter and captures make these; the rest of the crate knows them as
//! `crate::reader::Tap` and `crate::reader::ReaderMessage`.

use std::sync::Arc;

use crate::clock::Now;
use crate::tag::{RawId, TagFormat};
use crate::visit::Direction;

/// A new presentation of a tag at a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    pub reader: Arc<str>,
    pub raw: RawId,
    /// The normalised EGYM rfid.
    pub rfid: String,
    pub tag_format: Option<TagFormat>,
    pub direction: Direction,
    /// When the frame was read.
    pub at: Now,
    /// Part of a presentation already reported (only `listen` sees these).
    pub repeat: bool,
    /// A MIFARE UID the reader cut short (see [`crate::tag::is_cut_short_uid`]).
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
    /// The device was opened (`true`) or closed (`false`): `lost` says why it was lost, when
    /// it was (not at a stop, nor at the end of a stream's input).
    Connected {
        reader: Arc<str>,
        connected: bool,
        device: Arc<str>,
        lost: Option<String>,
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
