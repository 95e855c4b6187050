//! The front-desk screen, served by the real binary: the event stream, resuming it, the token,
//! a taken port, `/metrics` through Prometheus's own checker, and the pages in a real browser:
//! first names (long ones, empty ones, CJK and emoji), first Wellpass visits, and the staff
//! page in the box's local time. The screen's rules for other machines are in `screen_lan.rs`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::{Browser, screenshot_path};
use common::*;

const ALEX: &str = "0C000621A5";
const BILLIE: &str = "4B00423C15";
const UNKNOWN: &str = "0A0B0C0D0E";
const GABI: &str = "0D00D4E5F6";
const UNKNOWN_TOO: &str = "0F1E2D3C4B";
const FRANKIE: &str = "0D00A1B2C3";
const LONG_NAMED: &str = "1A2B3C4D5E";
const NAMELESS: &str = "2B3C4D5E6F";
const MISAKI: &str = "3C4D5E6F70";
/// A first name with no space to break it at, too wide for the screen at full size.
const LONG_NAME: &str = "Bartholomäusmaximiliankonstantin";
/// A first name in Japanese, with an emoji.
const CJK_NAME: &str = "美咲🌸";

/// The members the screen greets: two, one whose Wellpass has expired and one on their first
/// Wellpass visit, and three whose first names try the screen's lettering.
fn members() -> Vec<Member> {
    vec![
        Member::new(&format!("0x{ALEX}"), "acc-alex", "Alex Quillfeather"),
        Member::new(&format!("0x{BILLIE}"), "acc-billie", "Billie Zornbrook"),
        Member::new(&format!("0x{GABI}"), "acc-gabi", "Gabi Wellpass")
            .wellpass(Some("corporateFitnessMembershipExpired")),
        Member::new(&format!("0x{FRANKIE}"), "acc-frankie", "Frankie Firstvisit").wellpass(None),
        Member::new(
            &format!("0x{LONG_NAMED}"),
            "acc-long",
            &format!("{LONG_NAME} Demo"),
        ),
        Member::new(&format!("0x{NAMELESS}"), "acc-nameless", ""),
        Member::new(
            &format!("0x{MISAKI}"),
            "acc-misaki",
            &format!("{CJK_NAME} Tanaka"),
        ),
    ]
}

fn reader(pty: &Pty) -> String {
    serial_reader(
        "entrance",
        &pty.slave_path,
        "em4100",
        "debounce = \"100ms\"",
    )
}

/// The service with its screen on a port of its own, a pty reader and the stand-in EGYM;
/// `config` writes the configuration from the directory, EGYM's URL, the port and the reader's
/// table. Waits until the screen is served.
async fn desk_with(
    name: &str,
    config: impl FnOnce(&TestDir, &str, u16, &str) -> std::path::PathBuf,
) -> (TestDir, FakeEgym, Pty, u16, std::path::PathBuf, Daemon) {
    let dir = TestDir::new(name);
    let fake = start_egym(members()).await;
    let pty = Pty::open();
    let port = free_port();
    let config = config(&dir, &fake.base_url(), port, &reader(&pty));
    let daemon = Daemon::start(&config);
    daemon.wait_for_line("the screen is served", LONG).await;
    (dir, fake, pty, port, config, daemon)
}

/// [`desk_with`] the screen on 127.0.0.1.
async fn desk(name: &str) -> (TestDir, FakeEgym, Pty, u16, std::path::PathBuf, Daemon) {
    desk_with(name, |dir, base_url, port, reader| {
        write_config_with_screen(
            dir,
            base_url,
            &format!("listen = \"127.0.0.1:{port}\""),
            reader,
        )
    })
    .await
}

/// One event of the stream.
#[derive(Clone, Debug)]
struct Event {
    id: String,
    name: String,
    data: serde_json::Value,
}

