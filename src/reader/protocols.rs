//! The registry of serial reader protocols: one entry per protocol, each with its codec.
//!
//! Adding a reader protocol means one new entry in [`PROTOCOLS`] and one new codec file. The
//! codecs know nothing of this list: it uses them, they use only `frame.rs`.

use super::em4100::Em4100Codec;
use super::frame::Codec;
use super::line::LineCodec;
use super::pn532::Pn532Codec;
use super::twn4::Twn4Codec;
use crate::tag::TagFormat;

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
    pub default_tag_format: Option<TagFormat>,
    /// Whether the reader says when a card is taken away ([`Frame::NoTag`](super::frame::Frame::NoTag)): a card is then one
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
        default_tag_format: Some(TagFormat::Mifare),
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
mod tests {
    use super::*;
    use crate::reader::frame::{Discarded, Frame};

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
