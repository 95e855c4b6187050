//! Elatec TWN4 readers in "Simple Protocol" (ASCII) on their virtual COM port: the host asks,
//! the reader answers.
//!
//! ```text
//! host:    0500FF CR                         SearchTag, up to 0xFF id bytes
//! reader:  ERR RES TYPE BITS LEN ID… CR      all as hex digits; ERR 00 = no error,
//!                                            RES 01 = a tag found, 00 = none ("0000")
//! ```
//! The tag type says which `tagFormat` EGYM gets: ISO 14443A / MIFARE (`80`) → `MIFARE`, LEGIC
//! (`83`) → `LEGIC`, HITAG 1 / HITAG S (`41`) → `HITAG1`, EM4x02 (`40`) → none, as EGYM has no
//! value for EM cards. Any other type leaves it to the reader's `egym-tag-format`.
//!
//! An answer that is not hex, has a wrong length or an error byte is counted and the search
//! asked again; so is a search not answered within [`ANSWER_WITHIN`]. When to search is the
//! poller's (`poller.rs`), as for every reader the host searches. A card left on the reader is
//! found at every search and stays one presentation; two searches in a row that find none end
//! it.

use std::time::Duration;

use crate::clock::timer::Instant;

use super::frame::{Codec, Discarded, Frame, Presence, TagKind};
use super::line::{Ended, LineBuffer};
use super::poller::{Due, Poller, Timing};
use crate::tag::{TagFormat, decode_hex};

/// How often the host searches for a card.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// A search not answered by then is asked again.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(500);
/// Longer than any answer (10 id bytes and the header are 30 hex digits).
const MAX_LINE: usize = 128;

const TIMING: Timing = Timing {
    search_every: POLL_EVERY,
    answer_within: ANSWER_WITHIN,
    // Every request is a search: there is no conversation to start again.
    restart_after_lost: None,
};

/// The SearchTag command, as sent.
pub const SEARCH_TAG: &[u8] = b"0500FF\r";

/// The `tagFormat` for a TWN4 tag type.
pub fn tag_kind(tag_type: u8) -> TagKind {
    match tag_type {
        0x80 => TagKind::Format(TagFormat::Mifare),
        0x83 => TagKind::Format(TagFormat::Legic),
        0x41 => TagKind::Format(TagFormat::Hitag1),
        0x40 => TagKind::NoFormat,
        _ => TagKind::Unsaid,
    }
}

/// What one answer line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    NoTag,
    Tag { tag_type: u8, bits: u8, id: Vec<u8> },
}

/// Reads one answer line (without its line end).
pub fn parse_answer(line: &[u8]) -> Option<Answer> {
    let text = std::str::from_utf8(line).ok()?;
    match decode_hex(text)?.as_slice() {
        [0x00, 0x00] => Some(Answer::NoTag),
        [0x00, 0x01, tag_type, bits, len, id @ ..]
            if *len > 0
                && id.len() == *len as usize
                && (1..=u16::from(*len) * 8).contains(&u16::from(*bits)) =>
        {
            Some(Answer::Tag {
                tag_type: *tag_type,
                bits: *bits,
                id: id.to_vec(),
            })
        }
        _ => None,
    }
}

#[derive(Debug)]
pub struct Twn4Codec {
    /// An answer line: hex digits only.
    line: LineBuffer,
    /// When to search, and the searches in a row left unanswered.
    poller: Poller,
    presence: Presence,
    discarded: Discarded,
}

impl Default for Twn4Codec {
    fn default() -> Twn4Codec {
        Twn4Codec {
            line: LineBuffer::default(),
            poller: Poller::new(TIMING),
            presence: Presence::default(),
            discarded: Discarded::default(),
        }
    }
}

impl Twn4Codec {
    /// A garbled or refused answer: counted, and the search asked again.
    fn reject(&mut self, bytes: usize) {
        self.discarded.rejected_frames += 1;
        self.discarded.noise_bytes += bytes as u64 + 1;
        self.poller.refused();
    }

    fn answer(&mut self, answer: Answer) -> Option<Frame> {
        self.poller.answered();
        match answer {
            Answer::NoTag => self.presence.found_nothing(),
            Answer::Tag { tag_type, id, .. } => {
                self.presence.found();
                Some(Frame::Id {
                    bytes: id,
                    kind: tag_kind(tag_type),
                })
            }
        }
    }
}

impl Codec for Twn4Codec {
    fn push(&mut self, byte: u8) -> Option<Frame> {
        let hex = |b: u8| b.is_ascii_hexdigit();
        match self.line.push(byte, hex, MAX_LINE, &mut self.discarded)? {
            Ended::Spoiled { kept } => {
                self.reject(kept);
                None
            }
            Ended::Line(line) if line.is_empty() => None,
            Ended::Line(line) => match parse_answer(&line) {
                Some(answer) => self.answer(answer),
                None => {
                    self.reject(line.len());
                    None
                }
            },
        }
    }

