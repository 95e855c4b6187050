//! The frame codecs: bytes from a reader in, ids out (pure, resynchronising).
//!
//! A codec is fed one byte at a time and never fails: anything that is not part of a valid frame
//! is thrown away and counted, and decoding goes on with the next byte. Feeding a stream in one
//! piece or split at any offset gives the same frames.
//!
//! Most readers send on their own. Some (PN532, TWN4) answer only what the host asks: their
//! codec also says what to send and when ([`Codec::to_send`]), with the time passed in, and
//! asks again when an answer is lost or spoiled.
//!
//! Adding a reader protocol means one new entry in [`PROTOCOLS`] and one new codec file.

use tokio::time::Instant;

use super::em4100::Em4100Codec;
use super::line::LineCodec;
use super::pn532::Pn532Codec;
use super::twn4::Twn4Codec;

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
    Format(&'static str),
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

/// One supported reader protocol.
#[derive(Debug)]
pub struct Protocol {
    /// The name used in `readers[].protocol`.
    pub name: &'static str,
    /// Whether the codec yields text that `id-format` applies to.
    pub text: bool,
    /// The baud rate when the reader's `baud` is not set.
    pub default_baud: u32,
    /// EGYM's `tagFormat` when the reader's `egym-tag-format` is not set.
    pub default_tag_format: Option<&'static str>,
    /// Whether the reader says when a card is taken away ([`Frame::NoTag`]): a card is then one
    /// presentation for as long as it stays, whatever the debounce.
    pub reports_removal: bool,
    /// Whether its ids are ISO 14443A (MIFARE) UIDs, which may be random ones.
    pub reads_uids: bool,
    pub new_codec: fn() -> Box<dyn Codec>,
}

/// Every protocol a serial reader can speak.
pub const PROTOCOLS: &[Protocol] = &[
    Protocol {
        name: "em4100",
        text: false,
        default_baud: 9600,
        default_tag_format: None,
        reports_removal: false,
        reads_uids: false,
        new_codec: || Box::new(Em4100Codec::default()),
    },
    Protocol {
        name: "line",
        text: true,
        default_baud: 9600,
        default_tag_format: None,
        reports_removal: false,
        reads_uids: false,
        new_codec: || Box::new(LineCodec::default()),
    },
    Protocol {
        name: "pn532",
        text: false,
        default_baud: 115_200,
        default_tag_format: Some("MIFARE"),
        reports_removal: true,
        reads_uids: true,
        new_codec: || Box::new(Pn532Codec::default()),
    },
    Protocol {
        name: "twn4",
        text: false,
        default_baud: 115_200,
        default_tag_format: None,
        reports_removal: true,
        // By card type: MIFARE ones are.
        reads_uids: false,
        new_codec: || Box::new(Twn4Codec::default()),
    },
];

pub fn protocol(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.name == name)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Noise that cannot complete or spoil a frame of either protocol on its own: binary junk
    /// (with a stray ETX and a lone STX-less digit run) ended by a line terminator.
    const NOISE_BEFORE: &[u8] = b"\x00\xff\x13\x037F\x80\x1b[0m\n";
    const NOISE_AFTER: &[u8] = b"\x00\x03\xfe\x11";

    fn decode(protocol: &str, chunks: &[&[u8]]) -> (Vec<Frame>, Discarded) {
        let mut codec = (protocol_or_panic(protocol).new_codec)();
        let mut frames = Vec::new();
        for chunk in chunks {
            codec.feed(chunk, &mut frames);
        }
        (frames, codec.discarded())
    }

    fn protocol_or_panic(name: &str) -> &'static Protocol {
        protocol(name).unwrap_or_else(|| panic!("no protocol {name}"))
    }

    /// Decodes `input` whole, split in two at every byte offset, one byte at a time, and
    /// wrapped in noise; every way must give `expected`. Returns what the whole input discarded.
    pub fn check(protocol: &str, input: &[u8], expected: &[Frame]) -> Discarded {
        let (frames, discarded) = decode(protocol, &[input]);
        assert_eq!(frames, expected, "{protocol}: {input:02X?} whole");
        for split in 0..=input.len() {
            let (head, tail) = input.split_at(split);
            let (frames, split_discarded) = decode(protocol, &[head, tail]);
            assert_eq!(
                frames, expected,
                "{protocol}: {input:02X?} split at {split}"
            );
            assert_eq!(
                split_discarded, discarded,
                "{protocol}: {input:02X?} split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            decode(protocol, &bytes).0,
            expected,
            "{protocol}: {input:02X?} byte by byte"
        );
        let wrapped = [NOISE_BEFORE, input, NOISE_AFTER].concat();
        let (frames, noisy) = decode(protocol, &[&wrapped]);
        assert_eq!(
            frames, expected,
            "{protocol}: {input:02X?} wrapped in noise"
        );
        assert!(
            noisy.noise_bytes > discarded.noise_bytes,
            "noise around {input:02X?} was not counted"
        );
        discarded
    }

    pub fn em(hex: &str) -> Frame {
        Frame::id(crate::tag::RawId::from_hex(hex).unwrap().bytes())
    }

    fn text(s: &str) -> Frame {
        Frame::Text(s.to_string())
    }

    #[test]
    fn em4100_frames() {
        let rdm = b"\x020C000621A58E\x03";
        let id12 = b"\x020C000621A58E\r\n\x03";
        let cases: &[(&[u8], Vec<Frame>, u64)] = &[
            (rdm, vec![em("0C000621A5")], 0),
            (id12, vec![em("0C000621A5")], 0),
            (b"\x020c000621a58e\x03", vec![em("0C000621A5")], 0),
            (
                b"\x020C000621A58E\x03\x020102B0A5FDEB\x03",
                vec![em("0C000621A5"), em("0102B0A5FD")],
                0,
            ),
            // Cut short by a new STX: the partial frame is rejected, the next one read.
            (b"\x020C00\x020102B0A5FDEB\x03", vec![em("0102B0A5FD")], 1),
            // CR only, or LF only, before ETX: framings some ID-12LA clones send.
            (b"\x020C000621A58E\r\x03", vec![em("0C000621A5")], 0),
            (b"\x020C000621A58E\n\x03", vec![em("0C000621A5")], 0),
            // Bad checksum (in every framing), bad digit, too short, a doubled line end,
            // missing ETX: all rejected.
            (b"\x020C000621A58F\x03", vec![], 1),
            (b"\x020C000621A58F\r\x03", vec![], 1),
            (b"\x020C000621A58F\r\n\x03", vec![], 1),
            (b"\x020C000G21A58E\x03", vec![], 1),
            (b"\x020C0006218E\x03", vec![], 1),
            (b"\x020C000621A58E\r\n\r\n\x03", vec![], 1),
            (b"\x020C000621A58E", vec![], 0),
            // A good frame after a rejected one.
            (
                b"\x020C000621A58F\x03\x020C000621A58E\x03",
                vec![em("0C000621A5")],
                1,
            ),
        ];
        for (input, expected, rejected) in cases {
            let discarded = check("em4100", input, expected);
            assert_eq!(discarded.rejected_frames, *rejected, "{input:02X?}");
        }
    }

    #[test]
    fn line_frames() {
        let cases: &[(&[u8], Vec<Frame>, u64)] = &[
            (b"0000401829\r", vec![text("0000401829")], 0),
            (b"0000401829\n", vec![text("0000401829")], 0),
            (b"0000401829\r\n", vec![text("0000401829")], 0),
            (b"\n0F0184F07A\r", vec![text("0F0184F07A")], 0),
            (b"  176,42493 \r\n\r\n\n", vec![text("176,42493")], 0),
            (
                b"0000401829\r\n0045131261\r\n",
                vec![text("0000401829"), text("0045131261")],
                0,
            ),
            // A control byte spoils its line only.
            (
                b"00004\x0001829\r\n0045131261\n",
                vec![text("0045131261")],
                1,
            ),
            // A line longer than any id is noise.
            (&[b'1'; 80], vec![], 0),
            (b"no terminator yet", vec![], 0),
        ];
        for (input, expected, rejected) in cases {
            let discarded = check("line", input, expected);
            assert_eq!(discarded.rejected_frames, *rejected, "{input:02X?}");
        }
        let mut overlong = vec![b'1'; 80];
        overlong.extend_from_slice(b"\r\n12345678\r\n");
        let (frames, discarded) = decode("line", &[&overlong]);
        assert_eq!(frames, vec![text("12345678")]);
        assert_eq!(
            discarded,
            Discarded {
                noise_bytes: 81,
                rejected_frames: 1
            }
        );
    }
}
