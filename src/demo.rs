//! `gym-checkin demo`: the whole pipeline on this machine, with no hardware and no EGYM account.
//!
//! The stand-in EGYM ([`crate::egym::fake`]) runs on loopback with a few demo members; what is
//! typed on standard input is a reader (one tag per line); the database is a temporary file.
//! Every request the stand-in receives is printed, so the check-ins, check-outs and their
//! timestamps can be seen. `outage` and `restore` take the stand-in down and back.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::clock::timer;
use crate::clock::{WallMs, rfc3339_ms, wall_now};
use crate::config::Config;
use crate::daemon::{DaemonError, SetupError};
use crate::egym::fake::{FakeEgym, Member, Mode, Received, demo_members};
use crate::egym::{ApiKey, ApiKeySource};
use crate::reader::Source;

const DEMO_KEY: &str = "demo-api-key";

/// Runs the demo until `quit`, the end of standard input, Ctrl-C, or a closed standard output;
/// its temporary database is removed however it ends.
pub async fn run() -> Result<(), DaemonError> {
    let dir = std::env::temp_dir().join(format!("gym-checkin-demo-{}", std::process::id()));
    // The demo's own, whatever the umask: its database holds the taps typed.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let result = run_in(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn failed(message: String) -> DaemonError {
    DaemonError::Setup(SetupError::Failed(message))
}

