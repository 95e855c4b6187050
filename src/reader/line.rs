//! Line readers: one id per line of ASCII text, ended by CR, LF or CR LF.
//!
//! Blank lines are skipped, so every terminator style (and Parallax's `LF id CR`) works. A line
//! holding a control byte or longer than any id is noise: it is dropped at its terminator.

use super::frame::{Codec, Discarded, Frame};

/// Longer than any id in any rendering (a 10-byte UID as hex is 20 characters).
const MAX_LINE: usize = 64;

#[derive(Debug, Default)]
pub struct LineCodec {
    line: LineBuffer,
    discarded: Discarded,
}

impl Codec for LineCodec {
    fn push(&mut self, byte: u8) -> Option<Frame> {
        let printable = |b: u8| b == b' ' || b == b'\t' || b.is_ascii_graphic();
        match self
            .line
            .push(byte, printable, MAX_LINE, &mut self.discarded)?
        {
            Ended::Spoiled { kept } => {
                self.discarded.rejected_frames += 1;
                self.discarded.noise_bytes += kept as u64 + 1;
                None
            }
            Ended::Line(line) => {
                // Only printable ASCII gets into `line`, so it is valid UTF-8.
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                (!text.is_empty()).then(|| Frame::Text(text.to_string()))
            }
        }
    }

    fn discarded(&self) -> Discarded {
        self.discarded
    }
}

/// A line being read, up to CR or LF: spoiled by a byte it may not hold or by growing past its
/// length. The line codec and TWN4's answers read lines alike.
#[derive(Debug, Default)]
pub(super) struct LineBuffer {
    line: Vec<u8>,
    /// The current line holds a byte it may not, or grew too long.
    spoiled: bool,
}

/// How a line ended.
pub(super) enum Ended {
    /// Its bytes, without the line end.
    Line(Vec<u8>),
    /// Spoiled: the bytes after the spoiling one were counted as noise as they came; `kept`
    /// were held before it.
    Spoiled { kept: usize },
}

impl LineBuffer {
    /// Feeds one byte; returns the line a line end finishes. Bytes of a spoiled line are
    /// counted in `discarded` as noise.
    pub(super) fn push(
        &mut self,
        byte: u8,
        allowed: impl Fn(u8) -> bool,
        max: usize,
        discarded: &mut Discarded,
    ) -> Option<Ended> {
        if byte == b'\r' || byte == b'\n' {
            let line = std::mem::take(&mut self.line);
            return Some(if std::mem::take(&mut self.spoiled) {
                Ended::Spoiled { kept: line.len() }
            } else {
                Ended::Line(line)
            });
        }
        if !allowed(byte) || self.line.len() >= max {
            self.spoiled = true;
        }
        if self.spoiled {
            // Counted now; the line is only kept to know where the spoiled line ends.
            discarded.noise_bytes += 1;
        } else {
            self.line.push(byte);
        }
        None
    }

    /// Drops the line being read; returns how many bytes it held.
    pub(super) fn clear(&mut self) -> usize {
        let held = self.line.len();
        *self = LineBuffer::default();
        held
    }
}
