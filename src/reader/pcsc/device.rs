//! The device side of a PC/SC reader: a thread that waits on pcscd, and the stream of records
//! (see the module above) it hands the reader task.

use std::ffi::{CStr, CString};
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pcsc::{Context, Disposition, Error, Protocols, ReaderState, Scope, ShareMode, State};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::{GET_UID, PRESENTED, REMOVED, UNREADABLE, record};

/// Records not yet read by the reader task; a reader makes a few a minute at most.
const RECORDS_QUEUED: usize = 16;

/// An open PC/SC reader. Reading gives records; writing is ignored. Dropping it cancels the
/// wait in pcscd and ends the thread.
pub struct PcscDevice {
    records: mpsc::Receiver<Result<Vec<u8>, String>>,
    unread: Vec<u8>,
    context: Context,
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
                    watch(&context, &name, &sender);
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

/// Waits for cards on `reader` until the wait is cancelled or the reader or pcscd goes away,
/// sending a record for each change.
fn watch(context: &Context, reader: &CStr, records: &mpsc::Sender<Result<Vec<u8>, String>>) {
    let mut states = [ReaderState::new(reader.to_owned(), State::UNAWARE)];
    let mut present = false;
    loop {
        // No timeout: pcscd wakes this when something changes, and nothing is polled.
        match context.get_status_change(None, &mut states) {
            Ok(()) => {}
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
        let record = if state.contains(State::PRESENT) && !present {
            present = true;
            Some(if state.contains(State::MUTE) {
                record(UNREADABLE, b"the card does not answer (mute)")
            } else {
                read_uid(context, reader)
            })
        } else if state.contains(State::EMPTY) && present {
            present = false;
            Some(vec![REMOVED])
        } else {
            None
        };
        if let Some(record) = record
            && records.blocking_send(Ok(record)).is_err()
        {
            return;
        }
        states[0].sync_current_state();
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
        // Ends the thread's wait; it then returns.
        let _ = self.context.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
