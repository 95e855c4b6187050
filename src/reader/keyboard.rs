//! Keyboard-wedge readers: USB readers that pretend to be a keyboard, type the card number and
//! press Enter.
//!
//! The device's evdev node is opened and grabbed (`EVIOCGRAB`), so the digits reach neither the
//! console nor the front-desk PC's focused window. Key events are turned into text by
//! [`KeyDecoder`] (pure, time passed in), one line per id; the reader task then reads that text
//! like a `line` reader's, with the same `id-format`, `id-bytes` and `byte-order`.
//!
//! Key positions are mapped, not characters, so the host's keyboard layout does not matter for
//! digits and hex letters a–f.

use std::collections::VecDeque;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::timer::Instant;
use tokio::io::{AsyncRead, ReadBuf};

/// A partial id not finished by Enter within this long is dropped: the next keys start afresh.
pub const PARTIAL_ID_TIMEOUT: Duration = Duration::from_millis(300);
/// Longer than any id in any rendering.
const MAX_ID_CHARS: usize = 64;

const KEY_LEFTSHIFT: u16 = 42;
const KEY_RIGHTSHIFT: u16 = 54;
const KEY_ENTER: u16 = 28;
const KEY_KPENTER: u16 = 96;

/// The character a key types (lowercase for letters), if it is part of an id.
fn key_char(code: u16) -> Option<char> {
    Some(match code {
        2..=10 => char::from(b'1' + (code - 2) as u8),
        11 => '0',
        // Keypad: KP7 KP8 KP9 / KP4 KP5 KP6 / KP1 KP2 KP3 / KP0.
        71 => '7',
        72 => '8',
        73 => '9',
        75 => '4',
        76 => '5',
        77 => '6',
        79 => '1',
        80 => '2',
        81 => '3',
        82 => '0',
        30 => 'a',
        48 => 'b',
        46 => 'c',
        32 => 'd',
        18 => 'e',
        33 => 'f',
        51 => ',',
        _ => return None,
    })
}

/// Turns key events into ids, one per Enter (pure; the time of each event is passed in).
#[derive(Debug, Default)]
pub struct KeyDecoder {
    typed: String,
    shift: bool,
    last_key: Option<Instant>,
    /// Partial ids dropped for a pause, or for being too long.
    pub dropped: u64,
}

impl KeyDecoder {
    /// Feeds one key event (`value`: 1 press, 0 release, 2 autorepeat); returns an id when
    /// Enter ends one.
    pub fn key(&mut self, code: u16, value: i32, at: Instant) -> Option<String> {
        if code == KEY_LEFTSHIFT || code == KEY_RIGHTSHIFT {
            self.shift = value != 0;
            return None;
        }
        // Only presses type: releases and the keyboard's own repeats do not.
        if value != 1 {
            return None;
        }
        if let Some(last) = self.last_key
            && at.saturating_duration_since(last) > PARTIAL_ID_TIMEOUT
            && !self.typed.is_empty()
        {
            self.typed.clear();
            self.dropped += 1;
        }
        self.last_key = Some(at);
        if code == KEY_ENTER || code == KEY_KPENTER {
            let id = std::mem::take(&mut self.typed);
            return (!id.is_empty()).then_some(id);
        }
        let Some(c) = key_char(code) else {
            // An unrelated key: not part of any id.
            return None;
        };
        if self.typed.len() >= MAX_ID_CHARS {
            self.typed.clear();
            self.dropped += 1;
        }
        self.typed.push(if self.shift {
            c.to_ascii_uppercase()
        } else {
            c
        });
        None
    }
}

/// An evdev keyboard, grabbed, read as the text of the ids it types (`id\n` each).
pub struct KeyboardDevice {
    events: evdev::EventStream,
    decoder: KeyDecoder,
    typed: VecDeque<u8>,
}

impl std::fmt::Debug for KeyboardDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyboardDevice")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

impl KeyboardDevice {
    /// Opens the event node and grabs it, so its keys go to no one else.
    pub fn open(path: &Path) -> std::io::Result<KeyboardDevice> {
        let mut device = evdev::Device::open(path)?;
        device.grab()?;
        Ok(KeyboardDevice {
            events: device.into_event_stream()?,
            decoder: KeyDecoder::default(),
            typed: VecDeque::new(),
        })
    }
}

impl AsyncRead for KeyboardDevice {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.typed.is_empty() {
                let n = self.typed.len().min(buf.remaining());
                let bytes: Vec<u8> = self.typed.drain(..n).collect();
                buf.put_slice(&bytes);
                return Poll::Ready(Ok(()));
            }
            let event = match self.events.poll_event(cx) {
                Poll::Ready(Ok(event)) => event,
                // ENODEV and the like: the device is gone; the reader reopens it.
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if event.event_type() == evdev::EventType::KEY {
                let this = &mut *self;
                if let Some(id) = this
                    .decoder
                    .key(event.code(), event.value(), Instant::now())
                {
                    this.typed.extend(id.as_bytes());
                    this.typed.push_back(b'\n');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Types `events` ([code, value], 5 ms apart unless a pause is given as [0, ms]).
    fn check(events: &[(u16, i32)], expected: &[&str]) {
        let mut decoder = KeyDecoder::default();
        let mut at = Instant::now();
        let mut ids = Vec::new();
        for &(code, value) in events {
            if code == 0 {
                at += Duration::from_millis(value as u64);
                continue;
            }
            at += Duration::from_millis(5);
            ids.extend(decoder.key(code, value, at));
        }
        assert_eq!(ids, expected, "{events:?}");
    }

    fn press(codes: &[u16]) -> Vec<(u16, i32)> {
        codes.iter().flat_map(|&c| [(c, 1), (c, 0)]).collect()
    }

    #[test]
    fn digits_and_enter() {
        check(&press(&[11, 11, 2, 10, 28]), &["0019"]);
        // Keypad digits and keypad Enter.
        check(
            &press(&[82, 79, 80, 81, 75, 76, 77, 71, 72, 73, 96]),
            &["0123456789"],
        );
        // Enter alone types nothing.
        check(&press(&[28, 28]), &[]);
    }

    #[test]
    fn shift_makes_hex_letters_uppercase() {
        let mut events = press(&[3]);
        events.extend([(42, 1), (32, 1), (32, 0), (42, 0)]);
        events.extend(press(&[18]));
        events.extend([(54, 1), (33, 1), (33, 0), (54, 0)]);
        events.extend(press(&[28]));
        check(&events, &["2DeF"]);
    }

    #[test]
    fn key_repeats_and_unrelated_keys_are_ignored() {
        let mut events = vec![(2, 1), (2, 2), (2, 2), (2, 0)];
        events.extend(press(&[16, 57, 3, 1, 28]));
        check(&events, &["12"]);
    }

    #[test]
    fn an_interrupted_id_is_dropped() {
        let mut events = press(&[2, 3, 4]);
        events.push((0, 400));
        events.extend(press(&[5, 6, 28]));
        check(&events, &["45"]);
        // A slow but steady reader within the timeout is fine.
        let mut events = Vec::new();
        for code in [2, 3, 4, 28] {
            events.push((0, 250));
            events.extend(press(&[code]));
        }
        check(&events, &["123"]);
    }
}
