//! NXP PN532 boards on a UART (HSU, 115200 8N1): the host asks, the chip answers.
//!
//! ```text
//! frame:  00 00 FF  LEN LCS  TFI DATA…  DCS 00      LEN = TFI + DATA, LCS = −LEN, DCS = −(TFI + ΣDATA)
//! ACK:    00 00 FF 00 FF 00                          NACK: 00 00 FF FF 00 00
//! ```
//! TFI is `D4` from the host and `D5` from the chip. The conversation: the wake-up (`55 55` and
//! zeros) with `SAMConfiguration` (normal mode), then `RFConfiguration` so that a search gives up
//! after two tries instead of waiting for a card, then `InListPassiveTarget` (one target, 106 kbps
//! type A) a few times a second. Its answer is `4B NbTg Tg SENS_RES(2) SEL_RES NFCIDLen NFCID…`;
//! `NbTg = 0` is "no target".
//!
//! Every command is acknowledged before it is answered. An answer that fails LCS or DCS, a NACK
//! or the chip's error frame is counted and the command sent again at once; so is a command not
//! answered within [`ANSWER_WITHIN`], and after `WAKE_AFTER_MISSES` of those in a row the chip
//! is woken afresh (it may have been power-cycled). When to send is the poller's
//! (`poller.rs`), as for every reader the host searches. A card left on the reader is found at
//! every search: the reader's debounce keeps that one presentation, and the presentation ends
//! when two searches in a row find none.

use std::time::Duration;

use crate::clock::timer::Instant;

use super::frame::{Codec, Discarded, Frame, Presence};
use super::poller::{Due, Poller, Timing};

/// How often the host searches for a card.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// A command not answered by then is sent again.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(500);
/// Unanswered commands in a row after which the chip is woken up again.
const WAKE_AFTER_MISSES: u32 = 3;

const TIMING: Timing = Timing {
    search_every: POLL_EVERY,
    answer_within: ANSWER_WITHIN,
    restart_after_lost: Some(WAKE_AFTER_MISSES),
};

pub const HOST_TO_CHIP: u8 = 0xD4;
pub const CHIP_TO_HOST: u8 = 0xD5;
pub const SAM_CONFIGURATION: u8 = 0x14;
pub const RF_CONFIGURATION: u8 = 0x32;
pub const IN_LIST_PASSIVE_TARGET: u8 = 0x4A;

/// The long preamble that wakes a PN532 from power-down on HSU.
const WAKE_UP: [u8; 16] = [0x55, 0x55, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A normal information frame with `tfi` and `data`.
pub fn information_frame(tfi: u8, data: &[u8]) -> Vec<u8> {
    let len = (data.len() + 1) as u8;
    let sum = data.iter().fold(tfi, |acc, b| acc.wrapping_add(*b));
    let mut frame = vec![0x00, 0x00, 0xFF, len, len.wrapping_neg(), tfi];
    frame.extend_from_slice(data);
    frame.extend_from_slice(&[sum.wrapping_neg(), 0x00]);
    frame
}

/// What the chip sent, as the parser read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChipFrame {
    Ack,
    Nack,
    /// An information frame from the chip: its data after TFI (the answer code first).
    Answer(Vec<u8>),
}

/// What a buffer starts with.
enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// A zero before another zero (preamble or postamble): dropped, not noise.
    Zero,
    /// A byte that belongs to no frame.
    Noise,
    /// A start code whose frame is malformed: its two bytes are dropped and the rest scanned
    /// again, so a good frame inside a bad one is still found.
    Rejected,
    Frame(usize, ChipFrame),
}

fn scan(buf: &[u8]) -> Scan {
    match buf {
        [] | [0x00] => Scan::Incomplete,
        [0x00, 0x00, ..] => Scan::Zero,
        [0x00, 0xFF, rest @ ..] => match rest {
            [] | [_] => Scan::Incomplete,
            [0x00, 0xFF, ..] => Scan::Frame(4, ChipFrame::Ack),
            [0xFF, 0x00, ..] => Scan::Frame(4, ChipFrame::Nack),
            [len, lcs, ..] if *len == 0 || len.wrapping_add(*lcs) != 0 => Scan::Rejected,
            [len, _, body @ ..] => {
                let len = *len as usize;
                if body.len() < len + 1 {
                    return Scan::Incomplete;
                }
                let (tfi_data, dcs) = (&body[..len], body[len]);
                let sum = tfi_data.iter().fold(dcs, |acc, b| acc.wrapping_add(*b));
                if tfi_data[0] != CHIP_TO_HOST || sum != 0 {
                    return Scan::Rejected;
                }
                Scan::Frame(4 + len + 1, ChipFrame::Answer(tfi_data[1..].to_vec()))
            }
        },
        _ => Scan::Noise,
    }
}

