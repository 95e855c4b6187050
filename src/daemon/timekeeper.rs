//! Keeps the clock's trust current and writes down what the clock needs across restarts.
//!
//! Every couple of seconds it asks whether the wall clock is trusted ([`Clock::refresh`]): a
//! change is logged once and recorded for `status`, and the recorder, waiting on the clock, places
//! the held taps. A step of the wall clock is logged. Every minute, and when stopping, it notes
//! that the service is still running in this boot, with the latest trusted reading: what places
//! taps held across a reboot, and carries steady time over one.

use std::time::Duration;

use crate::clock::timer::{self, Instant};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::store::Store;

/// How often trust is asked again.
const POLL: Duration = Duration::from_secs(2);
/// How often the boot's record is brought up to date.
const NOTE_BOOT: Duration = Duration::from_secs(60);
/// While taps are held for an untrusted clock, this often the journal says so again.
const HELD_REMINDER: Duration = Duration::from_secs(15 * 60);

pub async fn run(clock: Clock, store: Store, mut stopping: watch::Receiver<bool>) {
    let mut noted = Instant::now();
    let mut reminded = Instant::now();
    loop {
        tokio::select! {
            () = timer::sleep(POLL) => {}
            _ = stopping.wait_for(|stop| *stop) => break,
        }
        let refresh = clock.refresh();
        let now = clock.now();
        if let Some(step_ms) = refresh.step_ms {
            info!(
                step_s = %format_args!("{:+.1}", step_ms as f64 / 1000.0),
                trusted = refresh.trust.trusted,
                "wall clock stepped by {}; schedules, windows and visit times are kept in steady time and do not move",
                crate::clock::signed_duration(step_ms)
            );
        }
        if let Some(was) = &refresh.was {
            let trust = &refresh.trust;
            if trust.trusted {
                info!(
                    clock = "trusted",
                    source = trust.source.as_str(),
                    "clock trusted: {}",
                    trust.detail
                );
            } else {
                warn!(
                    clock = "untrusted",
                    source = trust.source.as_str(),
                    was = was.source.as_str(),
                    "clock NOT trusted: {}. {}",
                    trust.detail,
                    clock.while_untrusted()
                );
                reminded = Instant::now();
            }
            if let Err(e) = store
                .set_clock_state(trust.clone(), now.wall, now.steady)
                .await
            {
                warn!(error = %e, "cannot record the clock's state for status");
            }
        }
        if !refresh.trust.trusted && reminded.elapsed() >= HELD_REMINDER {
            reminded = Instant::now();
            let held = store.status().await.map(|s| s.clock.held).unwrap_or(0);
            if held > 0 {
                error!(
                    clock = "untrusted",
                    held,
                    "clock still NOT trusted: {held} taps are held from EGYM until it is. {}",
                    refresh.trust.detail
                );
            }
        }
        if noted.elapsed() >= NOTE_BOOT {
            noted = Instant::now();
            note_boot(&clock, &store).await;
        }
    }
    note_boot(&clock, &store).await;
}

async fn note_boot(clock: &Clock, store: &Store) {
    let anchor = clock.trust().trusted.then(|| clock.anchor()).flatten();
    if let Err(e) = store
        .note_boot(clock.boot().id, clock.steady(), anchor)
        .await
    {
        warn!(error = %e, "cannot note the clock's boot in the database");
    }
}
