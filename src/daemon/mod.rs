//! Wiring: opens the database, starts one task per reader, the recorder, the delivery worker
//! and the pruner, and stops them all when the shutdown future completes. Under systemd it
//! reports readiness and status and feeds the watchdog while every task answers.

mod notify;
mod timekeeper;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::clock::{self, Clock, SystemSource, TimeSource};
use crate::config::Config;
use crate::delivery::{self, Worker};
use crate::egym::{self, ApiKey};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::reader::{Reader, Source};
use crate::recorder::Recorder;
use crate::screen::{Listeners, Screen};
use crate::store::{Store, StoreError};
use notify::Notifier;

/// Taps read but not yet decided, at most; a reader waits when the recorder is this far behind.
const TAP_QUEUE: usize = 1024;
/// Delivered events past `keep-delivered` are deleted this often, in small batches.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Delivered events deleted per transaction when pruning; a tap waits for at most one such batch.
pub const PRUNE_BATCH: usize = 500;
/// systemd's STATUS= line is refreshed this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// While events are pending, a summary line is logged this often.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub enum DaemonError {
    Store(StoreError),
    Setup(String),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Store(e) => write!(f, "{e}"),
            DaemonError::Setup(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<StoreError> for DaemonError {
    fn from(e: StoreError) -> Self {
        DaemonError::Store(e)
    }
}

/// Runs the service until `shutdown` completes. `sources` overrides where a reader's bytes come
/// from (by position in `config.readers`); readers without one open their configured device.
pub async fn run(
    config: Config,
    api_key: ApiKey,
    mut sources: Vec<Option<Source>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let store = Store::open(&config.store.path).await?;
    info!(database = %config.store.path.display(), "database open");
    let clock = start_clock(&store, &config).await?;

    let (stop, stopping) = watch::channel(false);
    let (recorded, recorded_events) = watch::channel(0);
    let recorded = Arc::new(recorded);
    let (taps, tap_queue) = mpsc::channel(TAP_QUEUE);
    let auto_checkout = (config.visits.auto_checkout_after.is_some()
        || config.visits.closing_time.is_some())
    .then(|| crate::visit::AutoCheckoutPolicy {
        after: config.visits.auto_checkout_after,
        closing_time: config.visits.closing_time,
        time_zone: jiff::tz::TimeZone::system(),
    });
    let metrics = Arc::new(Metrics::default());
    let screen = Screen::new(clock.clone());
    let listeners = Listeners {
        screen: screen.clone(),
        metrics: metrics.clone(),
    };
    let recorder = Recorder::new(
        store.clone(),
        clock.clone(),
        config.visits.repeat_window,
        auto_checkout,
        recorded,
        listeners.clone(),
    )
    .await?;

    store
        .reset_readers(
            config.readers.iter().map(|r| r.name.clone()).collect(),
            clock.now().wall_ms,
        )
        .await?;

    let mut liveness = Liveness::default();
    let mut readers = JoinSet::new();
    sources.resize_with(config.readers.len(), || None);
    for (reader, source) in config.readers.iter().zip(sources) {
        let source = source.unwrap_or_else(|| Source::for_config(reader));
        let pulse = liveness.register(format!("reader {}", reader.name));
        readers.spawn(Reader::new(reader.clone(), source, clock.clone()).run(
            taps.clone(),
            stopping.clone(),
            pulse,
        ));
    }
    drop(taps);
    let (corrections, corrections_in) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(recorder.run(
        tap_queue,
        corrections_in,
        stopping.clone(),
        liveness.register("recorder"),
    ));

    let settings = delivery::Settings {
        rate_per_second: config.egym.rate_limit_per_second,
        account_cache_ttl: config.egym.account_cache_ttl,
        unknown_tag_retry_window: config.egym.unknown_tag_retry_window,
        admission_window: config.wellpass.admission_window,
        late_admission: config.wellpass.late,
    };
    let client = egym::Client::new(
        &config.egym.base_url,
        config.egym.request_timeout,
        config.egym.rate_limit_per_second,
        config.egym.rate_limit_burst,
    )
    .map_err(DaemonError::Setup)?
    .with_metrics(metrics.clone());
    let worker = Worker::new(
        store.clone(),
        client,
        clock.clone(),
        settings,
        config.egym.api_key.clone(),
        api_key,
        delivery::RecorderLinks {
            listeners,
            recorded: recorded_events,
            corrections,
        },
    );
    let delivery = tokio::spawn(worker.run(stopping.clone(), liveness.register("delivery")));
    let pruner = tokio::spawn(prune(
        store.clone(),
        clock.clone(),
        config.store.keep_delivered,
        stopping.clone(),
    ));
    let timekeeper = tokio::spawn(timekeeper::run(
        clock.clone(),
        store.clone(),
        stopping.clone(),
    ));
    // The screen is optional: it runs beside the tasks above, outside the watchdog's checks,
    // and nothing waits for it.
    let screen_server = match config.screen.listen {
        Some(listen) => {
            let token = config.check_screen_token().map_err(DaemonError::Setup)?;
            Some(tokio::spawn(crate::screen::serve(
                crate::screen::ServerSettings { listen, token },
                screen,
                store.clone(),
                metrics,
                clock.clone(),
                stopping.clone(),
                watch::channel(None).0,
            )))
        }
        None => {
            let _ = store
                .set_part_state(
                    "screen",
                    "off ([screen] listen = \"\")".into(),
                    clock.now().wall_ms,
                )
                .await;
            None
        }
    };
    info!(readers = config.readers.len(), egym = %config.egym.base_url, "gym-checkin running");
    let notifier = Notifier::from_env().map(Arc::new);
    if let Some(notifier) = &notifier {
        notifier.send("READY=1");
    }
    let reporter = tokio::spawn(report(
        store.clone(),
        clock.clone(),
        notifier.clone(),
        config.readers.len(),
        stopping.clone(),
    ));
    let watchdog = match (&notifier, notify::watchdog_interval()) {
        (Some(notifier), Some(interval)) => Some(tokio::spawn(watchdog(
            liveness,
            notifier.clone(),
            interval,
            stopping.clone(),
        ))),
        _ => None,
    };

    shutdown.await;
    info!("stopping");
    if let Some(notifier) = &notifier {
        notifier.send("STOPPING=1");
    }
    let _ = stop.send(true);
    let _ = reporter.await;
    if let Some(watchdog) = watchdog {
        let _ = watchdog.await;
    }
    while readers.join_next().await.is_some() {}
    let _ = recorder.await;
    let _ = pruner.await;
    let _ = delivery.await;
    let _ = timekeeper.await;
    if let Some(server) = screen_server {
        let _ = server.await;
    }
    if let Err(e) = store.checkpoint().await {
        warn!(error = %e, "cannot checkpoint the database; its write-ahead log keeps the data");
    }
    info!("stopped");
    Ok(())
}

/// Registers this run's boot, reads the clock's trust, says both, and returns the clock.
async fn start_clock(store: &Store, config: &Config) -> Result<Clock, DaemonError> {
    let source: Arc<dyn TimeSource> = Arc::new(SystemSource);
    let rule = config.clock.trusted_when.clone();
    let (reading, trust) = clock::boot_reading(source.as_ref(), &rule);
    let boot_id = reading.boot_id.clone();
    let (boot, anchor) = store.register_boot(reading).await?;
    let clock = Clock::new(source, rule, boot, trust, anchor);
    let trust = clock.trust();
    let now = clock.now();
    store
        .set_clock_state(trust.clone(), now.wall_ms, now.steady_ms)
        .await?;
    if trust.trusted {
        info!(clock = "trusted", source = trust.source.as_str(), boot = %boot_id, "clock trusted: {}", trust.detail);
    } else {
        warn!(clock = "untrusted", source = trust.source.as_str(), boot = %boot_id, "clock NOT trusted: {}. Taps are recorded and held from EGYM until it is; they are then sent with the time they were made", trust.detail);
    }
    if trust.source == clock::TrustSource::Undetermined {
        warn!("clock trusted without proof: {}", trust.detail);
    }
    if let Some(warning) = clock.never_trusted_warning() {
        error!(clock = "untrusted", "{warning}");
    }
    Ok(clock)
}

/// Feeds systemd's watchdog while every task answers; names the ones that do not.
async fn watchdog(
    liveness: Liveness,
    notifier: Arc<Notifier>,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut said_stuck = false;
    loop {
        let silent = liveness.check_and_ask();
        if silent.is_empty() {
            notifier.send("WATCHDOG=1");
            said_stuck = false;
        } else if !std::mem::replace(&mut said_stuck, true) {
            error!(tasks = %silent.join(", "), "tasks are not answering; the watchdog is no longer fed, so systemd restarts the service");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Keeps systemd's STATUS= line current, and logs a summary while events are pending.
async fn report(
    store: Store,
    clock: Clock,
    notifier: Option<Arc<Notifier>>,
    n_readers: usize,
    mut stopping: watch::Receiver<bool>,
) {
    let mut last_summary: Option<tokio::time::Instant> = None;
    loop {
        if let Ok(status) = store.status().await {
            let now = clock.now().steady_ms;
            let open = status.events.pending + status.events.unknown_tag;
            let oldest_s = status
                .oldest_pending_steady_ms
                .map(|t| (now - t).max(0) / 1000);
            let connected = status.readers.iter().filter(|r| r.connected).count();
            let delivery = match (
                &status.pause_reason,
                status.last_error_at_ms > status.last_delivery_at_ms && open > 0,
            ) {
                (Some(reason), _) => format!("delivery PAUSED ({reason})"),
                (None, true) => "delivery retrying".to_string(),
                (None, false) => "delivery ok".to_string(),
            };
            let oldest = oldest_s
                .map(|s| format!(", oldest {}", clock::duration_text(s * 1000)))
                .unwrap_or_default();
            let held = if clock.trust().trusted {
                String::new()
            } else {
                format!(", clock NOT TRUSTED ({} taps held)", status.clock.held)
            };
            let line = format!(
                "{} pending{oldest}, readers {connected}/{n_readers}, {delivery}{held}",
                status.events.pending
            );
            if let Some(notifier) = &notifier {
                notifier.send(&format!("STATUS={line}"));
            }
            let due = last_summary.is_none_or(|at| at.elapsed() >= SUMMARY_INTERVAL);
            if open > 0 && due {
                last_summary = Some(tokio::time::Instant::now());
                info!(
                    outbox_pending = status.events.pending,
                    outbox_unknown_tag = status.events.unknown_tag,
                    oldest_pending_s = oldest_s,
                    last_error = status.last_error.as_deref().unwrap_or("none"),
                    "outbox summary: {line}"
                );
            } else if open == 0 {
                last_summary = None;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(STATUS_INTERVAL) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Deletes delivered events older than `keep-delivered`, while the wall clock is trusted (an
/// untrusted one could make everything look old).
async fn prune(
    store: Store,
    clock: Clock,
    keep_delivered: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let now = clock.now();
        let before_ms = now.wall_ms - keep_delivered.as_millis() as i64;
        if now.wall == clock::WallTime::Trusted {
            loop {
                match store.prune_delivered(before_ms, PRUNE_BATCH).await {
                    Ok(n) if n == PRUNE_BATCH => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(e) => {
                        warn!(error = %e, "cannot prune delivered events");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called (inside the
/// runtime), not when the future is first awaited: a stop asked for while the service is still
/// starting is a clean stop once it has started.
pub fn termination_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            error!("cannot listen for SIGTERM/SIGINT; stop the service with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    }
}