/// Splits the chip's byte stream into frames, resynchronising after anything malformed.
#[derive(Debug, Default)]
pub struct ChipParser {
    buf: Vec<u8>,
    discarded: Discarded,
}

impl ChipParser {
    /// Feeds one byte; appends the frames it completes to `frames` (more than one only when a
    /// malformed frame had swallowed good ones).
    pub fn push(&mut self, byte: u8, frames: &mut Vec<ChipFrame>) {
        self.buf.push(byte);
        loop {
            match scan(&self.buf) {
                Scan::Incomplete => return,
                Scan::Zero => {
                    self.buf.remove(0);
                }
                Scan::Noise => {
                    self.discarded.noise_bytes += 1;
                    self.buf.remove(0);
                }
                Scan::Rejected => {
                    self.discarded.rejected_frames += 1;
                    self.discarded.noise_bytes += 2;
                    self.buf.drain(..2);
                }
                Scan::Frame(n, frame) => {
                    self.buf.drain(..n);
                    frames.push(frame);
                }
            }
        }
    }

    /// Throws away a partial frame (its answer is given up on).
    pub fn clear(&mut self) {
        self.discarded.noise_bytes += self.buf.iter().filter(|b| **b != 0).count() as u64;
        self.buf.clear();
    }

    pub fn discarded(&self) -> Discarded {
        self.discarded
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Step {
    /// Wake the chip and set it to normal mode.
    #[default]
    Wake,
    /// Make a search give up when no card is there.
    Retries,
    /// Search for a card.
    Search,
}

#[derive(Debug)]
pub struct Pn532Codec {
    parser: ChipParser,
    chip_frames: Vec<ChipFrame>,
    step: Step,
    /// When to send the step's command, and the commands in a row left unanswered.
    poller: Poller,
    presence: Presence,
    /// NACKs, error frames, answers to nothing asked, and commands never answered.
    refused: u64,
}

impl Default for Pn532Codec {
    fn default() -> Pn532Codec {
        Pn532Codec {
            parser: ChipParser::default(),
            chip_frames: Vec::new(),
            step: Step::default(),
            poller: Poller::new(TIMING),
            presence: Presence::default(),
            refused: 0,
        }
    }
}

impl Pn532Codec {
    fn command(&self) -> Vec<u8> {
        match self.step {
            Step::Wake => {
                let mut bytes = WAKE_UP.to_vec();
                bytes.extend(information_frame(HOST_TO_CHIP, &[SAM_CONFIGURATION, 0x01]));
                bytes
            }
            // CfgItem 5: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation = 2.
            Step::Retries => {
                information_frame(HOST_TO_CHIP, &[RF_CONFIGURATION, 0x05, 0xFF, 0x01, 0x02])
            }
            Step::Search => information_frame(HOST_TO_CHIP, &[IN_LIST_PASSIVE_TARGET, 0x01, 0x00]),
        }
    }

    fn refuse(&mut self) {
        self.refused += 1;
        self.poller.refused();
    }

    fn chip_frame(&mut self, frame: ChipFrame) -> Option<Frame> {
        let data = match frame {
            ChipFrame::Ack => return None,
            ChipFrame::Nack => {
                self.refuse();
                return None;
            }
            ChipFrame::Answer(data) => data,
        };
        let expected = match self.step {
            Step::Wake => SAM_CONFIGURATION,
            Step::Retries => RF_CONFIGURATION,
            Step::Search => IN_LIST_PASSIVE_TARGET,
        } + 1;
        if data.first() != Some(&expected) || !self.poller.waiting() {
            // The chip's error frame (7F), or an answer to something not asked (a stale one).
            self.refuse();
            return None;
        }
        self.poller.answered();
        match self.step {
            Step::Wake => {
                self.step = Step::Retries;
                None
            }
            Step::Retries => {
                self.step = Step::Search;
                None
            }
            Step::Search => self.found(&data[1..]),
        }
    }

    /// The answer to a search: `NbTg [Tg SENS_RES(2) SEL_RES NFCIDLen NFCID…]`.
    fn found(&mut self, data: &[u8]) -> Option<Frame> {
        match data {
            [0, ..] => self.presence.found_nothing(),
            [_, _tg, _sens_hi, _sens_lo, _sel, len, uid @ ..]
                if matches!(*len, 4 | 7 | 10) && uid.len() >= *len as usize =>
            {
                self.presence.found();
                Some(Frame::id(&uid[..*len as usize]))
            }
            _ => {
                self.refused += 1;
                None
            }
        }
    }
}

impl Codec for Pn532Codec {
    fn push(&mut self, byte: u8) -> Option<Frame> {
        let mut frames = Vec::new();
        self.feed(&[byte], &mut frames);
        // One byte completes at most one search answer, so at most one frame.
        frames.pop()
    }

    fn feed(&mut self, bytes: &[u8], frames: &mut Vec<Frame>) {
        let mut chip_frames = std::mem::take(&mut self.chip_frames);
        for &byte in bytes {
            let rejected = self.parser.discarded().rejected_frames;
            self.parser.push(byte, &mut chip_frames);
            if self.parser.discarded().rejected_frames > rejected && self.poller.waiting() {
                // Most likely the answer, spoiled on the line (counted by the parser): asked
                // again without waiting for it to be overdue.
                self.poller.refused();
            }
            for frame in chip_frames.drain(..) {
                frames.extend(self.chip_frame(frame));
            }
        }
        self.chip_frames = chip_frames;
    }

    fn discarded(&self) -> Discarded {
        let parsed = self.parser.discarded();
        Discarded {
            noise_bytes: parsed.noise_bytes,
            rejected_frames: parsed.rejected_frames + self.refused,
        }
    }

    fn opened(&mut self) {
        // The conversation starts afresh; what was thrown away stays counted.
        let mut parser = std::mem::take(&mut self.parser);
        parser.clear();
        *self = Pn532Codec {
            parser,
            refused: self.refused,
            ..Pn532Codec::default()
        };
    }

    fn to_send(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.poller.due(now, self.step == Step::Search) {
            Due::Later => return None,
            Due::Now => {}
            Due::Lost { restart } => {
                // Never answered: counted, and whatever half-frame came is dropped. The chip
                // may have been power-cycled: after a few, it is woken again.
                self.refused += 1;
                self.parser.clear();
                if restart {
                    self.step = Step::Wake;
                }
            }
        }
        self.poller.sent(now, self.step == Step::Search);
        Some(self.command())
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

    const ACK: [u8; 6] = [0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00];
    const NACK: [u8; 6] = [0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00];

    fn answer(data: &[u8]) -> Vec<u8> {
        [&ACK[..], &information_frame(CHIP_TO_HOST, data)].concat()
    }

    fn card(uid: &[u8]) -> Vec<u8> {
        let mut data = vec![
            IN_LIST_PASSIVE_TARGET + 1,
            1,
            1,
            0x00,
            0x04,
            0x08,
            uid.len() as u8,
        ];
        data.extend_from_slice(uid);
        answer(&data)
    }

    fn no_card() -> Vec<u8> {
        answer(&[IN_LIST_PASSIVE_TARGET + 1, 0])
    }

    fn command_code(request: &[u8]) -> u8 {
        let start = request.windows(2).position(|w| w == [0x00, 0xFF]).unwrap();
        request[start + 5]
    }

    /// A codec past its wake-up and configuration, at `t`.
    fn searching(t: Instant) -> Pn532Codec {
        let mut codec = Pn532Codec::default();
        codec.opened();
        let mut frames = Vec::new();
        assert_eq!(command_code(&codec.to_send(t).unwrap()), SAM_CONFIGURATION);
        codec.feed(&answer(&[SAM_CONFIGURATION + 1]), &mut frames);
        assert_eq!(command_code(&codec.to_send(t).unwrap()), RF_CONFIGURATION);
        codec.feed(&answer(&[RF_CONFIGURATION + 1]), &mut frames);
        assert!(frames.is_empty());
        codec
    }

    fn feed(codec: &mut Pn532Codec, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        codec.feed(bytes, &mut frames);
        frames
    }

    #[test]
    fn searches_a_few_times_a_second_and_reads_every_uid_length() {
        let t = Instant::now();
        let mut codec = searching(t);
        let mut at = t;
        for uid in [
            &[0x26, 0xDE, 0xFA, 0xE7][..],
            &[4, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        ] {
            let request = codec.to_send(at).unwrap();
            assert_eq!(command_code(&request), IN_LIST_PASSIVE_TARGET);
            // Nothing more until the answer, or the next search is due.
            assert_eq!(codec.to_send(at + Duration::from_millis(100)), None);
            assert_eq!(feed(&mut codec, &card(uid)), [Frame::id(uid)]);
            assert_eq!(codec.to_send(at + Duration::from_millis(100)), None);
            assert_eq!(codec.next_send_at(), Some(at + POLL_EVERY));
            at += POLL_EVERY;
        }
        assert_eq!(codec.discarded().rejected_frames, 0);
    }

    #[test]
    fn a_presentation_ends_after_two_empty_searches() {
        let t = Instant::now();
        let mut codec = searching(t);
        let uid = [0x26, 0xDE, 0xFA, 0xE7];
        let mut at = t;
        let mut search = |codec: &mut Pn532Codec, answer: Vec<u8>| {
            assert!(codec.to_send(at).is_some());
            at += POLL_EVERY;
            feed(codec, &answer)
        };
        assert_eq!(search(&mut codec, no_card()), []);
        assert_eq!(search(&mut codec, card(&uid)), [Frame::id(&uid)]);
        assert_eq!(search(&mut codec, no_card()), []);
        assert_eq!(search(&mut codec, card(&uid)), [Frame::id(&uid)]);
        assert_eq!(search(&mut codec, no_card()), []);
        assert_eq!(search(&mut codec, no_card()), [Frame::NoTag]);
        assert_eq!(search(&mut codec, no_card()), []);
    }

    #[test]
    fn spoiled_refused_and_lost_answers_are_counted_and_asked_again() {
        let t = Instant::now();
        let mut codec = searching(t);
        let uid = [0x26, 0xDE, 0xFA, 0xE7];
        let search = codec.to_send(t).unwrap();
        // A NACK: the same search again at once.
        assert_eq!(feed(&mut codec, &NACK), []);
        assert_eq!(codec.to_send(t), Some(search.clone()));
        assert_eq!(codec.discarded().rejected_frames, 1);
        // A spoiled answer (bad DCS): skipped and counted; a second refusal in a row is asked
        // again only at the search rate.
        let mut spoiled = card(&uid);
        let dcs = spoiled.len() - 2;
        spoiled[dcs] ^= 0x55;
        assert_eq!(feed(&mut codec, &spoiled), []);
        assert_eq!(codec.discarded().rejected_frames, 2);
        assert_eq!(codec.to_send(t), None);
        let t = t + POLL_EVERY;
        assert_eq!(codec.to_send(t), Some(search.clone()));
        // No answer at all: asked again once it is overdue, and counted.
        assert_eq!(codec.to_send(t + Duration::from_millis(100)), None);
        assert_eq!(codec.to_send(t + ANSWER_WITHIN), Some(search.clone()));
        assert_eq!(codec.discarded().rejected_frames, 3);
        assert_eq!(codec.unanswered(), 3);
        // A truncated answer followed by a good one: the good one is read.
        let good = card(&uid);
        let truncated = &good[..good.len() - 4];
        assert_eq!(
            feed(&mut codec, &[truncated, &good].concat()),
            [Frame::id(&uid)]
        );
        // The chip's application error frame (TFI 7F): asked again at once; refused again,
        // only at the search rate.
        let at = t + Duration::from_secs(2);
        assert!(codec.to_send(at).is_some());
        let error_frame = [0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00];
        assert_eq!(feed(&mut codec, &[&ACK[..], &error_frame].concat()), []);
        assert_eq!(codec.to_send(at), Some(search.clone()));
        assert_eq!(feed(&mut codec, &[&ACK[..], &error_frame].concat()), []);
        assert_eq!(codec.to_send(at), None);
        assert_eq!(codec.next_send_at(), Some(at + POLL_EVERY));
        assert_eq!(codec.to_send(at + POLL_EVERY), Some(search));
        assert_eq!(codec.unanswered(), 2);
        assert_eq!(feed(&mut codec, &card(&uid)), [Frame::id(&uid)]);
        assert_eq!(codec.unanswered(), 0);
    }

    #[test]
    fn a_chip_that_stops_answering_is_woken_again() {
        let t = Instant::now();
        let mut codec = searching(t);
        let mut at = t;
        for _ in 0..WAKE_AFTER_MISSES {
            assert_eq!(
                command_code(&codec.to_send(at).unwrap()),
                IN_LIST_PASSIVE_TARGET
            );
            at += ANSWER_WITHIN;
        }
        let wake = codec.to_send(at).unwrap();
        assert!(wake.starts_with(&[0x55, 0x55]));
        assert_eq!(command_code(&wake), SAM_CONFIGURATION);
        assert_eq!(
            codec.discarded().rejected_frames,
            u64::from(WAKE_AFTER_MISSES)
        );
    }

    #[test]
    fn the_parser_finds_frames_in_noise_however_the_bytes_are_split() {
        let uid = [4, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80];
        let stream = [
            &b"\x13\x37\x00\xff\x13\x03noise"[..],
            &card(&uid),
            &[0x00, 0xFF, 0x05, 0xFA, 0xD5, 0x4B],
            &card(&uid),
        ]
        .concat();
        let parse = |chunks: &[&[u8]]| {
            let mut parser = ChipParser::default();
            let mut frames = Vec::new();
            for chunk in chunks {
                for &b in *chunk {
                    parser.push(b, &mut frames);
                }
            }
            (frames, parser.discarded())
        };
        let (whole, discarded) = parse(&[&stream]);
        assert_eq!(
            whole
                .iter()
                .filter(|f| matches!(f, ChipFrame::Answer(_)))
                .count(),
            2
        );
        assert_eq!(discarded.rejected_frames, 2);
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(
                parse(&[head, tail]),
                (whole.clone(), discarded),
                "split at {split}"
            );
        }
    }
}
