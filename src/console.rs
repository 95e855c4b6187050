//! Output of the commands: whole lines on standard output, each flushed at once, whoever reads
//! them (a terminal, a pipe, a test).
//!
//! A closed standard output (`gym-checkin status | head -1`, a pipe whose reader went away) is
//! not an error to complain about, and never a panic: one-shot commands stop printing and exit
//! cleanly ([`print`] returns [`Closed`]); long-running ones (`listen`, `demo`) learn of it
//! through [`stdout_closed`] and stop, cleaning up as on Ctrl-C.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Standard output was found closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

static CLOSED: AtomicBool = AtomicBool::new(false);
static CLOSED_NOTIFY: Notify = Notify::const_new();

/// Prints `text` as it is and flushes it; [`Closed`] once standard output cannot be written.
pub fn print(text: &str) -> Result<(), Closed> {
    if CLOSED.load(Ordering::Acquire) {
        return Err(Closed);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(_) => {
            CLOSED.store(true, Ordering::Release);
            CLOSED_NOTIFY.notify_waiters();
            Err(Closed)
        }
    }
}

/// Prints `text` as a line and flushes it. Once standard output is closed, nothing more is
/// printed, and [`stdout_closed`] completes.
pub fn say(text: &str) {
    let _ = print(&format!("{text}\n"));
}

/// Asks `question` on standard output and reads the answer from standard input: whether it
/// was yes (`y` or `yes`, any case). No answer (the end of input, or input that cannot be read)
/// is no.
pub fn confirm(question: &str) -> bool {
    if print(&format!("{question} [y/N] ")).is_err() {
        return false;
    }
    let mut answer = String::new();
    match std::io::stdin().read_line(&mut answer) {
        Ok(0) | Err(_) => {
            say("");
            false
        }
        Ok(_) => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}

/// Says `text` on standard error, after the program's name, as one line (or several, if it
/// holds line breaks). A closed standard error is no reason to stop or panic: it is ignored.
pub fn complain(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "gym-checkin: {text}");
}

/// Completes once a write to standard output has failed (at once if one already has).
pub async fn stdout_closed() {
    loop {
        let notified = CLOSED_NOTIFY.notified();
        if CLOSED.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// The name of the user this process runs as (`uid N` if it has none), for messages about
/// permissions.
pub fn user_name() -> String {
    // SAFETY: geteuid cannot fail.
    name_of_user(unsafe { libc::geteuid() })
}

/// The name of the user `uid` (`uid N` if it has none).
pub fn name_of_user(uid: u32) -> String {
    let mut buffer = vec![0 as libc::c_char; 1024];
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes the entry and its strings into `entry` and `buffer`, both valid
    // for the given sizes, and sets `found` to `entry` or null; the name is copied out before
    // either is dropped.
    unsafe {
        let rc = libc::getpwuid_r(
            uid,
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        if rc == 0 && !found.is_null() {
            let name = std::ffi::CStr::from_ptr((*found).pw_name);
            return name.to_string_lossy().into_owned();
        }
    }
    format!("uid {uid}")
}

/// The kind of a file that is not a regular one, in words.
pub fn file_type_name(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}
