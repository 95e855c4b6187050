//! The device side of a PC/SC reader: a thread that waits on pcscd, and the stream of records
//! (see the module above) it hands the reader task.

use std::ffi::{CStr, CString};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pcsc::{Context, Disposition, Error, Protocols, ReaderState, Scope, ShareMode, State};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::{GET_UID, PRESENTED, REMOVED, UNREADABLE, record};

/// Records not yet read by the reader task; a reader makes a few a minute at most.
const RECORDS_QUEUED: usize = 16;
/// The wait in pcscd ends by itself this often, so that a thread whose device was dropped
/// while it was busy with a card (and so missed the cancel) still ends. Not a poll: nothing is
/// asked of the reader.
const WAIT_AT_MOST: Duration = Duration::from_secs(60);

/// An open PC/SC reader. Reading gives records; writing is ignored. Dropping it cancels the
/// wait in pcscd and ends the thread.
pub struct PcscDevice {
    records: mpsc::Receiver<Result<Vec<u8>, String>>,
    unread: Vec<u8>,
    context: Context,
    /// Set when the device is dropped: the thread ends at its next wake-up.
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PcscDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscDevice").finish_non_exhaustive()
    }
}

fn io_error(text: String) -> io::Error {
    io::Error::other(text)
}

/// What an error from pcscd means, for staff.
fn describe(e: Error) -> String {
    match e {
        Error::NoService | Error::ServiceStopped | Error::CommError => format!(
            "lost pcscd: it is not running, stopped or restarted ({e}); if it does not come \
             back: systemctl start pcscd.socket"
        ),
        Error::NoReadersAvailable => "no PC/SC reader is plugged in".into(),
        Error::ReaderUnavailable | Error::UnknownReader => {
            format!("the reader was unplugged ({e})")
        }
        e => format!("pcscd: {e}"),
    }
}

