//! PC/SC readers (ACS ACR122U and ACR1252U, HID OMNIKEY…) through pcscd.
//!
//! The device side (`device`, built with the `pcsc` feature, which links libpcsclite) waits in
//! `SCardGetStatusChange` for a card, with no polling. When one is presented it asks for the UID
//! with the PC/SC GET DATA command `FF CA 00 00 00` (`Le = 00`: the whole UID, 4, 7 or 10 bytes,
//! in anticollision order) and hands the answer on as a record:
//!
//! ```text
//! 01 LEN ANSWER…   a card was presented; ANSWER is the reply to GET DATA (UID, then SW1 SW2)
//! 02               the card was taken away
//! 03 LEN TEXT…     a card was presented but could not be talked to (why, in words)
//! ```
//! [`PcscCodec`] turns those records into frames, here and in a capture's replay alike. A card
//! left on the reader is read once: it is one presentation until it is taken away.

#[cfg(feature = "pcsc")]
mod device;

#[cfg(feature = "pcsc")]
pub use device::PcscDevice;

use super::frame::{Codec, Discarded, Frame};

/// GET DATA, P1 = 00 (UID), Le = 00 (all of it).
pub const GET_UID: [u8; 5] = [0xFF, 0xCA, 0x00, 0x00, 0x00];

pub const PRESENTED: u8 = 0x01;
pub const REMOVED: u8 = 0x02;
pub const UNREADABLE: u8 = 0x03;

/// The UID in a reply to [`GET_UID`], or what staff are told when there is none.
pub fn uid_from_answer(answer: &[u8]) -> Result<Vec<u8>, String> {
    let Some((uid, status)) = answer.split_last_chunk::<2>() else {
        return Err(format!(
            "the reader's answer to GET DATA is {} byte(s), too short for a status word",
            answer.len()
        ));
    };
    match *status {
        [0x90, 0x00] if (1..=16).contains(&uid.len()) => Ok(uid.to_vec()),
        [0x90, 0x00] => Err(format!(
            "the reader answered GET DATA with {} UID bytes: no card id is that long or short",
            uid.len()
        )),
        [0x63, 0x00] => Err(
            "the reader could not read the card's id (status 63 00, operation \
            failed): the card was probably taken away too soon, or is no ISO 14443 card; \
            present it again"
                .into(),
        ),
        [0x6A, 0x81] => Err(
            "the reader does not support reading the card id with GET DATA \
            (status 6A 81, function not supported): use a reader that does (ACR122U, ACR1252U, \
            OMNIKEY 5022/5422)"
                .into(),
        ),
        [0x62, 0x82] => Err("the reader ended its answer early (status 62 82)".into()),
        [0x6C, _] => Err(format!(
            "the reader refused the answer length (status 6C {:02X})",
            status[1]
        )),
        [sw1, sw2] => Err(format!(
            "the reader answered GET DATA with status {sw1:02X} {sw2:02X}, not 90 00"
        )),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Waiting for a record's type.
    #[default]
    Idle,
    /// Waiting for the length of a record of this type.
    Length(u8),
    /// Reading this many more bytes of a record of this type.
    Body(u8, usize),
}

/// Records from the device side in, frames out.
#[derive(Debug, Default)]
pub struct PcscCodec {
    state: State,
    body: Vec<u8>,
    discarded: Discarded,
}

impl PcscCodec {
    fn finish(&mut self, kind: u8) -> Option<Frame> {
        self.state = State::Idle;
        let body = std::mem::take(&mut self.body);
        match kind {
            // A card that cannot be read is said in words, not counted as a malformed frame:
            // the reader is working.
            PRESENTED => match uid_from_answer(&body) {
                Ok(uid) => Some(Frame::id(&uid)),
                Err(warning) => Some(Frame::Warning(warning)),
            },
            _ => {
                let text = String::from_utf8_lossy(&body);
                Some(Frame::Warning(format!("cannot read the card: {text}")))
            }
        }
    }
}

impl Codec for PcscCodec {
    fn push(&mut self, byte: u8) -> Option<Frame> {
        match self.state {
            State::Idle => match byte {
                REMOVED => return Some(Frame::NoTag),
                PRESENTED | UNREADABLE => self.state = State::Length(byte),
                _ => self.discarded.noise_bytes += 1,
            },
            State::Length(kind) if byte == 0 => return self.finish(kind),
            State::Length(kind) => self.state = State::Body(kind, byte as usize),
            State::Body(kind, left) => {
                self.body.push(byte);
                if left == 1 {
                    return self.finish(kind);
                }
                self.state = State::Body(kind, left - 1);
            }
        }
        None
    }

    fn discarded(&self) -> Discarded {
        self.discarded
    }
}

/// A record as the device side writes it.
pub fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let body = &body[..body.len().min(255)];
    let mut record = vec![kind, body.len() as u8];
    record.extend_from_slice(body);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_get_data() {
        assert_eq!(
            uid_from_answer(&[0x26, 0xDE, 0xFA, 0xE7, 0x90, 0x00]),
            Ok(vec![0x26, 0xDE, 0xFA, 0xE7])
        );
        for (answer, says) in [
            (&[0x63, 0x00][..], "63 00"),
            (&[0x6A, 0x81], "6A 81"),
            (&[0x62, 0x82], "62 82"),
            (&[0x6C, 0x04], "6C 04"),
            (&[0x69, 0x85], "69 85"),
            (&[0x90, 0x00], "0 UID bytes"),
            (&[0x90], "too short"),
        ] {
            let warning = uid_from_answer(answer).unwrap_err();
            assert!(warning.contains(says), "{answer:02X?}: {warning}");
        }
    }

    #[test]
    fn records_to_frames_however_they_are_split() {
        let mut stream = record(
            PRESENTED,
            &[0x04, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80, 0x90, 0x00],
        );
        stream.push(REMOVED);
        stream.extend(record(PRESENTED, &[0x63, 0x00]));
        stream.extend(record(UNREADABLE, b"card is mute"));
        for split in 0..=stream.len() {
            let mut codec = PcscCodec::default();
            let mut frames = Vec::new();
            codec.feed(&stream[..split], &mut frames);
            codec.feed(&stream[split..], &mut frames);
            assert_eq!(frames.len(), 4, "split at {split}: {frames:?}");
            assert_eq!(
                frames[..2],
                [
                    Frame::id(&[0x04, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80]),
                    Frame::NoTag
                ]
            );
            assert!(matches!(&frames[2], Frame::Warning(w) if w.contains("63 00")));
            assert!(matches!(&frames[3], Frame::Warning(w) if w.contains("card is mute")));
            assert_eq!(codec.discarded(), Discarded::default());
        }
    }
}
