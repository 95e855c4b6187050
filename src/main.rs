//! The `gym-checkin` command line: logging set-up, subcommands, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use gym_checkin::config::{Config, DEFAULT_CONFIG_PATH};
use gym_checkin::reader::Driver;

/// Exit code for a bad configuration (EX_CONFIG from sysexits.h).
const EXIT_CONFIG: u8 = 78;

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
    CheckConfig,
    /// What the service is doing: events by state, delivery, readers. Reads the database only.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => match load(&cli.config) {
            Ok((config, key)) => block_on(async move {
                gym_checkin::daemon::run(
                    config,
                    key,
                    Vec::new(),
                    gym_checkin::daemon::termination_signal(),
                )
                .await
            }),
            Err(code) => code,
        },
        Command::Status { json } => status(&cli.config, json),
        Command::Listen { reader, capture } => {
            listen(&cli.config, reader.as_deref(), capture.as_deref())
        }
        Command::Demo => block_on(async { gym_checkin::demo::run().await }),
        Command::Calibrate { reader, member } => calibrate(&cli.config, &reader, &member),
    }
}

fn calibrate(path: &std::path::Path, reader: &str, member: &str) -> ExitCode {
    let (config, key) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(reader_config) = config.readers.iter().find(|r| r.name == reader).cloned() else {
        let names: Vec<&str> = config.readers.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "gym-checkin: --reader {reader}: no such reader in {}; configured: {}",
            path.display(),
            names.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let clock = gym_checkin::clock::Clock::unregistered(config.clock.trusted_when.clone());
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let found = runtime.block_on(gym_checkin::calibrate::run(
        &config,
        &key,
        &reader_config,
        member,
        clock,
    ));
    match found {
        Ok(found) => {
            print!("{}", gym_checkin::calibrate::report(&found, reader));
            match found {
                gym_checkin::calibrate::Found::Matched(_) => ExitCode::SUCCESS,
                gym_checkin::calibrate::Found::Nothing { .. } => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("gym-checkin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("gym-checkin: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn block_on<E: std::fmt::Display>(future: impl Future<Output = Result<(), E>>) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("gym-checkin: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration; on a problem, prints them all and gives exit 78.
fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprint!("gym-checkin: {errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Loads the configuration and the API key; on a problem, prints them all and gives exit 78.
fn load(path: &std::path::Path) -> Result<(Config, gym_checkin::egym::ApiKey), ExitCode> {
    let config = load_config(path)?;
    let key = config.check_api_key().map_err(|problem| {
        eprintln!("gym-checkin: {}: 1 problem:\n  {problem}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })?;
    config.check_screen_token().map_err(|problem| {
        eprintln!("gym-checkin: {}: 1 problem:\n  {problem}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })?;
    Ok((config, key))
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let (config, _key) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let clock = gym_checkin::clock::Clock::unregistered(config.clock.trusted_when.clone());
    let device_problems = config.check_devices();
    if !device_problems.is_empty() {
        eprintln!(
            "gym-checkin: {}: {} problem(s) with the readers' devices:",
            path.display(),
            device_problems.len()
        );
        for problem in device_problems {
            eprintln!("  {problem}");
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    println!("{}: OK", path.display());
    println!("  EGYM: {} (API key found)", config.egym.base_url);
    println!("  database: {}", config.store.path.display());
    let trust = clock.trust();
    println!(
        "  clock: trusted-when = {}: {} now ({})",
        config.clock.trusted_when,
        if trust.trusted {
            "trusted"
        } else {
            "NOT trusted"
        },
        trust.detail
    );
    if trust.source == gym_checkin::clock::TrustSource::Undetermined {
        eprintln!(
            "gym-checkin: WARNING: the clock would be trusted without proof: {}",
            trust.detail
        );
    }
    if let Some(warning) = clock.never_trusted_warning() {
        eprintln!("gym-checkin: WARNING: {warning}");
    }
    match config.screen.listen {
        None => println!("  screen: off"),
        Some(listen) => {
            let token = if config.screen.token_file.is_some() {
                "; the staff page and /metrics need the token"
            } else {
                ""
            };
            println!("  screen: http://{listen}/ (staff: /staff){token}");
            // Bound, then let go at once: only to tell whether the port is free.
            if let Err(e) = std::net::TcpListener::bind(listen) {
                eprintln!(
                    "gym-checkin: WARNING: screen.listen: cannot listen on {listen} now: {e}. If \
                     gym-checkin runs, it may be the one using it; otherwise the screen will not \
                     be served until the port is free (taps are recorded and delivered all the same)"
                );
            }
        }
    }
    for reader in &config.readers {
        let device = match &reader.driver {
            Driver::Serial {
                path,
                baud,
                protocol,
            } => {
                let present = if path.exists() {
                    "present"
                } else {
                    "not present now; the service waits for it"
                };
                format!(
                    "serial {} at {baud} baud, protocol {} ({present})",
                    path.display(),
                    protocol.name
                )
            }
            Driver::Keyboard { path } => {
                let present = if path.exists() {
                    "present"
                } else {
                    "not present now; the service waits for it"
                };
                format!("keyboard {} ({present})", path.display())
            }
            Driver::Pcsc { reader: wanted } => {
                let which = match wanted {
                    Some(wanted) => format!("the first whose name contains {wanted:?}"),
                    None => "the first found".to_string(),
                };
                let present = match gym_checkin::reader::try_open(reader) {
                    Ok(()) => "present".to_string(),
                    Err(e) => format!("not available now: {e}; the service waits for it"),
                };
                format!("PC/SC reader through pcscd, {which} ({present})")
            }
            Driver::Stdin => "standard input".to_string(),
        };
        let tag_format = reader.egym_tag_format.as_deref().unwrap_or("none");
        println!(
            "  reader {}: {device}, direction {:?}, tagFormat {tag_format}",
            reader.name, reader.direction
        );
    }
    ExitCode::SUCCESS
}

fn listen(
    path: &std::path::Path,
    only: Option<&str>,
    capture: Option<&std::path::Path>,
) -> ExitCode {
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
        let names: Vec<&str> = config.readers.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "gym-checkin: --reader {}: no such reader in {}; configured: {}",
            only.unwrap_or_default(),
            path.display(),
            names.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let capture = match (capture, &readers[..]) {
        (None, _) => None,
        (Some(file), [reader]) => {
            match gym_checkin::reader::capture::Writer::create(file, reader) {
                Ok(writer) => Some(writer),
                Err(e) => {
                    eprintln!("gym-checkin: --capture {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        (Some(_), _) => {
            eprintln!(
                "gym-checkin: --capture records one reader: name it with --reader (configured: {})",
                readers
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let clock = gym_checkin::clock::Clock::unregistered(config.clock.trusted_when.clone());
    block_on(async move {
        gym_checkin::listen::run(
            readers,
            capture,
            clock,
            gym_checkin::daemon::termination_signal(),
        )
        .await;
        Ok::<(), String>(())
    })
}

fn status(path: &std::path::Path, json: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match gym_checkin::status::read(&config.store.path) {
        Ok((data, asked)) if json => {
            println!("{}", gym_checkin::status::to_json(&data, &asked));
            ExitCode::SUCCESS
        }
        Ok((data, asked)) => {
            print!(
                "{}",
                gym_checkin::status::to_text(&data, &asked, &config.store.path)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gym-checkin: {e}");
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
                eprintln!("gym-checkin: cannot write to the journal ({e}); logging to stderr");
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
