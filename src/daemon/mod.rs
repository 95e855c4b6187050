//! The service: built from the configuration, then run until it is stopped.
//!
//! [`Service::build`] does everything that can fail before a single task starts: it takes the
//! database's lock (one service per database), opens and migrates the database, registers the
//! boot with the clock, and makes the EGYM client, the screen's token and the control socket. A
//! bad setup ends there, with nothing left half-running, and says whether the configuration is
//! at fault ([`SetupError::exit_code`]).
//!
//! [`Service::run`] starts one task per reader, the recorder, the delivery worker, the pruner,
//! the timekeeper, the status reporter, the screen and the control socket, and supervises them
//! ([`supervise`]): none may end before the stop. Under systemd it reports readiness and status,
//! and feeds the watchdog while every watched task answers.

mod notify;
pub mod pruner;
mod supervise;
mod timekeeper;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::timer::{self, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::clock::{self, Clock, SystemSource, TimeSource};
use crate::config::Config;
use crate::control::{
    self, CardReply, EnrolledReply, MemberReply, Reply, Request, ServiceInfo, StatusReply,
};
use crate::delivery::{self, Worker};
use crate::egym::{self, ApiKey};
use crate::enrolment::{Claims, Enroller, Holder, Refused};
use crate::events::{CardAwaited, Listeners};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::reader::{Driver, Reader, Source};
use crate::recorder::{Recorder, RecorderHandle};
use crate::screen::Screen;
use crate::store::{DatabaseLock, LockError, Store, StoreError};
use notify::Notifier;
pub use pruner::{PRUNE_BATCH, Retention};
use supervise::Tasks;
pub use supervise::install_panic_hook;

/// Taps read but not yet decided, at most; a reader waits when the recorder is this far behind.
const TAP_QUEUE: usize = 1024;
/// systemd's STATUS= line is refreshed this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// While events are pending, a summary line is logged this often.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);
/// At a stop, tasks get this long to finish (the unit's `TimeoutStopSec=` is 15 s).
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Exit code for a configuration that cannot work (EX_CONFIG from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code when another service holds the database (EX_TEMPFAIL, which mail servers give for
/// a lock held by another process). The unit does not restart on it, so a service started while
/// one runs by hand does not loop.
pub const EXIT_LOCKED: u8 = 75;

/// Why the service could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// The configuration cannot work as it is (exit 78): each problem with its key.
    Config(Vec<String>),
    /// Another service runs on this database (exit 75).
    Locked(LockError),
    /// Anything else (exit 1).
    Failed(String),
}

impl SetupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Config(_) => EXIT_CONFIG,
            SetupError::Locked(_) => EXIT_LOCKED,
            SetupError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Config(problems) => {
                let n = problems.len();
                write!(
                    f,
                    "the configuration cannot work ({n} problem{}): {}",
                    if n == 1 { "" } else { "s" },
                    problems.join("; ")
                )
            }
            SetupError::Locked(e) => write!(f, "{e}"),
            SetupError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SetupError {}

impl From<StoreError> for SetupError {
    fn from(e: StoreError) -> Self {
        SetupError::Failed(e.to_string())
    }
}

/// Why the service stopped other than when asked.
#[derive(Debug)]
pub enum RunError {
    /// A task ended before the stop: which, and how.
    TaskEnded { task: String, how: String },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::TaskEnded { task, how } => write!(
                f,
                "task {task} {how} while the service was running; the service stops so that \
                 systemd starts it again"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// A service set up and ready to run.
#[derive(Debug)]
pub struct Service {
    config: Config,
    sources: Vec<Source>,
    /// Held until the service has stopped.
    lock: DatabaseLock,
    store: Store,
    clock: Clock,
    screen: Screen,
    screen_token: Option<String>,
    time_zone: jiff::tz::TimeZone,
    control: Option<control::Listener>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    worker: Worker,
    corrections_in: mpsc::UnboundedReceiver<crate::visit::Correction>,
    listeners: Listeners,
    enroller: Enroller,
    claims: Claims,
}

impl Service {
    /// Sets up everything that can fail, in order, before any task starts. `sources` overrides
    /// where a reader's bytes come from (by position in `config.readers`); readers without one
    /// open their configured device.
    pub async fn build(
        config: Config,
        api_key: ApiKey,
        mut sources: Vec<Option<Source>>,
    ) -> Result<Service, SetupError> {
        sources.resize_with(config.readers.len(), || None);
        let sources: Vec<Source> = config
            .readers
            .iter()
            .zip(sources)
            .map(|(reader, source)| source.unwrap_or_else(|| Source::for_config(reader)))
            .collect();
        let mut problems = Vec::new();
        for (i, (reader, source)) in config.readers.iter().zip(&sources).enumerate() {
            if matches!(reader.driver, Driver::Stdin)
                && matches!(source, Source::Stdin)
                && let Some(problem) = crate::reader::stdin_problem()
            {
                problems.push(format!("readers[{i}].driver: {problem}"));
            }
        }
        if let Err(problem) = crate::store::check_path(&config.store.path) {
            problems.push(format!("store.path: {problem}"));
        }
        let screen_token = config.check_screen_token().unwrap_or_else(|problem| {
            problems.push(problem);
            None
        });
        let client = egym::Client::new(
            &config.egym.base_url,
            config.egym.request_timeout,
            config.egym.rate_limit_per_second,
            config.egym.rate_limit_burst,
        )
        .map_err(|problem| problems.push(format!("egym.base-url: {problem}")));
        if !problems.is_empty() {
            return Err(SetupError::Config(problems));
        }
        let Ok(client) = client else {
            unreachable!("a client that could not be made is a problem above");
        };

        let lock = DatabaseLock::acquire(&config.store.path).map_err(|e| match e {
            LockError::Held { .. } => SetupError::Locked(e),
            LockError::Io { .. } => SetupError::Failed(e.to_string()),
        })?;
        let store = Store::open(&config.store.path).await?;
        info!(database = %config.store.path.display(), "database open");
        let clock = start_clock(&store, &config).await?;
        store
            .reset_readers(
                config.readers.iter().map(|r| r.name.clone()).collect(),
                clock.now().wall,
            )
            .await?;
        // The socket is for `status`: without it the service works, and says so.
        let control = config
            .service
            .socket
            .as_deref()
            .and_then(|path| match control::bind(path) {
                Ok(listener) => Some(listener),
                Err(e) => {
                    warn!(error = %e, "the control socket is off: `gym-checkin status` reads the database instead, which needs its owner (sudo)");
                    None
                }
            });
        let metrics = Arc::new(Metrics::default());
        let client = client.with_metrics(metrics.clone());
        let screen = Screen::new(
            clock.clone(),
            crate::screen::MemberScreenSettings {
                show_refusal_reasons: config.screen.show_refusal_reasons,
            },
        );
        // The box's local time: `closing-time` is read in it, and the staff page shows it.
        let time_zone = jiff::tz::TimeZone::system();
        let listeners = Listeners::new(Arc::new(screen.clone()), metrics.clone())
            .with_full_tags(config.log.full_tags);
        if config.log.full_tags {
            warn!(
                "[log] full-tags = true: the journal gets whole card ids and the renderings of unknown cards; turn it off once the readers are set up"
            );
        }
        // Staff enrolling a card wait at the desk, often with the member: their requests go
        // before a backlog's, from the same bucket.
        let (enrolled_cards, enrolled_cards_in) = mpsc::unbounded_channel();
        let enroller = Enroller::new(
            client.with_priority(egym::rate_limit::Priority::Member),
            config.egym.api_key.clone(),
            api_key.clone(),
            config
                .readers
                .iter()
                .map(|r| (r.name.clone(), r.egym_tag_format))
                .collect(),
            listeners.clone(),
        )
        .with_store(store.clone())
        .with_delivery(enrolled_cards);
        let claims = Claims::default();
        // A member at the door is greeted by name while the screen shows the answer to their
        // tap: delivery then asks EGYM for the name even when the account is cached.
        let greeting = match config.screen.listen {
            Some(_) => {
                let screen = screen.clone();
                delivery::Greeting::when(move |event_id| screen.wants_name(event_id))
            }
            None => delivery::Greeting::default(),
        };
        let (recorded, recorded_events) = watch::channel(0);
        let (corrections, corrections_in) = mpsc::unbounded_channel();
        let auto_checkout = (config.visits.auto_checkout_after.is_some()
            || config.visits.closing_time.is_some())
        .then(|| crate::visit::AutoCheckoutPolicy {
            after: config.visits.auto_checkout_after,
            closing_time: config.visits.closing_time,
            time_zone: time_zone.clone(),
        });
        let recorder = Recorder::new(
            store.clone(),
            clock.clone(),
            config.visits.repeat_window,
            auto_checkout,
            Arc::new(recorded),
            listeners.clone(),
        )
        .await?
        .with_claims(claims.clone());
        let pruner_listeners = listeners.clone();
        let worker = Worker::new(
            store.clone(),
            client,
            clock.clone(),
            delivery::Settings {
                rate_per_second: config.egym.rate_limit_per_second,
                account_cache_ttl: config.egym.account_cache_ttl,
                unknown_tag_retry_window: config.egym.unknown_tag_retry_window,
                admission_window: config.wellpass.admission_window,
                late_admission: config.wellpass.late,
                greeting,
            },
            config.egym.api_key.clone(),
            api_key,
            delivery::RecorderLinks {
                listeners,
                recorded: recorded_events,
                corrections,
            },
        )
        .hearing_enrolments(enrolled_cards_in);
        Ok(Service {
            config,
            sources,
            lock,
            store,
            clock,
            screen,
            screen_token,
            time_zone,
            control,
            metrics,
            recorder,
            worker,
            corrections_in,
            listeners: pruner_listeners,
            enroller,
            claims,
        })
    }

    /// Runs the service until `shutdown` completes (a clean stop), or until one of its tasks
    /// ends before that (an error naming the task).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let Service {
            config,
            sources,
            lock,
            store,
            clock,
            screen,
            screen_token,
            time_zone,
            control,
            metrics,
            recorder,
            worker,
            corrections_in,
            listeners,
            enroller,
            claims,
        } = self;
        let recorder_handle = recorder.requests();
        let (stop, stopping) = watch::channel(false);
        let (taps, tap_queue) = mpsc::channel(TAP_QUEUE);

        let mut liveness = Liveness::default();
        let mut tasks = Tasks::default();
        for (reader, source) in config.readers.iter().zip(sources) {
            let name = format!("reader {}", reader.name);
            let pulse = liveness.register(name.clone());
            tasks.spawn(
                name,
                Reader::new(reader.clone(), source, clock.clone()).run(
                    taps.clone(),
                    stopping.clone(),
                    pulse,
                ),
            );
        }
        drop(taps);
        tasks.spawn(
            "recorder",
            recorder.run(
                tap_queue,
                corrections_in,
                stopping.clone(),
                liveness.register("recorder"),
            ),
        );
        tasks.spawn(
            "delivery",
            worker.run(stopping.clone(), liveness.register("delivery")),
        );
        tasks.spawn(
            "pruner",
            pruner::run(
                pruner::Pruner {
                    store: store.clone(),
                    clock: clock.clone(),
                    recorder: recorder_handle.clone(),
                    retention: retention(&config),
                    listeners,
                },
                stopping.clone(),
            ),
        );
        tasks.spawn(
            "timekeeper",
            timekeeper::run(clock.clone(), store.clone(), stopping.clone()),
        );
        // The screen is optional: it runs beside the tasks above, outside the watchdog's
        // checks, and nothing waits for it.
        match config.screen.listen {
            Some(listen) => tasks.spawn(
                "screen",
                crate::screen::serve(
                    crate::screen::ServerSettings {
                        listen,
                        token: screen_token,
                        staff_history: config.screen.staff_history,
                        enroller: Some(enroller.clone()),
                        time_zone,
                    },
                    screen,
                    store.clone(),
                    metrics,
                    clock.clone(),
                    stopping.clone(),
                    watch::channel(None).0,
                ),
            ),
            None => {
                let _ = store
                    .set_part_state(
                        "screen",
                        "off ([screen] listen = \"\")".into(),
                        clock.now().wall,
                    )
                    .await;
            }
        }
        if let Some(listener) = control {
            let answer = answer_control(
                store.clone(),
                clock.clone(),
                recorder_handle.clone(),
                config.store.path.clone(),
                enroller,
                claims,
            );
            tasks.spawn(
                "control socket",
                control::serve(listener, answer, stopping.clone()),
            );
        }
        info!(readers = config.readers.len(), egym = %config.egym.base_url, "gym-checkin running");
        let notifier = Notifier::from_env().map(Arc::new);
        if let Some(notifier) = &notifier {
            notifier.send("READY=1");
        }
        tasks.spawn(
            "status reporter",
            report(
                store.clone(),
                clock.clone(),
                notifier.clone(),
                config.readers.len(),
                stopping.clone(),
            ),
        );
        if let (Some(notifier), Some(interval)) = (&notifier, notify::watchdog_interval()) {
            tasks.spawn(
                "watchdog",
                watchdog(liveness, notifier.clone(), interval, stopping.clone()),
            );
        }

        // A stop asked for wins over a task that ends at the same moment (the demo's reader
        // ends when its input does, right after the demo asks to stop).
        let ended = tokio::select! {
            biased;
            () = shutdown => None,
            Some(ended) = tasks.next_ended() => Some(ended),
        };
        let result = match ended {
            None => {
                info!("stopping");
                Ok(())
            }
            Some(ended) => {
                let how = ended.failure.unwrap_or_else(|| "ended".into());
                error!(task = %ended.task, how = %how, "task {} {how} while the service was running; the service stops, and systemd starts it again", ended.task);
                Err(RunError::TaskEnded {
                    task: ended.task.to_string(),
                    how,
                })
            }
        };
        if let Some(notifier) = &notifier {
            notifier.send("STOPPING=1");
        }
        let _ = stop.send(true);
        let late = tasks.wait_all(Instant::now() + STOP_WITHIN).await;
        if !late.is_empty() {
            let late: Vec<&str> = late.iter().map(|t| &**t).collect();
            warn!(tasks = %late.join(", "), "tasks did not stop within {} s and were cut short", STOP_WITHIN.as_secs());
        }
        if let Err(e) = store.checkpoint().await {
            warn!(error = %e, "cannot checkpoint the database; its write-ahead log keeps the data");
        }
        info!("stopped");
        drop(lock);
        result
    }
}

/// Builds the service and runs it until `shutdown` completes. `sources` as for
/// [`Service::build`].
pub async fn run(
    config: Config,
    api_key: ApiKey,
    sources: Vec<Option<Source>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let service = Service::build(config, api_key, sources).await?;
    Ok(service.run(shutdown).await?)
}

/// Why [`run`] failed: in setting up, or while running.
#[derive(Debug)]
pub enum DaemonError {
    Setup(SetupError),
    Run(RunError),
}

impl DaemonError {
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Setup(e) => e.exit_code(),
            DaemonError::Run(_) => 1,
        }
    }
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Setup(e) => write!(f, "{e}"),
            DaemonError::Run(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<SetupError> for DaemonError {
    fn from(e: SetupError) -> Self {
        DaemonError::Setup(e)
    }
}

impl From<RunError> for DaemonError {
    fn from(e: RunError) -> Self {
        DaemonError::Run(e)
    }
}

/// How long each kind of personal data is kept, from the configuration.
pub fn retention(config: &Config) -> Retention {
    Retention {
        delivered: config.store.keep_delivered,
        rejected: config.store.keep_rejected,
        unknown: config.store.keep_unknown,
        account_cache: config.egym.account_cache_ttl,
        closed_visits: config.visits.keep_closed,
    }
}

/// Whether the socket's peer may ask about one member's data (`forget`, `export`): root, and
/// the service's own user.
fn may_ask_about_members(peer: &control::Peer) -> bool {
    // SAFETY: geteuid cannot fail.
    let own = unsafe { libc::geteuid() };
    peer.uid == 0 || peer.uid == own
}

/// The control socket's answers: the status, read on the service's own connection and stamped
/// with the service's clock; what the box holds about a card or member, its erasure (through
/// the recorder, which forgets what it holds in memory too) and its export; and enrolments for
/// `gym-checkin enrol`, made with the service's EGYM client and logged with who asked (the
/// peer's user and process).
fn answer_control(
    store: Store,
    clock: Clock,
    recorder: RecorderHandle,
    database: PathBuf,
    enroller: Enroller,
    claims: Claims,
) -> impl Fn(Request, control::Peer) -> std::pin::Pin<Box<dyn Future<Output = Reply> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |request, peer| {
        let (store, clock, recorder, database) = (
            store.clone(),
            clock.clone(),
            recorder.clone(),
            database.clone(),
        );
        let (enroller, claims) = (enroller.clone(), claims.clone());
        Box::pin(async move {
            let service = ServiceInfo {
                pid: std::process::id(),
                version: crate::metrics::VERSION.to_string(),
                database: database.clone(),
            };
            if let Some(asked) = request.database() {
                if asked != database {
                    return Reply::OtherDatabase(service);
                }
                if !may_ask_about_members(&peer) {
                    return Reply::Denied(format!(
                        "`gym-checkin {}` works on a member's data: it needs root (`sudo \
                         gym-checkin {} ...`); uid {} may ask the service for its status only",
                        request.name(),
                        request.name(),
                        peer.uid
                    ));
                }
            }
            match request {
                Request::EnrolPreview {
                    reader,
                    member,
                    rfid,
                } => {
                    let previewed = match rfid {
                        Some(rfid) => enroller.preview(&reader, &rfid, &member).await.map(|p| {
                            MemberReply::of(p.member, Some(p.card), p.holder == Holder::ThisMember)
                        }),
                        None => enroller
                            .find_member(&member)
                            .await
                            .map(|m| MemberReply::of(m, None, false)),
                    };
                    match previewed {
                        Ok(reply) => Reply::Member(reply),
                        Err(refused) => Reply::refused(&refused),
                    }
                }
                Request::EnrolRead { reader, within_s } => {
                    read_for_enrolment(&enroller, &claims, &reader, within_s).await
                }
                Request::Enrol {
                    reader,
                    rfid,
                    member,
                    account_id,
                } => {
                    let by = format!(
                        "user {} (pid {}) on the control socket",
                        crate::console::name_of_user(peer.uid),
                        peer.pid.map_or("?".into(), |p| p.to_string())
                    );
                    match enroller
                        .enrol(&reader, &rfid, &member, &account_id, &by)
                        .await
                    {
                        Ok(done) => Reply::Enrolled(EnrolledReply {
                            card: CardReply::of(done.card),
                            account_id: done.account_id,
                            already: done.already,
                            waiting: done.waiting,
                        }),
                        Err(refused) => Reply::refused(&refused),
                    }
                }
                Request::Status => match store.status().await {
                    Ok(data) => {
                        let now = clock.now();
                        Reply::Status(Box::new(StatusReply {
                            service,
                            data,
                            wall: now.wall,
                            steady: now.steady,
                        }))
                    }
                    Err(e) => Reply::Failed(format!("cannot read the status: {e}")),
                },
                Request::Holdings { subject, .. } => match store.holdings(subject).await {
                    Ok(held) => Reply::Holdings(service, held),
                    Err(e) => Reply::Failed(format!("cannot read the database: {e}")),
                },
                Request::Forget {
                    subject,
                    open_confirmed,
                    ..
                } => match recorder
                    .erase(subject, open_confirmed, Some(peer.uid))
                    .await
                {
                    Ok(erased) => Reply::Erased(service, erased),
                    Err(crate::store::EraseError::Changed(now)) => Reply::Changed(service, now),
                    Err(e) => Reply::Failed(format!("nothing was erased: {e}")),
                },
                Request::Export { subject, .. } => match store.export(subject).await {
                    Ok(data) => Reply::Exported(Box::new(control::ExportReply {
                        service,
                        data,
                        steady: clock.now().steady,
                    })),
                    Err(e) => Reply::Failed(format!("cannot read the database: {e}")),
                },
            }
        })
    }
}

/// Waits at most `within_s` seconds for the next card presented on `reader` (which the service
/// reads), and hands it to the command that asked instead of recording it as a tap.
async fn read_for_enrolment(
    enroller: &Enroller,
    claims: &Claims,
    reader: &str,
    within_s: u64,
) -> Reply {
    let readers = enroller.reader_names();
    if !readers.iter().any(|r| r == reader) {
        return Reply::refused(&Refused::NoSuchReader {
            reader: reader.to_string(),
            configured: readers,
        });
    }
    let wait = Duration::from_secs(within_s).min(control::MAX_READ_WAIT);
    let Some(claim) = claims.claim(reader) else {
        return Reply::Failed(format!(
            "another enrolment is waiting for a card on reader {reader}; try again once it is done"
        ));
    };
    // Given up however this ends without a card (the time is over, or the command that asked
    // has gone, which drops this future): the reader's next card is a tap again.
    let mut waiting = Waiting {
        claims,
        enroller,
        reader,
        number: claim.number,
        got_one: false,
    };
    CardAwaited {
        reader: reader.to_string(),
        waiting: true,
        within_s: wait.as_secs(),
    }
    .emit(enroller.listeners());
    match timer::timeout(wait, claim.card).await {
        Ok(Ok(card)) => {
            waiting.got_one = true;
            Reply::Card(CardReply::of(card))
        }
        Ok(Err(_)) | Err(_) => Reply::Failed(format!(
            "no card was presented on reader {reader} within {} s",
            wait.as_secs()
        )),
    }
}

/// A card waited for on a reader for an enrolment; given up when dropped without one.
struct Waiting<'a> {
    claims: &'a Claims,
    enroller: &'a Enroller,
    reader: &'a str,
    number: u64,
    got_one: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.got_one {
            self.claims.release(self.reader, self.number);
            CardAwaited {
                reader: self.reader.to_string(),
                waiting: false,
                within_s: 0,
            }
            .emit(self.enroller.listeners());
        }
    }
}