impl PcscDevice {
    /// Connects to pcscd and starts waiting on the first reader whose name holds `wanted`, or
    /// on the first reader found. pcscd is asked from the thread: if it is slow to answer (being
    /// started by its socket unit, say), only this waits.
    pub async fn open(wanted: Option<String>) -> io::Result<PcscDevice> {
        let (ready, opened) = oneshot::channel();
        let (sender, records) = mpsc::channel(RECORDS_QUEUED);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("pcsc".into())
            .spawn(move || {
                let (context, name) = match connect(wanted.as_deref()) {
                    Ok(found) => found,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let said = (context.clone(), name.to_string_lossy().into_owned());
                if ready.send(Ok(said)).is_ok() {
                    watch(&context, &name, &sender, &stopped);
                }
            })?;
        let (context, name) = opened
            .await
            .map_err(|_| io_error("the PC/SC thread ended".into()))??;
        tracing::info!(pcsc_reader = %name, "PC/SC reader found");
        Ok(PcscDevice {
            records,
            unread: Vec::new(),
            context,
            stop,
        })
    }

    /// Whether pcscd is there with a reader `wanted` now: its full name.
    pub fn check(wanted: Option<&str>) -> io::Result<String> {
        connect(wanted).map(|(_, name)| name.to_string_lossy().into_owned())
    }
}

/// A context with pcscd, and the reader chosen.
fn connect(wanted: Option<&str>) -> io::Result<(Context, CString)> {
    let context = Context::establish(Scope::User).map_err(|e| io_error(describe(e)))?;
    let readers = match context.list_readers_owned() {
        Ok(readers) => readers,
        Err(Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(io_error(describe(e))),
    };
    let name = choose(&readers, wanted).ok_or_else(|| {
        let found: Vec<String> = readers
            .iter()
            .map(|r| format!("{:?}", r.to_string_lossy()))
            .collect();
        let found = if found.is_empty() {
            "none is plugged in".to_string()
        } else {
            format!("found: {}", found.join(", "))
        };
        io_error(match wanted {
            Some(wanted) => format!("no PC/SC reader's name contains {wanted:?} ({found})"),
            None => format!("no PC/SC reader ({found})"),
        })
    })?;
    Ok((context, name))
}

/// The first reader whose name holds `wanted` (ignoring case), or the first reader.
fn choose(readers: &[CString], wanted: Option<&str>) -> Option<CString> {
    let wanted = wanted.map(str::to_lowercase);
    readers
        .iter()
        .find(|name| {
            wanted
                .as_deref()
                .is_none_or(|w| name.to_string_lossy().to_lowercase().contains(w))
        })
        .cloned()
}

/// Waits for cards on `reader` until the device is dropped or the reader or pcscd goes away,
/// sending a record for each change.
fn watch(
    context: &Context,
    reader: &CStr,
    records: &mpsc::Sender<Result<Vec<u8>, String>>,
    stop: &AtomicBool,
) {
    let mut states = [ReaderState::new(reader.to_owned(), State::UNAWARE)];
    let mut card = Card::default();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // pcscd wakes this when something changes: nothing is polled.
        match context.get_status_change(WAIT_AT_MOST, &mut states) {
            Ok(()) => {}
            Err(Error::Timeout) => continue,
            Err(Error::Cancelled) => return,
            Err(e) => {
                let _ = records.blocking_send(Err(describe(e)));
                return;
            }
        }
        let state = states[0].event_state();
        if state.intersects(State::UNKNOWN | State::UNAVAILABLE | State::IGNORE) {
            let _ = records.blocking_send(Err("the reader was unplugged".into()));
            return;
        }
        let (removed, presented) = card.update(state, states[0].event_count());
        let mut changes = Vec::new();
        if removed {
            changes.push(vec![REMOVED]);
        }
        if presented {
            changes.push(if state.contains(State::MUTE) {
                record(UNREADABLE, b"the card does not answer (mute)")
            } else {
                read_uid(context, reader)
            });
        }
        for change in changes {
            if records.blocking_send(Ok(change)).is_err() {
                return;
            }
        }
        states[0].sync_current_state();
    }
}

/// What is known of the card on the reader, from pcscd's states.
#[derive(Debug, Default)]
struct Card {
    present: bool,
    /// pcscd's count of the reader's card events (insertions and removals) when last seen.
    events: Option<u32>,
}

impl Card {
    /// Takes in a new state and event count: whether a card was taken away, and whether one
    /// was presented (and is to be read).
    fn update(&mut self, state: State, events: u32) -> (bool, bool) {
        // Taken away and presented again (or swapped) between two wake-ups: pcscd still says
        // "present", but counted the removal and the insertion.
        let swapped = self.present
            && self
                .events
                .is_some_and(|seen| events.wrapping_sub(seen) >= 2);
        self.events = Some(events);
        if state.contains(State::PRESENT) && (!self.present || swapped) {
            self.present = true;
            (swapped, true)
        } else if state.contains(State::EMPTY) && self.present {
            self.present = false;
            (true, false)
        } else {
            (false, false)
        }
    }
}

/// Asks the card on `reader` for its UID; the record of the answer.
fn read_uid(context: &Context, reader: &CStr) -> Vec<u8> {
    let card = match context.connect(reader, ShareMode::Shared, Protocols::ANY) {
        Ok(card) => card,
        Err(e) => return record(UNREADABLE, format!("cannot connect to it: {e}").as_bytes()),
    };
    let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
    let answer = match card.transmit(&GET_UID, &mut buffer) {
        Ok(answer) => record(PRESENTED, answer),
        Err(e) => record(UNREADABLE, format!("GET DATA failed: {e}").as_bytes()),
    };
    let _ = card.disconnect(Disposition::LeaveCard);
    answer
}

impl AsyncRead for PcscDevice {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            match self.records.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                // The thread ended without a word: the same as a closed device.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(reason))) => return Poll::Ready(Err(io_error(reason))),
                Poll::Ready(Some(Ok(record))) => self.unread = record,
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PcscDevice {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for PcscDevice {
    fn drop(&mut self) {
        // Ends the thread's wait, or (busy with a card now) its next one.
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.context.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_presented_held_removed_and_swapped() {
        let mut card = Card::default();
        let present = State::PRESENT | State::CHANGED;
        assert_eq!(card.update(State::EMPTY, 0), (false, false));
        assert_eq!(card.update(present, 1), (false, true));
        // Held: our own connection changes the state, no new card.
        assert_eq!(card.update(present | State::INUSE, 1), (false, false));
        assert_eq!(card.update(present, 1), (false, false));
        assert_eq!(card.update(State::EMPTY, 2), (true, false));
        assert_eq!(card.update(present, 3), (false, true));
        // Taken away and presented again between two wake-ups.
        assert_eq!(card.update(present, 5), (true, true));
        assert_eq!(card.update(State::EMPTY | State::CHANGED, 6), (true, false));
        assert_eq!(card.update(State::EMPTY, 6), (false, false));
    }

    #[test]
    fn a_reader_is_chosen_by_part_of_its_name() {
        let readers = [
            CString::new("HID Global OMNIKEY 5422 Smartcard Reader [OMNIKEY 5422] 00 00").unwrap(),
            CString::new("ACS ACR122U PICC Interface 01 00").unwrap(),
        ];
        assert_eq!(choose(&readers, Some("acr122u")), Some(readers[1].clone()));
        assert_eq!(choose(&readers, None), Some(readers[0].clone()));
        assert_eq!(choose(&readers, Some("ACR1252")), None);
        assert_eq!(choose(&[], None), None);
    }
}
