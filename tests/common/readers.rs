//! Readers the host must ask, emulated on the master side of a pseudo-terminal: a PN532 board
//! (HSU frames) and an Elatec TWN4 (Simple Protocol). Each answers what the real one answers,
//! "no card" included, checks every request it gets, and can drop, spoil or refuse the answers
//! that carry a card. The PN532 sleeps until it is woken (`55 55` and zeros), as the chip does
//! after power-up.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gym_checkin::reader::pn532::{self, CHIP_TO_HOST, HOST_TO_CHIP};

use super::{Pty, poll_blocking};

/// What the next answer carrying a card suffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Acknowledged, never answered.
    Drop,
    /// Answered with a bad checksum (PN532) or garbled text (TWN4).
    Corrupt,
    /// Refused: the PN532's application error frame, a TWN4's error byte.
    Refuse,
}

#[derive(Debug, Default)]
pub struct State {
    /// The card on the reader: its id, and the TWN4 tag type.
    pub card: Option<(Vec<u8>, u8)>,
    pub faults: VecDeque<Fault>,
    /// Requests answered or refused, by command code (PN532) or text (TWN4).
    pub requests: Vec<String>,
    /// Requests that were not well-formed.
    pub bad_requests: usize,
    /// Whether the PN532 was woken up.
    pub awake: bool,
    /// Commands sent to a sleeping PN532 (it hears none of them).
    pub unheard: usize,
}

#[derive(Debug, Clone)]
pub struct EmulatedReader {
    state: Arc<Mutex<State>>,
}

impl EmulatedReader {
    /// A PN532 on `pty`, answering from a thread until the test drops it.
    pub fn pn532(pty: &Pty) -> EmulatedReader {
        EmulatedReader::answering(pty, run_pn532)
    }

    /// A TWN4 on `pty`.
    pub fn twn4(pty: &Pty) -> EmulatedReader {
        EmulatedReader::answering(pty, run_twn4)
    }