    fn discarded(&self) -> Discarded {
        self.discarded
    }

    fn opened(&mut self) {
        // The conversation starts afresh; what was thrown away stays counted.
        *self = Twn4Codec {
            discarded: self.discarded,
            ..Twn4Codec::default()
        };
    }

    fn to_send(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.poller.due(now, true) {
            Due::Later => return None,
            Due::Now => {}
            Due::Lost { .. } => {
                // Never answered: counted, and whatever half-line came is dropped.
                self.discarded.rejected_frames += 1;
                self.discarded.noise_bytes += self.line.clear() as u64;
            }
        }
        self.poller.sent(now, true);
        Some(SEARCH_TAG.to_vec())
    }

    fn next_send_at(&self) -> Option<Instant> {
        self.poller.next_at()
    }

    fn unanswered(&self) -> u32 {
        self.poller.unanswered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(codec: &mut Twn4Codec, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        codec.feed(bytes, &mut frames);
        frames
    }

    #[test]
    fn answers_and_their_tag_formats() {
        let uid = vec![0x26, 0xDE, 0xFA, 0xE7];
        let cases: &[(&[u8], Option<Answer>)] = &[
            (b"0000", Some(Answer::NoTag)),
            (
                b"000180200426DEFAE7",
                Some(Answer::Tag {
                    tag_type: 0x80,
                    bits: 32,
                    id: uid.clone(),
                }),
            ),
            (
                b"000180200426defae7",
                Some(Answer::Tag {
                    tag_type: 0x80,
                    bits: 32,
                    id: uid.clone(),
                }),
            ),
            // Error byte set, a length that does not match, more bits than bytes, odd digits.
            (b"0100", None),
            (b"000180200526DEFAE7", None),
            (b"000180280426DEFAE7", None),
            (b"000180200426DEFAE", None),
            (b"00", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                &parse_answer(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(tag_kind(0x80), TagKind::Format(TagFormat::Mifare));
        assert_eq!(tag_kind(0x83), TagKind::Format(TagFormat::Legic));
        assert_eq!(tag_kind(0x41), TagKind::Format(TagFormat::Hitag1));
        assert_eq!(tag_kind(0x40), TagKind::NoFormat);
        assert_eq!(tag_kind(0x49), TagKind::Unsaid);
    }

    #[test]
    fn searches_holds_and_asks_again() {
        let t = Instant::now();
        let mut codec = Twn4Codec::default();
        codec.opened();
        assert_eq!(codec.to_send(t).as_deref(), Some(SEARCH_TAG));
        assert_eq!(codec.to_send(t), None);
        let legic = Frame::Id {
            bytes: vec![0x0B, 0xAD, 0xC0, 0xDE],
            kind: TagKind::Format(TagFormat::Legic),
        };
        assert_eq!(
            feed(&mut codec, b"00018320040BADC0DE\r\n"),
            std::slice::from_ref(&legic)
        );
        assert_eq!(codec.to_send(t + Duration::from_millis(50)), None);
        let mut at = t + POLL_EVERY;
        for (answer, expected) in [
            (&b"00018320040BADC0DE\r"[..], vec![legic]),
            (b"0000\r", vec![]),
            (b"0000\r", vec![Frame::NoTag]),
            (b"0000\r", vec![]),
        ] {
            assert_eq!(codec.to_send(at).as_deref(), Some(SEARCH_TAG));
            assert_eq!(feed(&mut codec, answer), expected);
            at += POLL_EVERY;
        }
        // A garbled answer is counted, and the search asked again at once.
        assert_eq!(codec.to_send(at).as_deref(), Some(SEARCH_TAG));
        assert_eq!(feed(&mut codec, b"00\x0001\r"), []);
        assert_eq!(codec.discarded().rejected_frames, 1);
        assert_eq!(codec.to_send(at).as_deref(), Some(SEARCH_TAG));
        // No answer at all: asked again when it is overdue, and counted.
        assert_eq!(
            codec.to_send(at + ANSWER_WITHIN).as_deref(),
            Some(SEARCH_TAG)
        );
        assert_eq!(codec.discarded().rejected_frames, 2);
        assert_eq!(codec.unanswered(), 2);
        // A reader that refuses every search (an error byte; the wrong firmware, say) is asked
        // again at the search rate, not flat out.
        let later = at + ANSWER_WITHIN;
        assert_eq!(feed(&mut codec, b"01\r"), []);
        assert_eq!(codec.to_send(later), None);
        assert_eq!(
            codec.to_send(later + POLL_EVERY).as_deref(),
            Some(SEARCH_TAG)
        );
        assert_eq!(codec.unanswered(), 3);
        assert_eq!(feed(&mut codec, b"0000\r"), []);
        assert_eq!(codec.unanswered(), 0);
    }
}