/// A client of the event stream, collecting what it hears.
struct Stream {
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Event {
    /// Its number in this run.
    fn number(&self) -> u64 {
        self.id.split_once('-').unwrap().1.parse().unwrap()
    }
}

impl Stream {
    async fn open(url: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block
                            .lines()
                            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                            .map(str::to_string)
                    };
                    if let (Some(id), Some(name), Some(data)) =
                        (field("id"), field("event"), field("data"))
                    {
                        sink.lock().unwrap().push(Event {
                            id,
                            name,
                            data: serde_json::from_str(&data).unwrap(),
                        });
                    }
                }
            }
        });
        Stream { events, task }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for an event `matching`; returns it.
    async fn wait_for(&self, what: &str, matching: impl Fn(&Event) -> bool) -> Event {
        let found = poll(LONG, || self.events().into_iter().find(|e| matching(e))).await;
        found.unwrap_or_else(|| panic!("no {what} event: {:#?}", self.events()))
    }

    async fn title(&self, title: &str) -> Event {
        self.wait_for(title, |e| e.name == "member" && e.data["title"] == title)
            .await
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_screen_answers_each_tap_at_once_by_first_name_and_never_shows_the_tag() {
    // Requests may take longer than a member waits at the door.
    let (_dir, fake, mut pty, port, _config, daemon) =
        desk_with("screen-member", |dir, base_url, port, reader| {
            write_config_parts(
                dir,
                base_url,
                "request-timeout = \"5s\"",
                "",
                "trusted-when = \"always\"",
                &format!("listen = \"127.0.0.1:{port}\""),
                reader,
            )
        })
        .await;
    let stream = Stream::open(&format!("http://127.0.0.1:{port}/events"), None).await;

    pty.write(&em4100_frame(ALEX));
    stream.title("Welcome, Alex").await;
    pty.write(&em4100_frame(UNKNOWN));
    stream.title("Card not recognised").await;
    // EGYM out of reach: the member is answered at once all the same.
    fake.set_mode(Mode::Down);
    wait_until_refused(&fake).await;
    pty.write(&em4100_frame(BILLIE));
    let offline = stream.title("Checked in, will sync").await;
    fake.set_mode(Mode::Normal);
    assert!(
        fake.wait_for(LONG, |r| r.iter().any(|r| r
            .visit()
            .is_some_and(|(account, _)| account == "acc-billie")))
            .await
            .0
    );
    // EGYM slow to answer: "One moment", and "will sync" after 3 seconds rather than nothing. A
    // Wellpass refusal that comes after that finds the member inside. First Billie's delivery
    // must have reached the screen (it turns Billie's answer into a welcome): until then it says
    // "will sync" at once.
    stream
        .wait_for("Billie's delivery", |e| {
            e.data["outcome"] == "checked_in" && e.number() > offline.number()
        })
        .await;
    // Each request is answered as the mode is when it comes.
    fake.set_mode(Mode::Stall);
    let tapped = Instant::now();
    pty.write(&em4100_frame(GABI));
    let moment = stream
        .wait_for("one moment", |e| {
            e.data["title"] == "One moment" && e.number() > offline.number()
        })
        .await;
    let (looked_up, received) = fake
        .wait_for(LONG, |r| {
            r.iter()
                .any(|r| r.lookup_rfid().is_some_and(|t| t.ends_with("E5F6")))
        })
        .await;
    assert!(looked_up, "Gabi's card was not looked up: {received:#?}");
    fake.set_mode(Mode::Normal);
    let will_sync = stream
        .wait_for("will sync", |e| {
            e.data["title"] == "Checked in, will sync" && e.number() > moment.number()
        })
        .await;
    let waited = tapped.elapsed();
    println!("answered \"will sync\" after {waited:?} without an answer from EGYM");
    assert!(waited >= Duration::from_millis(2_900), "{waited:?}");
    assert_eq!(will_sync.data["outcome"], "will_sync");
    daemon.wait_for_event("admission_refused_late", LONG).await;
    // The check-in is still sent, after the refusal is logged.
    let (sent, received) = fake
        .wait_for(LONG, |r| {
            r.iter()
                .any(|r| r.visit().is_some_and(|(account, _)| account == "acc-gabi"))
        })
        .await;
    assert!(sent, "the visit was not sent: {received:#?}");

    for event in stream.events() {
        let text = event.data.to_string();
        for private in [
            ALEX,
            BILLIE,
            UNKNOWN,
            "21A5",
            "Quillfeather",
            "example.invalid",
        ] {
            assert!(!text.contains(private), "{private} in {text}");
        }
        assert_eq!(event.name, "member", "a member screen got {event:?}");
    }
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_resumes_from_its_last_event_id_and_a_new_one_gets_the_state_first() {
    let (_dir, _fake, mut pty, port, _config, daemon) = desk("screen-resume").await;
    let url = format!("http://127.0.0.1:{port}/events");
    let first = Stream::open(&url, None).await;
    pty.write(&em4100_frame(ALEX));
    let welcome = first.title("Welcome, Alex").await;

    // A screen connecting now, while Alex's answer is up, gets it first.
    let newcomer = Stream::open(&url, None).await;
    newcomer.title("Welcome, Alex").await;
    // One that reconnects having seen it gets nothing old, then what comes next.
    let back = Stream::open(&url, Some(&welcome.id)).await;
    pty.write(&em4100_frame(BILLIE));
    let billie = back.title("Welcome, Billie").await;
    assert!(billie.id > welcome.id || billie.id.len() > welcome.id.len());
    let old: Vec<Event> = back
        .events()
        .into_iter()
        .filter(|e| e.number() <= welcome.number())
        .collect();
    assert!(old.is_empty(), "{old:#?}");
    // An id from before a restart of the service: the state, from scratch.
    let stale = Stream::open(&url, Some("0badc0de-12")).await;
    stale.title("Welcome, Billie").await;
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_staff_page_its_events_and_metrics_need_it_on_the_box_too() {
    let dir = TestDir::new("screen-token");
    let fake = start_egym(members()).await;
    let pty = Pty::open();
    let port = free_port();
    // With characters that a query string must carry percent-encoded.
    let token = "3f9b+2c1d/screen=token-6e0a";
    let in_query: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let token_file = dir.path("screen-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = write_config_with_screen(
        &dir,
        &fake.base_url(),
        &format!(
            "listen = \"0.0.0.0:{port}\"\ntoken-file = \"{}\"",
            token_file.display()
        ),
        &reader(&pty),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_line("the screen is served", LONG).await;
    let http = reqwest::Client::new();
    let status = |path: &str, bearer: Option<&str>| {
        let mut request = http.get(format!("http://127.0.0.1:{port}{path}"));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/", None).await, 200);
    assert_eq!(status("/staff", None).await, 401);
    assert_eq!(status("/staff", Some("wrong-token-wrong-token")).await, 401);
    assert_eq!(status("/staff", Some(token)).await, 200);
    assert_eq!(status("/metrics", None).await, 401);
    assert_eq!(status("/metrics", Some(token)).await, 200);
    assert_eq!(status("/events?staff=1", None).await, 401);
    let staff = Stream::open(
        &format!("http://127.0.0.1:{port}/events?staff=1&token={in_query}"),
        None,
    )
    .await;
    staff
        .wait_for("staff", |e| {
            e.name == "staff" && e.data["readers"][0]["name"] == "entrance"
        })
        .await;
    drop(daemon);
}

/// The status line of a GET of `path` with this `Host` header, sent by hand.
fn status_with_host(port: u16, path: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_loopback_the_screen_answers_only_requests_that_name_this_machine() {
    let (_dir, _fake, _pty, port, _config, daemon) = desk("screen-host").await;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("[::1]:{port}"),
    ] {
        let line = status_with_host(port, "/metrics", &host);
        assert!(line.contains(" 200 "), "Host {host}: {line}");
    }
    // A page on another site whose name was rebound to 127.0.0.1 sends its own name.
    for host in [format!("attacker.example:{port}"), "10.0.0.7".to_string()] {
        let line = status_with_host(port, "/metrics", &host);
        assert!(line.contains(" 421 "), "Host {host}: {line}");
    }
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_stops_no_tap_and_the_screen_holds_at_most_its_limit() {
    use std::io::Read;
    const FLOOD: usize = 200;
    const LIMIT: usize = gym_checkin::screen::MAX_CONNECTIONS;
    // From 20 addresses of this machine (all of 127.0.0.0/8 is loopback), 10 from each: under
    // the limit of each client, over the limit of all.
    const CLIENTS: usize = 20;
    const { assert!(FLOOD / CLIENTS < gym_checkin::screen::MAX_CONNECTIONS_PER_CLIENT) };
    let (_dir, fake, mut pty, port, _config, daemon) = desk("screen-flood").await;
    daemon.wait_for_event("reader_connected", LONG).await;
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    // Connections that never send a request.
    let mut flood: Vec<std::net::TcpStream> = Vec::new();
    for i in 0..FLOOD {
        let from = std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % CLIENTS) as u8);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .unwrap()
            .into_std()
            .unwrap();
        stream.set_nonblocking(true).unwrap();
        flood.push(stream);
    }
    // Those over the limit are closed at once.
    let closed = || {
        flood
            .iter()
            .filter(|stream| {
                let mut stream: &std::net::TcpStream = stream;
                matches!(stream.read(&mut [0; 1]), Ok(0))
            })
            .count()
    };
    let all_closed = wait_until(LONG, || closed() >= FLOOD - LIMIT).await;
    assert!(all_closed, "{} closed", closed());
    assert_eq!(closed(), FLOOD - LIMIT);
    daemon
        .wait_for_line("the screen holds 64 connections already", LONG)
        .await;
    let during = fds();
    println!("daemon file descriptors: {before} before, {during} with {FLOOD} connections tried");
    assert!(during <= before + LIMIT, "{before} → {during}");
    // Taps go on.
    pty.write(&em4100_frame(ALEX));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    // Once they go, the screen answers again.
    drop(flood);
    assert!(
        health_answers(port).await,
        "the screen never answered again"
    );
}

/// Waits until the screen on `port` answers `/health`; whether it did.
async fn health_answers(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/health");
    let answered = poll_every(POLL, LONG, || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status() == 200)
            .then_some(())
    })
    .await;
    answered.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_stops_no_tap_and_the_screen_comes_once_the_port_is_free() {
    let dir = TestDir::new("screen-port");
    let fake = start_egym(members()).await;
    let mut pty = Pty::open();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = write_config_with_screen(
        &dir,
        &fake.base_url(),
        &format!("listen = \"127.0.0.1:{port}\""),
        &reader(&pty),
    );
    // check-config says so.
    let output = gym_checkin()
        .args(["check-config", "--config"])
        .arg(&config)
        .env_remove("EGYM_API_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port} now")),
        "{stderr}"
    );

    let daemon = Daemon::start(&config);
    daemon.wait_for_line("the screen cannot listen", LONG).await;
    pty.write(&em4100_frame(ALEX));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    let status = status_json(&config);
    assert!(
        status["screen"]
            .as_str()
            .unwrap()
            .starts_with("NOT SERVING"),
        "{status}"
    );
    drop(taken);
    assert!(health_answers(port).await, "the screen never came");
    daemon.wait_for_line("the screen is served", LONG).await;
    let status = status_json(&config);
    assert!(
        status["screen"].as_str().unwrap().starts_with("serving at"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_prometheus_own_checker_and_count_what_happened() {
    let (_dir, fake, mut pty, port, _config, daemon) = desk("screen-metrics").await;
    pty.write(&em4100_frame(ALEX));
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    daemon.wait_for_event("delivered", LONG).await;
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    check_metrics(&text);
    for line in [
        "gym_checkin_taps_total{reader=\"entrance\",outcome=\"recorded\"} 1",
        "gym_checkin_deliveries_total{outcome=\"delivered\"} 1",
        "gym_checkin_outbox_events{state=\"delivered\"} 1",
        "gym_checkin_reader_connected{reader=\"entrance\"} 1",
        "gym_checkin_delivery_paused 0",
        "gym_checkin_clock_trusted 1",
        "gym_checkin_egym_request_duration_seconds_count{call=\"post\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(text.contains("gym_checkin_build_info{version=\""));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_the_members_first_name_and_reconnects_after_a_restart() {
    let (_dir, _fake, mut pty, port, config, mut daemon) = desk("screen-browser").await;
    let mut browser = Browser::start(1280, 800);
    browser.navigate(&format!("http://127.0.0.1:{port}/"));
    let title = "document.getElementById('title').textContent";
    let connected = "document.getElementById('link').textContent === '\u{25cf}'";
    assert!(
        browser.wait_until(connected, LONG).await,
        "the page never connected"
    );
    assert_eq!(browser.evaluate(title), "Tap your card");

    let tapped = Instant::now();
    pty.write(&em4100_frame(ALEX));
    assert!(
        browser
            .wait_until(&format!("{title} === 'Welcome, Alex'"), LONG)
            .await,
        "the page shows {}",
        browser.evaluate(title)
    );
    println!("tap to first name in the browser: {:?}", tapped.elapsed());
    let (width, height) = browser.screenshot(&screenshot_path("screen-member.png"));
    assert_eq!((width, height), (1280, 800));
    // Back to "Tap your card" after a few seconds.
    assert!(
        browser
            .wait_until(&format!("{title} === 'Tap your card'"), LONG)
            .await
    );

    // The service restarts under the open page: the page reconnects by itself, without loading
    // anew (what the page holds survives).
    browser.evaluate("window.openedBefore = true");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    assert!(
        browser.wait_until(&format!("!({connected})"), LONG).await,
        "the page did not notice the restart"
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_line("the screen is served", LONG).await;
    assert!(
        browser.wait_until(connected, LONG).await,
        "the page never reconnected"
    );
    assert_eq!(browser.evaluate("window.openedBefore === true"), true);
    pty.write(&em4100_frame(BILLIE));
    assert!(
        browser
            .wait_until(&format!("{title} === 'Welcome, Billie'"), LONG)
            .await,
        "after the restart the page shows {}",
        browser.evaluate(title)
    );

    // A Wellpass member turned away: the member screen says only "Please see the desk" (the
    // reason is for the staff page); and an unknown card.
    pty.write(&em4100_frame(GABI));
    assert!(
        browser
            .wait_until(&format!("{title} === 'Please see the desk'"), LONG)
            .await,
        "the page shows {}",
        browser.evaluate(title)
    );
    let said = browser.evaluate("document.body.innerText").to_string();
    assert!(!said.contains("expired"), "{said}");
    browser.screenshot(&screenshot_path("screen-member-refused.png"));
    pty.write(&em4100_frame(UNKNOWN));
    assert!(
        browser
            .wait_until(&format!("{title} === 'Card not recognised'"), LONG)
            .await
    );

    // The staff page, live. Billie, who came in after the restart, by first name; Alex, who
    // came in before it, by shortened tag: names are kept in memory only.
    browser.navigate(&format!("http://127.0.0.1:{port}/staff"));
    assert!(
        browser
            .wait_until("document.querySelectorAll('#taps tr').length >= 4", LONG)
            .await,
        "the staff page shows no taps"
    );
    let text = browser.evaluate("document.body.innerText").to_string();
    assert!(
        text.contains("Billie") && text.contains("0x…21A5") && text.contains("entrance"),
        "{text}"
    );
    assert!(
        !text.contains("Zornbrook") && !text.contains(BILLIE) && !text.contains("0x…3C15"),
        "{text}"
    );
    // Unknown cards with every rendering, for enrolling or calibrating; refused admissions.
    assert!(
        text.contains(&format!("0x{UNKNOWN}")) && text.contains("dec-reversed"),
        "{text}"
    );
    assert!(text.contains("Wellpass membership expired"), "{text}");

    // A page left open across an upgrade: when the service comes back as another build, the page
    // loads itself anew. The page is told it was served by an older build.
    browser.evaluate("build = 'an older build'; window.openedBefore = true");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    let _daemon = Daemon::start(&config);
    assert!(
        browser
            .wait_until(
                "window.openedBefore === undefined && document.getElementById('link').textContent === 'live'",
                LONG
            )
            .await,
        "the staff page did not load the new build's page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_service_is_gone_the_screens_say_so_and_they_come_back_by_themselves() {
    // Taps of one card may follow each other: an unknown card's second tap waits behind its
    // first.
    let (_dir, _fake, mut pty, port, config, mut daemon) =
        desk_with("screen-down", |dir, base_url, port, reader| {
            write_config_parts(
                dir,
                base_url,
                EGYM_LIMITS,
                "repeat-window = \"0s\"",
                "trusted-when = \"always\"",
                &format!("listen = \"127.0.0.1:{port}\""),
                reader,
            )
        })
        .await;
    daemon.wait_for_event("reader_connected", LONG).await;
    pty.write(&em4100_frame(ALEX));
    daemon.wait_for_event("delivered", LONG).await;
    pty.write(&em4100_frame(UNKNOWN));
    let unknown = daemon.wait_for_tap(2).await;
    daemon.wait_for_event("unknown_tag", LONG).await;
    // Further apart than the reader's debounce: a second presentation.
    wait_until_past(tapped_at_ms(&unknown) + 100).await;
    pty.write(&em4100_frame(UNKNOWN));
    daemon.wait_for_events("tap_recorded", 3, LONG).await;

    let title = "document.getElementById('title').textContent";
    let subtitle = "document.getElementById('subtitle').textContent";
    let mut member = Browser::start(1280, 800);
    member.navigate(&format!("http://127.0.0.1:{port}/"));
    assert!(
        member
            .wait_until(
                &format!("document.getElementById('link').textContent === '\u{25cf}' && {title} === 'Tap your card'"),
                LONG
            )
            .await,
        "the member screen never connected"
    );
    let mut staff = Browser::start(1280, 800);
    staff.navigate(&format!("http://127.0.0.1:{port}/staff"));
    let stale = "document.body.classList.contains('stale')";
    let updated = "document.getElementById('updatedat').textContent";
    // The unknown card's second tap waits for its enrolment: no delivery delay, no amber.
    assert!(
        staff
            .wait_until(
                "document.getElementById('link').textContent === 'live' \
                 && document.getElementById('waiting').textContent === '1 waiting for enrolment'",
                LONG
            )
            .await,
        "the staff page shows {}",
        staff.evaluate("document.body.innerText")
    );
    assert_eq!(
        (
            staff.evaluate("document.getElementById('pending').textContent"),
            staff.evaluate("document.getElementById('pending').className"),
            staff.evaluate("document.getElementById('oldest').textContent"),
        ),
        (
            serde_json::json!("0 pending"),
            serde_json::json!("ok"),
            serde_json::json!("")
        )
    );
    assert_eq!(staff.evaluate(stale), false);

    // The service stops under both pages.
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(LONG).await.code(), Some(0));
    let stopped = Instant::now();
    assert!(
        member
            .wait_until(&format!("{title} === 'Check-in is out of order'"), LONG)
            .await,
        "with the service stopped, the member screen shows {}",
        member.evaluate(title)
    );
    println!(
        "the member screen said it was out of order {:?} after the service stopped",
        stopped.elapsed()
    );
    assert_eq!(member.evaluate(subtitle), "Please see the desk");
    let (width, height) = member.screenshot(&screenshot_path("screen-member-down.png"));
    assert_eq!((width, height), (1280, 800));

    assert!(
        staff.wait_until(stale, LONG).await,
        "with the service stopped, the staff page shows {}",
        staff.evaluate("document.body.innerText")
    );
    let last_update = staff.evaluate(updated).as_str().unwrap().to_string();
    let at = last_update
        .strip_prefix("Updated ")
        .unwrap_or_else(|| panic!("{last_update}"))
        .to_string();
    let banner = staff
        .evaluate("document.getElementById('stale').hidden ? '' : document.getElementById('stale').textContent");
    assert!(
        banner.as_str().unwrap().starts_with(&format!(
            "No connection to the service since its last update at {at}."
        )),
        "{banner}"
    );
    // What it can no longer vouch for is greyed out.
    for part in [".cards", "table", "#unknown"] {
        let look = staff.evaluate(&format!(
            "(s => s.opacity + ' ' + s.filter)(getComputedStyle(document.querySelector('{part}')))"
        ));
        assert_eq!(look, "0.4 grayscale(1)", "{part}");
    }
    let (width, height) = staff.screenshot(&screenshot_path("screen-staff-down.png"));
    assert_eq!((width, height), (1280, 800));

    // The service is back on the same port: both pages come back by themselves.
    let _daemon = Daemon::start(&config);
    assert!(
        member
            .wait_until(
                &format!("document.getElementById('link').textContent === '\u{25cf}' && {title} === 'Tap your card'"),
                LONG
            )
            .await,
        "after the restart the member screen shows {}",
        member.evaluate(title)
    );
    pty.write(&em4100_frame(BILLIE));
    assert!(
        member
            .wait_until(&format!("{title} === 'Welcome, Billie'"), LONG)
            .await,
        "after the restart the member screen shows {}",
        member.evaluate(title)
    );
    assert!(
        staff
            .wait_until(
                &format!(
                    "!{stale} && document.getElementById('stale').hidden && {updated} !== '{last_update}'"
                ),
                LONG
            )
            .await,
        "after the restart the staff page shows {}",
        staff.evaluate("document.body.innerText")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reason_reaches_member_screens_only_when_staff_chose_to_show_it() {
    let (_dir, _fake, mut pty, port, config, daemon) =
        desk_with("screen-reasons", |dir, base_url, port, reader| {
            write_config_with_screen(
                dir,
                base_url,
                &format!("listen = \"127.0.0.1:{port}\"\nshow-refusal-reasons = true"),
                reader,
            )
        })
        .await;
    let output = gym_checkin()
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("member screen: Wellpass refusals shown with their reason"),
        "{said}"
    );
    let stream = Stream::open(&format!("http://127.0.0.1:{port}/events"), None).await;
    pty.write(&em4100_frame(GABI));
    let refused = stream.title("Wellpass membership expired").await;
    assert_eq!(refused.data["subtitle"], "Please see the desk");
    drop(daemon);
}

/// Seconds since midnight of an `HH:MM:SS` on the page.
fn seconds_of_day(text: &str) -> i64 {
    let parts: Vec<i64> = text.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staff_page_says_who_is_in_since_when_in_local_time_and_flags_a_first_wellpass_visit() {
    let dir = TestDir::new("screen-staff");
    let fake = start_egym(members()).await;
    let mut pty = Pty::open();
    let port = free_port();
    // A second tap of a card is a tap: Billie checks out, an unknown card is tapped twice.
    let config = write_config_parts(
        &dir,
        &fake.base_url(),
        EGYM_LIMITS,
        "repeat-window = \"0s\"",
        "trusted-when = \"always\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        &reader(&pty),
    );
    // The box keeps Berlin's time; the machine the test runs on may keep any.
    let zone = "Europe/Berlin";
    let daemon = Daemon::start_with_env(&config, &[("TZ", zone)]);
    daemon.wait_for_line("the screen is served", LONG).await;
    daemon.wait_for_event("reader_connected", LONG).await;
    let mut member = Browser::start(1280, 800);
    member.navigate(&format!("http://127.0.0.1:{port}/"));
    let title = "document.getElementById('title').textContent";
    assert!(
        member
            .wait_until(
                "document.getElementById('link').textContent === '\u{25cf}'",
                LONG
            )
            .await
    );

    // Berlin's time of day now, in seconds, as the test reads it.
    let berlin_now = || {
        let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::get(zone).unwrap());
        i64::from(now.hour()) * 3600 + i64::from(now.minute()) * 60 + i64::from(now.second())
    };
    // Whether a time of day is from `from` to `to` (across midnight too).
    let within = |at: i64, from: i64, to: i64| {
        (at - from).rem_euclid(86_400) <= (to - from).rem_euclid(86_400)
    };
    let started = berlin_now();

    // Frankie's first Wellpass visit: welcomed to it at the door.
    pty.write(&em4100_frame(FRANKIE));
    assert!(
        member
            .wait_until(
                &format!("{title} === 'Welcome to your first visit, Frankie'"),
                LONG
            )
            .await,
        "the member screen shows {}",
        member.evaluate(title)
    );
    member.screenshot(&screenshot_path("screen-member-first-visit.png"));
    // Alex comes in; an unknown card in and out again, another one in; Billie in and out.
    let mut last: Option<(&str, String)> = None;
    for (n, tag) in [ALEX, UNKNOWN, UNKNOWN, UNKNOWN_TOO, BILLIE, BILLIE]
        .into_iter()
        .enumerate()
    {
        // The same card again further apart than the reader's debounce: a second presentation.
        if let Some((previous, line)) = &last
            && *previous == tag
        {
            wait_until_past(tapped_at_ms(line) + 100).await;
        }
        pty.write(&em4100_frame(tag));
        last = Some((tag, daemon.wait_for_tap(n + 2).await));
    }

    let mut staff = Browser::start(1280, 1100);
    staff.navigate(&format!("http://127.0.0.1:{port}/staff"));
    let text = "document.body.innerText";
    assert!(
        staff
            .wait_until(
                "document.getElementById('insidecount').textContent === '3 members' \
                 && document.getElementById('wellpass').textContent === '1 admitted' \
                 && document.body.innerText.includes('Check-out')",
                LONG
            )
            .await,
        "the staff page shows {}",
        staff.evaluate(text)
    );
    // Times in the box's zone, which the page names.
    let zone_shown = staff.evaluate("document.getElementById('zone').textContent");
    assert!(zone_shown.as_str().unwrap().contains(zone), "{zone_shown}");
    let updated = staff.evaluate("document.getElementById('updatedat').textContent");
    let shown = seconds_of_day(updated.as_str().unwrap().strip_prefix("Updated ").unwrap());
    let read = berlin_now();
    assert!(
        within(shown, started, read),
        "the page says {updated}; Berlin's clock said {started} s into the day before the first \
         tap, {read} s now"
    );

    // In the club now: by first name, since when, for how long; Frankie's first visit flagged;
    // the card EGYM does not know by its shortened tag; Billie, who left, not.
    let inside = |row: usize| {
        format!(
            "Array.from(document.querySelectorAll('#inside tr')[{row}].cells).map(c => c.textContent).join(' | ')"
        )
    };
    let rows: Vec<String> = (0..3)
        .map(|row| staff.evaluate(&inside(row)).as_str().unwrap().to_string())
        .collect();
    println!("in the club: {rows:#?}");
    let frankie: Vec<&str> = rows[0].split(" | ").collect();
    assert_eq!(frankie[0], "Frankie", "{rows:?}");
    assert!(
        within(seconds_of_day(frankie[1]), started, read),
        "Frankie in since {}",
        frankie[1]
    );
    assert!(
        frankie[2] == "under a minute" || frankie[2].ends_with(" min"),
        "{rows:?}"
    );
    assert_eq!(frankie[3], "first Wellpass visit: introductory session");
    assert!(rows[1].starts_with("Alex | "), "{rows:?}");
    assert!(
        rows[2].starts_with("0x…3C4B | ") && rows[2].ends_with("card not known at EGYM"),
        "{rows:?}"
    );

    // The last taps in plain words.
    let page = staff.evaluate(text).as_str().unwrap().to_string();
    for words in [
        "Check-in",
        "Check-out",
        "Sent to EGYM",
        "Card not known at EGYM",
        "tapped twice",
        "first Wellpass visit: introductory session",
    ] {
        assert!(page.contains(words), "no {words:?} in {page}");
    }
    // Billie's check-out: Billie left, and the name with Billie.
    assert!(
        !page.contains("Billie") && page.contains("0x…3C15"),
        "{page}"
    );
    assert!(
        !page.contains("Firstvisit") && !page.contains("Quillfeather"),
        "{page}"
    );
    // Each unknown card has its place for what staff can do about it.
    assert_eq!(
        staff.evaluate(&format!(
            "document.querySelector('.unknown-card[data-rfid=\"0x{UNKNOWN}\"] .actions') !== null"
        )),
        true
    );
    // What is in that place is kept across the page's refreshes (a form being filled in).
    let card = format!("document.querySelector('.unknown-card[data-rfid=\"0x{UNKNOWN}\"]')");
    staff.evaluate(&format!(
        "window.keptCard = {card}; \
         window.keptAt = document.getElementById('updatedat').textContent"
    ));
    assert!(
        staff
            .wait_until(
                "document.getElementById('updatedat').textContent !== window.keptAt",
                LONG
            )
            .await,
        "the staff page was not refreshed"
    );
    assert_eq!(staff.evaluate(&format!("{card} === window.keptCard")), true);
    let (width, height) = staff.screenshot(&screenshot_path("screen-staff.png"));
    assert_eq!((width, height), (1280, 1100));
    drop(daemon);
}

/// How each of `characters` is drawn in the member screen title's font: its advance width, a
/// hash of its pixels, and how many of them are inked and in colour.
fn glyphs(browser: &mut Browser, characters: &[&str]) -> serde_json::Value {
    let list = serde_json::to_string(characters).unwrap();
    browser.evaluate(&format!(
        r#"(() => {{
  const s = getComputedStyle(document.getElementById('title'));
  const font = s.fontWeight + ' 48px ' + s.fontFamily;
  const canvas = document.createElement('canvas');
  canvas.width = 96; canvas.height = 72;
  const g = canvas.getContext('2d', {{ willReadFrequently: true }});
  const look = (ch) => {{
    g.clearRect(0, 0, 96, 72);
    g.font = font; g.fillStyle = '#000'; g.textBaseline = 'top';
    g.fillText(ch, 8, 8);
    const d = g.getImageData(0, 0, 96, 72).data;
    let inked = 0, coloured = 0, hash = 0;
    for (let i = 0; i < d.length; i += 4) {{
      if (d[i + 3] > 0) {{
        inked++;
        if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 40) coloured++;
      }}
      hash = (Math.imul(hash, 31) + d[i + 3]) >>> 0;
    }}
    const span = document.createElement('span');
    span.style.font = font;
    span.style.position = 'absolute';
    span.textContent = ch;
    document.body.appendChild(span);
    const width = span.getBoundingClientRect().width;
    span.remove();
    return {{ width, inked, coloured, hash }};
  }};
  return Object.fromEntries({list}.map((ch) => [ch, look(ch)]));
}})()"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_are_scaled_down_never_cut_and_cjk_and_emoji_names_are_drawn() {
    let (_dir, _fake, mut pty, port, _config, daemon) = desk("screen-names").await;
    let mut browser = Browser::start(1280, 800);
    browser.navigate(&format!("http://127.0.0.1:{port}/"));
    let title = "document.getElementById('title').textContent";
    assert!(
        browser
            .wait_until(
                "document.getElementById('link').textContent === '\u{25cf}'",
                LONG
            )
            .await
    );
    let full_size = browser
        .evaluate("parseFloat(getComputedStyle(document.getElementById('title')).fontSize)")
        .as_f64()
        .unwrap();

    // A first name with no space, wider than the screen: scaled down until all of it shows.
    pty.write(&em4100_frame(LONG_NAMED));
    assert!(
        browser
            .wait_until(&format!("{title} === 'Welcome, {LONG_NAME}'"), LONG)
            .await,
        "the page shows {}",
        browser.evaluate(title)
    );
    let fit = browser.evaluate(
        "(() => { const t = document.getElementById('title'); const r = document.createRange();          r.selectNodeContents(t); const b = r.getBoundingClientRect();          return { left: b.left, right: b.right, top: b.top, bottom: b.bottom,                   width: innerWidth, height: innerHeight,                   size: parseFloat(getComputedStyle(t).fontSize),                   scroll: t.scrollWidth, client: t.clientWidth }; })()",
    );
    println!("a long name at {full_size}px → {fit}");
    let at = |key: &str| fit[key].as_f64().unwrap();
    assert!(
        at("left") >= 0.0
            && at("right") <= at("width")
            && at("top") >= 0.0
            && at("bottom") <= at("height")
            && at("scroll") <= at("client"),
        "the name is cut off: {fit}"
    );
    assert!(at("size") < full_size, "not scaled down: {fit}");
    browser.screenshot(&screenshot_path("screen-member-long-name.png"));

    // An empty first name: "Welcome", no trailing comma. (A card not seen yet is answered
    // "One moment" until its lookup and post are done: "Welcome" comes with what the lookup
    // said of the name.)
    pty.write(&em4100_frame(NAMELESS));
    daemon.wait_for_events("delivered", 2, LONG).await;
    assert!(
        browser
            .wait_until(&format!("{title} === 'Welcome'"), LONG)
            .await,
        "the page shows {}",
        browser.evaluate(title)
    );

    // A name in Japanese with an emoji: drawn, not as empty boxes.
    pty.write(&em4100_frame(MISAKI));
    assert!(
        browser
            .wait_until(&format!("{title} === 'Welcome, {CJK_NAME}'"), LONG)
            .await,
        "the page shows {}",
        browser.evaluate(title)
    );
    browser.screenshot(&screenshot_path("screen-member-cjk.png"));
    // Two code points no font has: both drawn as the same empty box, the one to tell apart.
    let drawn = glyphs(&mut browser, &["美", "咲", "🌸", "\u{378}", "\u{379}"]);
    println!("glyphs: {drawn}");
    let none = &drawn["\u{378}"];
    assert_eq!(
        drawn["\u{379}"]["hash"], none["hash"],
        "two missing glyphs drawn differently: the check cannot tell a box"
    );
    for cjk in ["美", "咲"] {
        let glyph = &drawn[cjk];
        assert!(
            glyph["inked"].as_u64().unwrap() > 0
                && glyph["hash"] != none["hash"]
                && glyph["width"] != none["width"],
            "{cjk} is drawn as an empty box ({glyph} against {none}): install fonts-noto-cjk"
        );
    }
    assert_ne!(drawn["美"]["hash"], drawn["咲"]["hash"]);
    assert!(
        drawn["🌸"]["coloured"].as_u64().unwrap() > 0 && drawn["🌸"]["hash"] != none["hash"],
        "the emoji is not drawn in colour ({}): install fonts-noto-color-emoji",
        drawn["🌸"]
    );
    drop(daemon);
}