    /// A reader on `pty` whose side of the line `run` plays, on a thread of its own.
    fn answering(pty: &Pty, run: fn(std::fs::File, &Arc<Mutex<State>>)) -> EmulatedReader {
        let reader = EmulatedReader {
            state: Arc::default(),
        };
        let state = reader.state.clone();
        let master = pty.master();
        std::thread::spawn(move || run(master, &state));
        reader
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Puts a card with `uid` on the reader (a MIFARE card, to a TWN4).
    pub fn present(&self, uid: &[u8]) {
        self.present_typed(uid, 0x80);
    }

    /// Puts a card of TWN4 tag type `tag_type` on the reader.
    pub fn present_typed(&self, uid: &[u8], tag_type: u8) {
        self.state().card = Some((uid.to_vec(), tag_type));
    }

    pub fn remove(&self) {
        self.state().card = None;
    }

    /// The next answers suffer `faults`, in order.
    pub fn fault(&self, faults: &[Fault]) {
        self.state().faults.extend(faults);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    pub fn bad_requests(&self) -> usize {
        self.state().bad_requests
    }

    /// Faults queued and not yet suffered.
    pub fn faults_left(&self) -> usize {
        self.state().faults.len()
    }

    /// Commands the daemon sent a sleeping PN532 (before any wake-up).
    pub fn unheard(&self) -> usize {
        self.state().unheard
    }

    /// Waits until `done` holds of the reader's state, at most `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&State) -> bool) {
        assert!(
            super::wait_until(timeout, || done(&self.state())).await,
            "{what}: not within {timeout:?}; state {:?}",
            self.state()
        );
    }

    /// Waits for `n` more searches than were made when it was called.
    pub async fn wait_for_searches(&self, n: usize, timeout: Duration) {
        let searches = |s: &State| {
            s.requests
                .iter()
                .filter(|r| *r == "InListPassiveTarget" || *r == "0500FF")
                .count()
        };
        let before = searches(&self.state());
        self.wait_until("searches", timeout, |s| searches(s) >= before + n)
            .await;
    }
}

const ACK: [u8; 6] = [0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00];
/// The PN532's application error frame: a command it could not carry out.
const ERROR_FRAME: [u8; 8] = [0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00];

/// Reads what the daemon wrote. The master reads EIO while the daemon has the port closed (before
/// it opens it, or while it reopens it): that is waited out. `None` once the test has dropped
/// the reader.
fn read_some(
    master: &mut std::fs::File,
    buffer: &mut [u8],
    state: &Arc<Mutex<State>>,
) -> Option<usize> {
    // As long as the test keeps the reader; looking again soon, as a device answers within
    // milliseconds.
    poll_blocking(Duration::from_millis(5), None, || {
        if Arc::strong_count(state) == 1 {
            return Some(None);
        }
        match master.read(buffer) {
            Ok(n) if n > 0 => Some(Some(n)),
            _ => None,
        }
    })
    .flatten()
}

fn run_pn532(mut master: std::fs::File, state: &Arc<Mutex<State>>) {
    let mut pending = Vec::new();
    let mut buffer = [0u8; 512];
    while let Some(n) = read_some(&mut master, &mut buffer, state) {
        pending.extend_from_slice(&buffer[..n]);
        if !state.lock().unwrap().awake {
            // Asleep: everything before the wake-up's 55 55 goes unheard.
            match pending.windows(2).position(|w| w == [0x55, 0x55]) {
                Some(at) => {
                    pending.drain(..at);
                    state.lock().unwrap().awake = true;
                }
                None => {
                    if pending.windows(2).any(|w| w == [0x00, 0xFF]) {
                        state.lock().unwrap().unheard += 1;
                    }
                    pending.clear();
                    continue;
                }
            }
        }
        while let Some(command) = next_host_frame(&mut pending, state) {
            let answer = pn532_answer(&command, state);
            if master.write_all(&answer).is_err() {
                return;
            }
        }
    }
}

/// Takes the next well-formed host frame's data (after TFI) out of `pending`.
fn next_host_frame(pending: &mut Vec<u8>, state: &Mutex<State>) -> Option<Vec<u8>> {
    loop {
        let start = pending.windows(2).position(|w| w == [0x00, 0xFF])?;
        let frame = &pending[start..];
        if frame.len() < 4 {
            return None;
        }
        let (len, lcs) = (frame[2] as usize, frame[3]);
        if (frame[2].wrapping_add(lcs)) != 0 || len == 0 {
            state.lock().unwrap().bad_requests += 1;
            pending.drain(..start + 2);
            continue;
        }
        if frame.len() < 4 + len + 1 {
            return None;
        }
        let body = &frame[4..4 + len];
        let dcs = frame[4 + len];
        let sum = body.iter().fold(dcs, |acc, b| acc.wrapping_add(*b));
        if body[0] != HOST_TO_CHIP || sum != 0 {
            state.lock().unwrap().bad_requests += 1;
            pending.drain(..start + 2);
            continue;
        }
        let data = body[1..].to_vec();
        pending.drain(..start + 4 + len + 1);
        return Some(data);
    }
}

fn pn532_answer(command: &[u8], state: &Mutex<State>) -> Vec<u8> {
    let mut state = state.lock().unwrap();
    let name = match command.first() {
        Some(&pn532::SAM_CONFIGURATION) => "SAMConfiguration",
        Some(&pn532::RF_CONFIGURATION) => "RFConfiguration",
        Some(&pn532::IN_LIST_PASSIVE_TARGET) if command[1..] == [0x01, 0x00] => {
            "InListPassiveTarget"
        }
        _ => {
            state.bad_requests += 1;
            return [&ACK[..], &ERROR_FRAME[..]].concat();
        }
    };
    state.requests.push(name.to_string());
    let data = match name {
        "InListPassiveTarget" => match &state.card {
            Some((uid, _)) => {
                let mut data = vec![0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, uid.len() as u8];
                data.extend_from_slice(uid);
                data
            }
            None => vec![0x4B, 0x00],
        },
        _ => vec![command[0] + 1],
    };
    let mut answer = pn532::information_frame(CHIP_TO_HOST, &data);
    let with_card = name == "InListPassiveTarget" && state.card.is_some();
    match with_card.then(|| state.faults.pop_front()).flatten() {
        None => [&ACK[..], &answer].concat(),
        Some(Fault::Drop) => ACK.to_vec(),
        Some(Fault::Refuse) => [&ACK[..], &ERROR_FRAME[..]].concat(),
        Some(Fault::Corrupt) => {
            let dcs = answer.len() - 2;
            answer[dcs] ^= 0x5A;
            [&ACK[..], &answer].concat()
        }
    }
}

fn run_twn4(mut master: std::fs::File, state: &Arc<Mutex<State>>) {
    let mut line = Vec::new();
    let mut buffer = [0u8; 512];
    while let Some(n) = read_some(&mut master, &mut buffer, state) {
        for &byte in &buffer[..n] {
            if byte != b'\r' {
                line.push(byte);
                continue;
            }
            let request = String::from_utf8_lossy(&std::mem::take(&mut line)).to_string();
            let answer = twn4_answer(&request, state);
            if master.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    }
}

fn twn4_answer(request: &str, state: &Mutex<State>) -> String {
    let mut state = state.lock().unwrap();
    if request != "0500FF" {
        state.bad_requests += 1;
        // ERR_UNKNOWN_FUNCTION.
        return "01\r".into();
    }
    state.requests.push(request.to_string());
    let answer = match &state.card {
        Some((id, tag_type)) => {
            let hex: String = id.iter().map(|b| format!("{b:02X}")).collect();
            format!(
                "0001{tag_type:02X}{:02X}{:02X}{hex}\r",
                id.len() * 8,
                id.len()
            )
        }
        None => "0000\r".into(),
    };
    let with_card = state.card.is_some();
    match with_card.then(|| state.faults.pop_front()).flatten() {
        None => answer,
        Some(Fault::Drop) => String::new(),
        Some(Fault::Refuse) => "01\r".into(),
        Some(Fault::Corrupt) => answer.replacen('0', "\u{7}", 2),
    }
}
