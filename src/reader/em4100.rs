//! EM4100 ASCII frames from RDM6300 and ID-12LA / ID-20LA modules.
//!
//! ```text
//! RDM6300:  STX  10 hex digits (5 id bytes)  2 hex digits (XOR of the 5 bytes)  ETX
//! ID-12LA:  STX  10 hex digits               2 hex digits                       CR LF ETX
//! ```
//! Clones of both end the digits with CR alone or LF alone before ETX; those are read too. The
//! checksum is checked whatever the framing.
//! Every STX starts a frame afresh, even inside another one: a frame cut short by noise or a
//! glitch must not swallow the good frame after it. Hex digits are accepted in either case.

use super::frame::{Codec, Discarded, Frame};
use crate::tag::hex_value;

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const CR: u8 = b'\r';
const LF: u8 = b'\n';
/// 5 id bytes and a checksum byte, as 12 hex digits.
const DIGITS: usize = 12;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Waiting for STX.
    #[default]
    Idle,
    /// After STX, collecting hex digits.
    Digits,
    /// All digits read: ETX (RDM6300), CR (ID-12LA, or a clone's CR alone) or LF next.
    AfterDigits,
    AfterCr,
    /// The line end is over: only ETX may follow.
    AfterLf,
}

#[derive(Debug, Default)]
pub struct Em4100Codec {
    state: State,
    digits: [u8; DIGITS],
    n_digits: usize,
    /// Bytes of the frame being read, counted as noise if it is rejected.
    frame_len: u64,
    discarded: Discarded,
}

impl Em4100Codec {
    fn reject_frame(&mut self) {
        self.discarded.rejected_frames += 1;
        self.discarded.noise_bytes += self.frame_len;
        self.state = State::Idle;
        self.frame_len = 0;
    }

    fn finish_frame(&mut self) -> Option<Frame> {
        let mut bytes = [0u8; 6];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (self.digits[2 * i] << 4) | self.digits[2 * i + 1];
        }
        let checksum = bytes[..5].iter().fold(0, |acc, b| acc ^ b);
        if checksum != bytes[5] {
            self.reject_frame();
            return None;
        }
        self.state = State::Idle;
        self.frame_len = 0;
        Some(Frame::id(&bytes[..5]))
    }
}

impl Codec for Em4100Codec {
    fn push(&mut self, byte: u8) -> Option<Frame> {
        if byte == STX {
            if self.state != State::Idle {
                self.reject_frame();
            }
            self.state = State::Digits;
            self.n_digits = 0;
            self.frame_len = 1;
            return None;
        }
        if self.state == State::Idle {
            self.discarded.noise_bytes += 1;
            return None;
        }
        self.frame_len += 1;
        match (self.state, byte) {
            (State::Digits, _) => match hex_value(byte) {
                Some(value) => {
                    self.digits[self.n_digits] = value;
                    self.n_digits += 1;
                    if self.n_digits == DIGITS {
                        self.state = State::AfterDigits;
                    }
                }
                None => self.reject_frame(),
            },
            (State::AfterDigits | State::AfterCr | State::AfterLf, ETX) => {
                return self.finish_frame();
            }
            (State::AfterDigits, CR) => self.state = State::AfterCr,
            (State::AfterDigits | State::AfterCr, LF) => self.state = State::AfterLf,
            _ => self.reject_frame(),
        }
        None
    }

    fn discarded(&self) -> Discarded {
        self.discarded
    }
}
