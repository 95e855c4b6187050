//! Output of the interactive commands (`listen`, `calibrate`, `demo`): whole lines on standard
//! output, each flushed at once, whoever reads them (a terminal, a pipe, a test).

use std::io::Write;

/// Prints `text` as a line and flushes it. A closed standard output is no error here: the
/// command goes on (a daemon's log is on standard error).
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
