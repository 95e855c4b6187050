//! The `gym-checkin` command line: logging set-up, subcommands, exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use gym_checkin::config::{Config, DEFAULT_CONFIG_PATH};
use gym_checkin::console;
use gym_checkin::daemon::{DaemonError, EXIT_CONFIG, EXIT_LOCKED, Service, SetupError};

/// Exit code for a command line that is wrong: as the argument parser gives it, and for a
/// `--reader` that names no configured reader.
const EXIT_USAGE: u8 = 2;

/// `--version`: the version, the commit it was built from, and the target it was built for.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GYM_CHECKIN_COMMIT"),
    ", ",
    env!("GYM_CHECKIN_TARGET"),
    ")"
);

/// Turns RFID taps at a gym's front desk into EGYM check-ins and check-outs.
#[derive(Debug, Parser)]
#[command(version = VERSION, about)]
struct Cli {
    /// The configuration file.
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Run,
    /// Load and validate the configuration; print every problem with its key path.
    CheckConfig {
        /// Also make one request to EGYM: is the API key accepted, refused, or is EGYM
        /// unreachable?
        #[arg(long)]
        online: bool,
    },
    /// What the service is doing: events by state, delivery, readers. Asks the running service,
    /// or reads the database when it is not running.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print what the readers read, with every rendering of each id and the rfid that would be
    /// sent. Records nothing, calls nobody.
    Listen {
        /// Only this reader (by its name in the configuration).
        #[arg(long)]
        reader: Option<String>,
        /// Also write the raw bytes the reader sends (and what it is asked), with timing, to
        /// this file: a capture that replays as a test. Needs --reader when several readers are
        /// configured.
        #[arg(long, value_name = "FILE")]
        capture: Option<PathBuf>,
    },
    /// The whole pipeline on this machine: a stand-in EGYM, a typed reader, a temporary database.
    Demo,
    /// Read one card of a known member and print the reader settings under which it matches
    /// what EGYM has enrolled for that member (exit 0), or both sides (exit 1). Records and posts
    /// nothing.
    Calibrate {
        /// The reader, by its name in the configuration.
        #[arg(long)]
        reader: String,
        /// The member's e-mail address, or membership id.
        #[arg(long)]
        member: String,
    },
    /// Erase everything the box holds about a card or a member: events (taps not yet delivered
    /// to EGYM too, after a confirmation), visit state, cached lookups, and what the running
    /// service holds in memory. Through the running service when there is one. Needs root.
    Forget {
        #[command(flatten)]
        subject: SubjectArgs,
        /// Do not ask: erase at once (for scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Print, as JSON, everything the box holds about a card or a member. Needs root.
    Export {
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Add a card to a member at EGYM, read from the reader or given with --tag; the taps
    /// waiting on the card are then delivered. Goes through the running service when there is
    /// one.
    Enrol {
        /// The reader, by its name in the configuration: the card is read there, and enrolled
        /// as that reader sends it to EGYM.
        #[arg(long)]
        reader: String,
        /// The member's e-mail address, or membership id.
        #[arg(long)]
        member: String,
        /// The card's number as the staff page shows it (0x and hex), instead of reading it.
        #[arg(long, value_name = "RENDERING")]
        tag: Option<String>,
        /// Enrol without asking for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Whose data: one card, or every card the box knows as one member's.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// The card's rfid, in hex as `status`, the staff page and EGYM show it (0x0C000621A5).
    #[arg(long, value_name = "RENDERING")]
    tag: Option<String>,
    /// The member's account id at EGYM (as an export shows it).
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: Option<String>,
}

impl SubjectArgs {
    fn subject(&self) -> Result<gym_checkin::store::Subject, String> {
        use gym_checkin::store::Subject;
        match (&self.tag, &self.account) {
            (Some(tag), _) => Subject::card(tag),
            (None, Some(account)) => Subject::account(account),
            (None, None) => Err("name a card (--tag) or a member (--account)".into()),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` exit 0, usage errors 2; a closed standard output is no
            // reason to panic.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    init_logging();
    gym_checkin::daemon::install_panic_hook();
    match cli.command {
        Command::CheckConfig { online } => check_config(&cli.config, online),
        Command::Run => run(&cli.config),
        Command::Status { json } => status(&cli.config, json),
        Command::Listen { reader, capture } => {
            listen(&cli.config, reader.as_deref(), capture.as_deref())
        }
        Command::Demo => with_runtime(|runtime| match runtime.block_on(gym_checkin::demo::run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                console::complain(&e.to_string());
                ExitCode::from(e.exit_code())
            }
        }),
        Command::Calibrate { reader, member } => calibrate(&cli.config, &reader, &member),
        Command::Forget { subject, yes } => forget(&cli.config, &subject, yes),
        Command::Export { subject } => export(&cli.config, &subject),
        Command::Enrol {
            reader,
            member,
            tag,
            yes,
        } => enrol(&cli.config, &reader, member, tag, yes),
    }
}

/// The configuration, and whose data `forget` or `export` is asked about.
fn config_and_subject(
    path: &Path,
    args: &SubjectArgs,
) -> Result<(Config, gym_checkin::store::Subject), ExitCode> {
    let config = load_config(path)?;
    let subject = args.subject().map_err(|e| {
        console::complain(&e);
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok((config, subject))
}

/// `forget`: says what the box holds, asks (unless `yes`), erases; asks again if taps came in
/// meanwhile.
fn forget(path: &Path, args: &SubjectArgs, yes: bool) -> ExitCode {
    use gym_checkin::privacy::{self, Forgotten};
    let (config, subject) = match config_and_subject(path, args) {
        Ok(found) => found,
        Err(code) => return code,
    };
    with_runtime(|runtime| {
        runtime.block_on(async {
            let mut confirmed = None;
            if !yes {
                let (held, via) = match privacy::holdings(&config, &subject).await {
                    Ok(found) => found,
                    Err(e) => {
                        console::complain(&e);
                        return ExitCode::FAILURE;
                    }
                };
                let _ = console::print(&privacy::holdings_text(&subject, &held, &via));
                if held.is_empty() {
                    return ExitCode::SUCCESS;
                }
                confirmed = Some(held);
            }
            loop {
                if let Some(held) = &confirmed {
                    let _ = console::print(&privacy::question(held));
                    if !privacy::confirmed() {
                        console::complain("nothing was erased: not confirmed (scripts pass --yes)");
                        return ExitCode::FAILURE;
                    }
                }
                let open_confirmed = confirmed.as_ref().map(|held| held.open);
                match privacy::forget(&config, &subject, open_confirmed).await {
                    Ok(Forgotten::Erased(erased, via)) => {
                        if erased.is_empty() {
                            let _ = console::print(&format!(
                                "The box holds nothing about {}: nothing to erase.\n",
                                subject.describe()
                            ));
                        } else {
                            let _ = console::print(&privacy::erased_text(&erased, &via));
                        }
                        return ExitCode::SUCCESS;
                    }
                    Ok(Forgotten::Changed(now)) => {
                        let _ = console::print(&format!(
                            "Taps came in meanwhile: nothing was erased yet. Now {} of its taps \
                             wait for delivery.\n",
                            now.open
                        ));
                        confirmed = Some(now);
                    }
                    Err(e) => {
                        console::complain(&e);
                        return ExitCode::FAILURE;
                    }
                }
            }
        })
    })
}

/// `export`: everything the box holds about a card or member, as one JSON object.
fn export(path: &Path, args: &SubjectArgs) -> ExitCode {
    let (config, subject) = match config_and_subject(path, args) {
        Ok(found) => found,
        Err(code) => return code,
    };
    with_runtime(|runtime| {
        match runtime.block_on(gym_checkin::privacy::export(&config, &subject)) {
            Ok(exported) => {
                let now = gym_checkin::clock::wall_now();
                let json = gym_checkin::privacy::export_json(&config, &subject, &exported, now);
                let text = serde_json::to_string_pretty(&json).unwrap_or_default();
                let _ = console::print(&format!("{text}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                console::complain(&e);
                ExitCode::FAILURE
            }
        }
    })
}

fn enrol(path: &Path, reader: &str, member: String, tag: Option<String>, yes: bool) -> ExitCode {
    let (config, key) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(reader_config) = config.readers.iter().find(|r| r.name == reader).cloned() else {
        return no_such_reader(path, &config, reader);
    };
    let clock = gym_checkin::clock::Clock::unregistered(config.clock.trusted_when.clone());
    let asked = gym_checkin::enrol::Asked {
        reader: reader_config,
        member,
        tag,
        yes,
    };
    with_runtime(|runtime| {
        use gym_checkin::enrol::Outcome;
        match runtime.block_on(gym_checkin::enrol::run(&config, key, &asked, clock)) {
            Outcome::Enrolled => ExitCode::SUCCESS,
            Outcome::NotConfirmed => ExitCode::FAILURE,
            Outcome::Refused(why) => {
                console::complain(&why);
                ExitCode::FAILURE
            }
        }
    })
}

fn run(path: &Path) -> ExitCode {
    // A service already on this database is said before anything else is checked: someone who
    // starts `run` by hand beside the service (whose API key is a systemd credential) must hear
    // "stop it first", not "no API key". Setup takes the lock itself and says the same if a
    // service started in between.
    if let Ok(config) = Config::load(path)
        && let Some(held) = gym_checkin::store::held(&config.store.path)
    {
        console::complain(&held.to_string());
        return ExitCode::from(EXIT_LOCKED);
    }
    let (config, key) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    with_runtime(|runtime| {
        let result = runtime.block_on(async {
            // Installed first: a stop asked for while the service starts is a clean stop.
            let shutdown = gym_checkin::daemon::termination_signal();
            let service = Service::build(config, key, Vec::new())
                .await
                .map_err(DaemonError::Setup)?;
            service.run(shutdown).await.map_err(DaemonError::Run)
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(DaemonError::Setup(SetupError::Config(problems))) => {
                print_problems(path, &problems);
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e @ DaemonError::Setup(_)) => {
                tracing::error!("{e}");
                ExitCode::from(e.exit_code())
            }
            // The task that ended was logged as it ended.
            Err(e @ DaemonError::Run(_)) => ExitCode::from(e.exit_code()),
        }
    })
}

fn calibrate(path: &Path, reader: &str, member: &str) -> ExitCode {
    let (config, key) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(reader_config) = config.readers.iter().find(|r| r.name == reader).cloned() else {
        return no_such_reader(path, &config, reader);
    };
    if let Some(held) = held_by_service(&config, reader) {
        console::complain(&held);
        return ExitCode::FAILURE;
    }
    let clock = gym_checkin::clock::Clock::unregistered(config.clock.trusted_when.clone());
    with_runtime(|runtime| {
        let found = runtime.block_on(gym_checkin::calibrate::run(
            &config,
            &key,
            &reader_config,
            member,
            clock,
        ));
        match found {
            Ok(found) => {
                let _ = console::print(&gym_checkin::calibrate::report(&found, reader));
                match found {
                    gym_checkin::calibrate::Found::Matched(_) => ExitCode::SUCCESS,
                    gym_checkin::calibrate::Found::Nothing { .. } => ExitCode::FAILURE,
                }
            }
            Err(e) => {
                console::complain(&e.to_string());
                ExitCode::FAILURE
            }
        }
    })
}

/// `--reader NAME` names no configured reader: a usage error.
fn no_such_reader(path: &Path, config: &Config, name: &str) -> ExitCode {
    let names: Vec<&str> = config.readers.iter().map(|r| r.name.as_str()).collect();
    console::complain(&format!(
        "--reader {name}: no such reader in {}; configured: {}",
        path.display(),
        names.join(", ")
    ));
    ExitCode::from(EXIT_USAGE)
}

/// What `listen` and `calibrate` say of a reader the running service reads: they would take
/// bytes (a member's tap) from it. A non-root user learns it from the exclusive open of a serial
/// reader; root, who is let past that, from the lock the service holds on the database.
fn held_by_service(config: &Config, reader: &str) -> Option<String> {
    let pid = gym_checkin::store::holder(&config.store.path)?;
    Some(format!(
        "reader {reader}: the service (pid {pid}) is running and reads it; reading it here too \
         would take members' taps from it. Stop the service first (`sudo systemctl stop \
         gym-checkin`), and start it again afterwards (`sudo systemctl start gym-checkin`)"
    ))
}

/// Runs `f` with a runtime, and does not wait for a read of standard input that nothing will
/// end (a `stdin` reader at its stop): the process exits as soon as `f` returns.
fn with_runtime(f: impl FnOnce(&tokio::runtime::Runtime) -> ExitCode) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            console::complain(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = f(&runtime);
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Prints the problems of the configuration at `path`, one per line, each with its key.
fn print_problems(path: &Path, problems: &[String]) {
    let n = problems.len();
    let mut text = format!(
        "{}: {n} problem{}:",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    console::complain(&text);
}

/// Loads the configuration; on a problem, prints them all and gives exit 78.
fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        print_problems(path, &errors.problems);
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Loads the configuration and the API key; on a problem, prints them all and gives exit 78.
fn load(path: &Path) -> Result<(Config, gym_checkin::egym::ApiKey), ExitCode> {
    let config = load_config(path)?;
    let mut problems = Vec::new();
    let key = config
        .check_api_key()
        .map_err(|problem| problems.push(problem));
    if let Err(problem) = config.check_screen_token() {
        problems.push(problem);
    }
    match key {
        Ok(key) if problems.is_empty() => Ok((config, key)),
        _ => {
            print_problems(path, &problems);
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn check_config(path: &Path, online: bool) -> ExitCode {
    let checked = Config::check(path);
    let config = match checked.config {
        Some(config) if checked.problems.is_empty() => config,
        _ => {
            print_problems(path, &checked.problems);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let key_found_in = checked.key_found_in.unwrap_or_default();
    if console::print(&gym_checkin::config::describe(&config, path, &key_found_in)).is_err() {
        return ExitCode::SUCCESS;
    }
    for warning in gym_checkin::config::warnings(&config) {
        console::complain(&format!("WARNING: {warning}"));
    }
    if !online {
        return ExitCode::SUCCESS;
    }
    with_runtime(|runtime| {
        let answer = runtime.block_on(async {
            let key = config.check_api_key()?;
            let client = gym_checkin::egym::Client::new(
                &config.egym.base_url,
                config.egym.request_timeout,
                config.egym.rate_limit_per_second,
                config.egym.rate_limit_burst,
            )?;
            Ok::<_, String>(client.check_key(&key).await)
        });
        use gym_checkin::egym::KeyCheck;
        let base = &config.egym.base_url;
        match answer {
            Ok(KeyCheck::Accepted) => {
                let _ = console::print(&format!("  EGYM at {base}: the API key is accepted\n"));
                ExitCode::SUCCESS
            }
            Ok(KeyCheck::Refused(failure)) => {
                print_problems(
                    path,
                    &[format!(
                        "egym.api-key-file: EGYM at {base} refused the API key read from \
                         {key_found_in} ({failure}): check the key, and that EGYM gave it the \
                         permission to look up members"
                    )],
                );
                ExitCode::from(EXIT_CONFIG)
            }
            Ok(KeyCheck::Unreachable(failure)) => {
                console::complain(&format!(
                    "cannot reach EGYM at {base}, so the API key could not be \
                     checked: {failure}. Check the network and egym.base-url; the service records \
                     taps all the same and delivers them once EGYM can be reached"
                ));
                ExitCode::FAILURE
            }
            Ok(KeyCheck::Other(failure)) => {
                console::complain(&format!(
                    "EGYM at {base} answered, but not as expected, so the API key \
                     could not be checked: {failure}"
                ));
                ExitCode::FAILURE
            }
            Err(e) => {
                console::complain(&e.to_string());
                ExitCode::FAILURE
            }
        }
    })
}

fn listen(path: &Path, only: Option<&str>, capture: Option<&Path>) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let readers: Vec<_> = config
        .readers
        .iter()
        .filter(|r| only.is_none_or(|name| r.name == name))
        .cloned()
        .collect();
    if readers.is_empty() {
        return no_such_reader(path, &config, only.unwrap_or_default());
    }
    let mut free = Vec::new();
    for reader in readers {
        match held_by_service(&config, &reader.name) {
            Some(held) => console::complain(&held),
            None => free.push(reader),
        }
    }
    if free.is_empty() {
        return ExitCode::FAILURE;
    }
    let capture = match (capture, &free[..]) {
        (None, _) => None,
        (Some(file), [reader]) => {
            match gym_checkin::reader::capture::Writer::create(file, reader) {
                Ok(writer) => Some(writer),
                Err(e) => {
                    console::complain(&format!("--capture {}: {e}", file.display()));
                    return ExitCode::FAILURE;
                }
            }
        }
        (Some(_), _) => {
            console::complain(&format!(
                "--capture records one reader: name it with --reader (configured: {})",
                free.iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let clock = gym_checkin::clock::Clock::unregistered(config.clock.trusted_when.clone());
    with_runtime(|runtime| {
        runtime.block_on(async {
            let stop = async {
                tokio::select! {
                    () = gym_checkin::daemon::termination_signal() => {}
                    () = console::stdout_closed() => {}
                }
            };
            gym_checkin::listen::run(free, capture, clock, stop).await;
        });
        ExitCode::SUCCESS
    })
}

fn status(path: &Path, json: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match gym_checkin::status::read(&config) {
        Ok(status) => {
            let text = if json {
                format!("{}\n", gym_checkin::status::to_json(&status))
            } else {
                gym_checkin::status::to_text(&status)
            };
            // A closed standard output (`status | head -1`) ends it quietly.
            let _ = console::print(&text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            console::complain(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Under systemd, with stderr connected to the journal, native journal entries with structured
/// fields (`READER`, `EVENT_ID`, `OUTCOME`, `OUTBOX_PENDING`, ...); otherwise compact text on
/// stderr. `RUST_LOG` (e.g. `debug`, `gym_checkin=debug`) sets the level.
fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("gym-checkin".into());
                tracing_subscriber::registry()
                    .with(journal)
                    .with(filter)
                    .init();
                return;
            }
            Err(e) => {
                console::complain(&format!(
                    "cannot write to the journal ({e}); logging to stderr"
                ));
            }
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .compact()
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();
}

/// Whether stderr is the journal stream systemd set up (`JOURNAL_STREAM=<device>:<inode>`).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` for a valid descriptor and returns 0, else leaves it unset
    // and returns -1; it is read only on success.
    let stat = unsafe {
        if libc::fstat(2, stat.as_mut_ptr()) != 0 {
            return false;
        }
        stat.assume_init()
    };
    device.parse() == Ok(stat.st_dev) && inode.parse() == Ok(stat.st_ino)
}