/// Registers this run's boot, reads the clock's trust, says both, and returns the clock.
async fn start_clock(store: &Store, config: &Config) -> Result<Clock, StoreError> {
    let source: Arc<dyn TimeSource> = Arc::new(SystemSource);
    let rule = config.clock.trusted_when.clone();
    let (reading, trust) = clock::boot_reading(source.as_ref(), &rule);
    let boot_id = reading.boot_id.clone();
    let (boot, anchor) = store.register_boot(reading).await?;
    let clock = Clock::new(source, rule, boot, trust, anchor);
    let trust = clock.trust();
    let now = clock.now();
    store
        .set_clock_state(trust.clone(), now.wall, now.steady)
        .await?;
    if trust.trusted {
        info!(clock = "trusted", source = trust.source.as_str(), boot = %boot_id, "clock trusted: {}", trust.detail);
    } else {
        warn!(clock = "untrusted", source = trust.source.as_str(), boot = %boot_id, "clock NOT trusted: {}. {}", trust.detail, clock.while_untrusted());
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
            () = timer::sleep(interval) => {}
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
    let mut last_summary: Option<Instant> = None;
    loop {
        if let Ok(status) = store.status().await {
            let now = clock.now().steady;
            let open = status.events.pending
                + status.events.waiting_for_enrolment
                + status.events.unknown_tag;
            let oldest = status.oldest_pending.map(|t| now.since(t));
            let oldest_s = oldest.map(|age| age.as_secs());
            let connected = status.readers.iter().filter(|r| r.connected).count();
            let delivery = match (
                &status.pause_reason,
                // Taps of a card EGYM does not know wait for its enrolment, not for delivery.
                status.last_error_at > status.last_delivery_at && status.events.pending > 0,
            ) {
                (Some(reason), _) => format!("delivery PAUSED ({reason})"),
                (None, true) => "delivery retrying".to_string(),
                (None, false) => "delivery ok".to_string(),
            };
            let oldest = oldest
                .map(|age| format!(", oldest {}", clock::duration_text(age)))
                .unwrap_or_default();
            let held = if clock.trust().trusted {
                String::new()
            } else {
                format!(", clock NOT TRUSTED ({} taps held)", status.clock.held)
            };
            let waiting = match status.events.waiting_for_enrolment {
                0 => String::new(),
                n => format!(", {n} waiting for enrolment"),
            };
            let line = format!(
                "{} pending{oldest}{waiting}, readers {connected}/{n_readers}, {delivery}{held}",
                status.events.pending
            );
            if let Some(notifier) = &notifier {
                notifier.send(&format!("STATUS={line}"));
            }
            let due = last_summary.is_none_or(|at| at.elapsed() >= SUMMARY_INTERVAL);
            if open > 0 && due {
                last_summary = Some(Instant::now());
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
            () = timer::sleep(STATUS_INTERVAL) => {}
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
