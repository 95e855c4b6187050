//! `gym-checkin listen`: what the readers read, with every rendering of each id and the rfid the
//! configuration would send. It records nothing and calls nobody: this is how an installer
//! matches a reader to the way the gym's cards were enrolled in EGYM.

use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, rfc3339_ms, wall_now};
use crate::console::say;
use crate::liveness::Pulse;
use crate::reader::ReaderConfig;
use crate::reader::{CUT_SHORT, RANDOM_UID, Reader, ReaderMessage, Source, Tap, capture};
use crate::tag;

/// Listens on `readers` until `stop` completes; with `capture`, the (one) reader's bytes are
/// written to it too.
pub async fn run(
    readers: Vec<ReaderConfig>,
    mut capture: Option<capture::Writer>,
    clock: Clock,
    stop: impl Future<Output = ()>,
) {
    let (messages, mut inbox) = mpsc::channel(256);
    let (stopping, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    say(&format!(
        "Listening on {} (nothing is recorded or sent). Present a card; Ctrl-C to stop.",
        readers
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for config in readers {
        let source = Source::for_config(&config);
        let mut reader = Reader::new(config, source, clock.clone()).listening();
        if let Some(capture) = capture.take() {
            reader = reader.capturing(capture);
        }
        tasks.spawn(reader.run(messages.clone(), stopped.clone(), Pulse::unwatched()));
    }
    drop(messages);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            message = inbox.recv() => match message {
                Some(message) => say(&describe(&message)),
                None => break,
            },
            () = &mut stop => break,
        }
    }
    let _ = stopping.send(true);
    while tasks.join_next().await.is_some() {}
}

/// One message as `listen` prints it.
pub fn describe(message: &ReaderMessage) -> String {
    let time = rfc3339_ms(wall_now());
    match message {
        ReaderMessage::Connected {
            reader,
            connected: true,
            ..
        } => format!("{time} [{reader}] connected"),
        ReaderMessage::Connected {
            reader,
            connected: false,
            lost: Some(reason),
            ..
        } => {
            format!("{time} [{reader}] disconnected ({reason}); waiting for it to come back")
        }
        ReaderMessage::Connected {
            reader,
            connected: false,
            lost: None,
            ..
        } => format!("{time} [{reader}] closed"),
        ReaderMessage::Unreadable {
            reader,
            text,
            error,
        } => {
            format!(
                "{time} [{reader}] read {text:?}, which is not an id in this reader's id-format: {error}"
            )
        }
        ReaderMessage::RandomUid { reader, raw } => {
            format!(
                "{time} [{reader}] read {} (not sent: {RANDOM_UID})",
                raw.hex()
            )
        }
        ReaderMessage::Removed { reader } => format!("{time} [{reader}] card taken away"),
        ReaderMessage::Warning { reader, warning } => format!("{time} [{reader}] {warning}"),
        ReaderMessage::Tap(tap) => describe_tap(tap),
    }
}

fn describe_tap(tap: &Tap) -> String {
    let time = rfc3339_ms(tap.at.wall);
    if tap.repeat {
        return format!(
            "{time} [{}] {} again (same presentation, not a new tap)",
            tap.reader,
            tap.raw.hex()
        );
    }
    let format = tap
        .tag_format
        .map(|f| format!(" with tagFormat={f}"))
        .unwrap_or_default();
    let mut text = format!(
        "{time} [{}] read {} ({} bytes)\n    sends rfid {}{format}\n    renderings:",
        tap.reader,
        tap.raw.hex(),
        tap.raw.bytes().len(),
        tap.rfid
    );
    for rendering in tag::renderings(&tap.raw) {
        text.push_str(&format!(
            "\n      {:<22} {}",
            rendering.name, rendering.value
        ));
    }
    if tap.cut_short {
        text.push_str(&format!("\n    warning: {CUT_SHORT}"));
    }
    text
}
