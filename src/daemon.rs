//! Wiring: opens the database, starts one task per reader, the recorder, the delivery worker
//! and the pruner, and stops them all when the shutdown future completes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::clock::now_ms;
use crate::config::{ApiKey, Config};
use crate::delivery::{self, Worker};
use crate::egym;
use crate::reader::{Reader, Source};
use crate::recorder::Recorder;
use crate::store::{Store, StoreError};

/// Taps read but not yet decided, at most; a reader waits when the recorder is this far behind.
const TAP_QUEUE: usize = 1024;
/// Delivered events past `keep-delivered` are deleted this often, in small batches.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: usize = 500;

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
    let store = Store::open(&config.store.path)?;
    info!(database = %config.store.path.display(), "database open");
    let client = egym::Client::new(
        &config.egym.base_url,
        config.egym.request_timeout,
        config.egym.rate_limit_per_second,
        config.egym.rate_limit_burst,
    )
    .map_err(DaemonError::Setup)?;
    if config.visits.auto_checkout_after.is_some() || config.visits.closing_time.is_some() {
        warn!(
            "visits.auto-checkout-after and visits.closing-time are not acted on by this version; visits stay open until the member taps out"
        );
    }

    let (stop, stopping) = watch::channel(false);
    let recorded = Arc::new(Notify::new());
    let (taps, tap_queue) = mpsc::channel(TAP_QUEUE);
    let recorder =
        Recorder::new(store.clone(), config.visits.repeat_window, recorded.clone()).await?;

    let mut readers = JoinSet::new();
    sources.resize_with(config.readers.len(), || None);
    for (reader, source) in config.readers.iter().zip(sources) {
        let source = source.unwrap_or_else(|| Source::for_config(reader));
        readers.spawn(Reader::new(reader.clone(), source).run(taps.clone(), stopping.clone()));
    }
    drop(taps);
    let recorder = tokio::spawn(recorder.run(tap_queue, stopping.clone()));

    let settings = delivery::Settings {
        rate_per_second: config.egym.rate_limit_per_second,
        account_cache_ttl: config.egym.account_cache_ttl,
        unknown_tag_retry_window: config.egym.unknown_tag_retry_window,
    };
    let worker = Worker::new(
        store.clone(),
        client,
        settings,
        config.egym.api_key.clone(),
        api_key,
        recorded,
    );
    let delivery = tokio::spawn(worker.run(stopping.clone()));
    let pruner = tokio::spawn(prune(
        store.clone(),
        config.store.keep_delivered,
        stopping.clone(),
    ));
    info!(readers = config.readers.len(), egym = %config.egym.base_url, "gym-checkin running");

    shutdown.await;
    info!("stopping");
    let _ = stop.send(true);
    while readers.join_next().await.is_some() {}
    let _ = recorder.await;
    let _ = pruner.await;
    let _ = delivery.await;
    if let Err(e) = store.checkpoint().await {
        warn!(error = %e, "cannot checkpoint the database; its write-ahead log keeps the data");
    }
    info!("stopped");
    Ok(())
}

async fn prune(store: Store, keep_delivered: Duration, mut stopping: watch::Receiver<bool>) {
    loop {
        let before_ms = now_ms() - keep_delivered.as_millis() as i64;
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
        tokio::select! {
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot listen for SIGTERM/SIGINT; stop the service with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}
