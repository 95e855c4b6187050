//! Line readers: one id per line of ASCII text, ended by CR, LF or CR LF.
//!
//! Blank lines are skipped, so every terminator style (and Parallax's `LF id CR`) works. A line
//! holding a control byte or longer than any id is noise: it is dropped at its terminator.

use super::codec::{Codec, Discarded, Frame};

/// Longer than any id in any rendering (a 10-byte UID as hex is 20 characters).
const MAX_LINE: usize = 64;

#[derive(Debug, Default)]
pub struct LineCodec {
    line: Vec<u8>,
    /// The current line holds a control byte or grew too long.
    spoiled: bool,
    discarded: Discarded,
}

impl Codec for LineCodec {
    fn push(&mut self, byte: u8) -> Option<Frame> {
        if byte == b'\r' || byte == b'\n' {
            let line = std::mem::take(&mut self.line);
            if std::mem::take(&mut self.spoiled) {
                self.discarded.rejected_frames += 1;
                self.discarded.noise_bytes += line.len() as u64 + 1;
                return None;
            }
            // Only printable ASCII gets into `line`, so it is valid UTF-8.
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            return Some(Frame::Text(text.to_string()));
        }
        let printable = byte == b' ' || byte == b'\t' || byte.is_ascii_graphic();
        if !printable || self.line.len() >= MAX_LINE {
            self.spoiled = true;
        }
        if self.spoiled {
            // Count it now; `line` is only kept to know where the spoiled line ends.
            self.discarded.noise_bytes += 1;
        } else {
            self.line.push(byte);
        }
        None
    }

    fn discarded(&self) -> Discarded {
        self.discarded
    }
}