async fn run_in(dir: &std::path::Path) -> Result<(), DaemonError> {
    let members = demo_members();
    let fake = FakeEgym::start(members.clone(), DEMO_KEY)
        .await
        .map_err(|e| failed(format!("cannot start the stand-in EGYM: {e}")))?;
    let db = dir.join("demo.db");
    let screen = screen_address();
    // The demo's clock is trusted while this file exists: `clock-off` and `clock-on` show how a
    // tap is stamped while it is not.
    let trusted = dir.join("clock-trusted");
    std::fs::write(&trusted, "")
        .map_err(|e| failed(format!("cannot create {}: {e}", trusted.display())))?;
    // Its own database, and its own socket beside it: a service running on this machine is
    // never in its way, nor it in the service's.
    let socket = dir.join("demo.sock");
    // A screen token, so that the staff page can enrol cards (which needs one on any address).
    let token =
        random_token().map_err(|e| failed(format!("cannot make the screen's token: {e}")))?;
    let token_file = dir.join("screen-token");
    std::fs::write(&token_file, format!("{token}\n"))
        .map_err(|e| failed(format!("cannot create {}: {e}", token_file.display())))?;
    let text = format!(
        r#"
        [egym]
        base-url = "{}"
        request-timeout = "3s"
        [store]
        path = "{}"
        [visits]
        repeat-window = "5s"
        [clock]
        trusted-when = "file:{}"
        [screen]
        listen = "{}"
        token-file = "{}"
        [service]
        socket = "{}"
        [[readers]]
        name = "front-desk"
        driver = "stdin"
        debounce = "0ms"
        "#,
        fake.base_url(),
        db.display(),
        trusted.display(),
        screen,
        token_file.display(),
        socket.display()
    );
    let mut config = Config::parse(&text)
        .map_err(|problems| DaemonError::Setup(SetupError::Config(problems)))?;
    config.egym.api_key = ApiKeySource::Literal(ApiKey::new(DEMO_KEY.into()));

    print_banner(&fake, &members, screen, &token);
    tokio::spawn(print_requests(fake.subscribe(), members));

    let (mut typed, reader_end) = tokio::io::duplex(4096);
    let (quit, quitting) = oneshot::channel::<()>();
    let store_path = db.clone();
    let fake = std::sync::Arc::new(fake);
    let console_fake = fake.clone();
    let console_trusted = trusted.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match line.trim() {
                "outage" => {
                    console_fake.set_mode(Mode::Down);
                    say(
                        "EGYM is now DOWN: taps are still recorded and held in the outbox. Type `restore` to bring it back.",
                    );
                }
                "restore" => {
                    console_fake.set_mode(Mode::Normal);
                    say(
                        "EGYM is back. Held taps go out at their next retry, or at once with the next tap.",
                    );
                }
                "clock-off" => {
                    let _ = std::fs::remove_file(&console_trusted);
                    say(
                        "The clock is NOT TRUSTED now (within 2 s), as when the time service loses its source. It was trusted earlier in this run, so a tap is still stamped exactly: the trusted time then plus the steady time since (clock=\"restamped\"). A box that boots with no trusted time holds its taps until the clock is trusted (README: Time). `clock-on` trusts it again.",
                    );
                }
                "clock-on" => {
                    let _ = std::fs::write(&console_trusted, "");
                    say("The clock is trusted again (within 2 s).");
                }
                "status" => print_status(&store_path),
                "help" | "?" => say(COMMANDS),
                "quit" | "exit" => break,
                "" => {}
                tag => {
                    if typed
                        .write_all(format!("{tag}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // End of input: give held taps a moment to go out, so piped demos show the whole flow.
        wait_for_empty_outbox(&store_path, Duration::from_secs(15)).await;
        let _ = quit.send(());
    });

    let signal = crate::daemon::termination_signal();
    let shutdown = async {
        tokio::select! {
            () = signal => {}
            _ = quitting => {}
            () = crate::console::stdout_closed() => {}
        }
    };
    let key = ApiKey::new(DEMO_KEY.into());
    crate::daemon::run(
        config,
        key,
        vec![Some(Source::Stream(Box::new(reader_end)))],
        shutdown,
    )
    .await
}

const COMMANDS: &str = "Type a tag and Enter to tap it. Commands: outage, restore, clock-off, \
     clock-on, status, help, quit.";

/// The demo's own lines stand out from the service's log.
fn say(text: &str) {
    crate::console::say(&format!(">> {text}"));
}

/// The screen's usual address if it is free, else any free port on loopback.
fn screen_address() -> std::net::SocketAddr {
    let usual = std::net::SocketAddr::from(([127, 0, 0, 1], 8787));
    if std::net::TcpListener::bind(usual).is_ok() {
        return usual;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .unwrap_or(usual)
}

/// 32 hex digits from the kernel's random source.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn print_banner(fake: &FakeEgym, members: &[Member], screen: std::net::SocketAddr, token: &str) {
    let mut text = format!(
        "gym-checkin demo: a stand-in EGYM runs at {} and this terminal is the reader.\n\
         The front-desk screen: http://{screen}/  (staff page: http://{screen}/staff?token={token})\n\
         Demo members (type a tag to tap that member's card):\n",
        fake.base_url()
    );
    for member in members.iter().filter(|m| !m.rfid.is_empty()) {
        let typed = member.rfid.trim_start_matches("0x");
        text.push_str(&format!("    {typed}   {}\n", member.name));
    }
    text.push_str("Frankie and Gabi are Wellpass members: EGYM admits Frankie; Gabi's membership has expired.\n");
    text.push_str("A tag nobody has, e.g. 0A0B0C0D0E, shows how an unknown card is reported.\n");
    text.push_str("Hana (hana@example.invalid) has no card yet: tap 0A0B0C0D0E, then enrol it for her on the staff page (Enrol…).\n");
    text.push_str("A second tap of the same tag within 5 s is ignored (repeat-window).\n");
    text.push_str(COMMANDS);
    say(&text);
}

async fn print_requests(
    mut requests: tokio::sync::broadcast::Receiver<Received>,
    members: Vec<Member>,
) {
    while let Ok(request) = requests.recv().await {
        let status = request
            .status
            .map_or("(no answer)".to_string(), |s| s.to_string());
        let line = if let Some((account, what)) = request.visit() {
            let name = members
                .iter()
                .find(|m| m.account_id == account)
                .map_or("?", |m| m.name.as_str());
            let tapped = request
                .timestamp()
                .map(|t| rfc3339_ms(WallMs::from_millis(t)))
                .unwrap_or_else(|| "missing".into());
            let late_s = request
                .timestamp()
                .map(|t| (request.at_ms - t) as f64 / 1000.0)
                .unwrap_or(0.0);
            format!(
                "EGYM received {} {}  body {}  → {status}\n             {name} {}, tap time {tapped} ({late_s:.1} s before it arrived)",
                request.method,
                request.path,
                request
                    .body
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                if what == "checkins" {
                    "checked IN"
                } else {
                    "checked OUT"
                },
            )
        } else if let Some(account) = request.add_rfid() {
            let name = members
                .iter()
                .find(|m| m.account_id == account)
                .map_or("?", |m| m.name.as_str());
            let body = request
                .body
                .as_ref()
                .map(|b| b.to_string())
                .unwrap_or_default();
            format!(
                "EGYM received {} {}  body {body}  → {status}\n             card added for {name}",
                request.method, request.path
            )
        } else if let Some(account) = request.admission() {
            let name = members
                .iter()
                .find(|m| m.account_id == account)
                .map_or("?", |m| m.name.as_str());
            let verdict = match request.status {
                Some(200) => "admitted (Wellpass)".to_string(),
                Some(403) => {
                    let code = members
                        .iter()
                        .find(|m| m.account_id == account)
                        .and_then(|m| m.refusal.clone())
                        .unwrap_or_default();
                    format!("REFUSED (Wellpass: {code}): no check-in follows")
                }
                _ => "no admission".to_string(),
            };
            format!(
                "EGYM received {} {}  → {status}\n             {name} {verdict}",
                request.method, request.path
            )
        } else {
            let query = request
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            format!(
                "EGYM received {} {}{query}  → {status}",
                request.method, request.path
            )
        };
        say(&line);
    }
}

fn print_status(db: &std::path::Path) {
    match crate::status::read_database(db, None) {
        Ok((data, _)) => {
            let c = data.events;
            say(&format!(
                "outbox: {} pending ({} held for the clock), {} unknown tag, {} delivered, {} rejected (at {})",
                c.pending,
                data.clock.held,
                c.unknown_tag,
                c.delivered,
                c.rejected,
                rfc3339_ms(wall_now())
            ));
        }
        Err(e) => say(&format!("cannot read the outbox: {e}")),
    }
}

async fn wait_for_empty_outbox(db: &std::path::Path, timeout: Duration) {
    let deadline = timer::Instant::now() + timeout;
    while timer::Instant::now() < deadline {
        match crate::status::read_database(db, None) {
            Ok((data, _)) if data.events.pending == 0 => return,
            Ok(_) => timer::sleep(Duration::from_millis(200)).await,
            Err(_) => return,
        }
    }
}
