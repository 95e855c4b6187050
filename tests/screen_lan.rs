//! The screen on a LAN, served by the real binary on every address: from another machine every
//! page and stream needs the token (the member screen too), the box's own browser keeps the
//! member screen without it; a kiosk gets the token once through a one-time address and keeps
//! it in a cookie; `HEAD` is answered like `GET`; and one client cannot take every connection.
//!
//! "Another machine" is this machine's own address on its network: a connection to it comes
//! from it, not from loopback, exactly as the service sees a tablet's ([`lan_address`]).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Instant;

use common::browser::{Browser, screenshot_path};
use common::*;

const ALEX: &str = "0C000621A5";
/// With characters that a query string must carry percent-encoded.
const TOKEN: &str = "3f9b+2c1d/screen=token-6e0a";

fn in_query(token: &str) -> String {
    url::form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

/// The service with its screen on every address (`0.0.0.0`), the token in a file, a pty
/// reader and the stand-in EGYM; waits until the screen is served.
async fn desk_on_lan(name: &str) -> (TestDir, FakeEgym, Pty, u16, Daemon) {
    let dir = TestDir::new(name);
    let fake = start_egym(vec![Member::new(
        &format!("0x{ALEX}"),
        "acc-alex",
        "Alex Quillfeather",
    )])
    .await;
    let pty = Pty::open();
    let port = free_port_everywhere();
    let token_file = dir.path("screen-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = write_config_with_screen(
        &dir,
        &fake.base_url(),
        &format!(
            "listen = \"0.0.0.0:{port}\"\ntoken-file = \"{}\"",
            token_file.display()
        ),
        &serial_reader(
            "entrance",
            &pty.slave_path,
            "em4100",
            "debounce = \"100ms\"",
        ),
    );
    let daemon = Daemon::start(&config);
    daemon.wait_for_line("the screen is served", LONG).await;
    daemon.wait_for_event("reader_connected", LONG).await;
    (dir, fake, pty, port, daemon)
}

/// An HTTP/1.1 answer, read whole: the status, the headers (names in lower case) and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` from `from` to `to` by hand (so that nothing follows a redirect, keeps a
/// cookie or adds a header of its own), with `headers`, and reads the answer. A stream's answer
/// is read up to its first event.
fn request(
    from: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut stream = connect_from(from, to);
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        host_of(to)
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) => panic!("{method} {path}: {e} after {raw:?}"),
        }
        // An event stream does not end: its first event is enough.
        if raw.windows(13).any(|w| w == b"event: hello\n") {
            break;
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// The `Host` a browser sends for `to`.
fn host_of(to: SocketAddr) -> String {
    match to.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", to.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", to.port()),
    }
}

/// A TCP connection to `to` whose source address is `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let family = match to {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket, bind and connect on a descriptor made here, with sockaddrs of the sizes
    // given; the descriptor is handed to a TcpStream, which closes it, once.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let (source, length) = sockaddr(SocketAddr::new(from, 0));
        assert_eq!(
            libc::bind(fd, source.as_ptr().cast(), length),
            0,
            "bind to {from}: {}",
            std::io::Error::last_os_error()
        );
        let (target, length) = sockaddr(to);
        assert_eq!(
            libc::connect(fd, target.as_ptr().cast(), length),
            0,
            "connect from {from} to {to}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

/// `to` as the bytes of a sockaddr, and their length.
fn sockaddr(to: SocketAddr) -> (Vec<u8>, libc::socklen_t) {
    match to {
        SocketAddr::V4(v4) => {
            let address = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let size = size_of::<libc::sockaddr_in>();
            // SAFETY: a plain struct read as its bytes.
            let bytes =
                unsafe { std::slice::from_raw_parts((&raw const address).cast::<u8>(), size) };
            (bytes.to_vec(), size as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let address = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            let size = size_of::<libc::sockaddr_in6>();
            // SAFETY: a plain struct read as its bytes.
            let bytes =
                unsafe { std::slice::from_raw_parts((&raw const address).cast::<u8>(), size) };
            (bytes.to_vec(), size as libc::socklen_t)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_the_box_every_page_and_stream_needs_the_token_and_the_box_keeps_its_member_screen() {
    let (_dir, _fake, _pty, port, daemon) = desk_on_lan("lan-rules").await;
    let lan = lan_address();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let on_lan = SocketAddr::new(lan, port);
    let on_box = SocketAddr::new(loopback, port);
    println!("a client on the LAN is {lan}");
    let bearer = format!("Bearer {TOKEN}");

    let get = |from: IpAddr, to: SocketAddr, path: &str, headers: &[(&str, &str)]| {
        request(from, to, "GET", path, headers).status
    };
    // From another machine: nothing without the token but /health.
    for path in [
        "/",
        "/events",
        "/staff",
        "/events?staff=1",
        "/metrics",
        "/nothing",
    ] {
        assert_eq!(get(lan, on_lan, path, &[]), 401, "GET {path} from {lan}");
        assert_eq!(
            get(
                lan,
                on_lan,
                path,
                &[("Authorization", "Bearer wrong-token-wrong-token")]
            ),
            401,
            "GET {path} from {lan} with a wrong token"
        );
    }
    assert_eq!(get(lan, on_lan, "/health", &[]), 200);
    let refused = request(lan, on_lan, "GET", "/", &[]);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("?token="),
        "the refusal says how to give the token: {refused:?}"
    );
    // With it, everything.
    for path in ["/", "/events", "/staff", "/events?staff=1", "/metrics"] {
        assert_eq!(
            get(lan, on_lan, path, &[("Authorization", &bearer)]),
            200,
            "GET {path} from {lan} with the token"
        );
    }
    // On the box itself: the member screen and its stream need no token; the staff page, its
    // stream and /metrics do, as before.
    assert_eq!(get(loopback, on_box, "/", &[]), 200);
    assert_eq!(get(loopback, on_box, "/events", &[]), 200);
    for path in ["/staff", "/events?staff=1", "/metrics"] {
        assert_eq!(
            get(loopback, on_box, path, &[]),
            401,
            "GET {path} on the box"
        );
    }
    // A page on the box whose name was rebound to 127.0.0.1 is no page of the box's own.
    let rebound = {
        let mut stream = connect_from(loopback, on_box);
        stream.set_read_timeout(Some(LONG)).unwrap();
        write!(
            stream,
            "GET /events HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or("").to_string()
    };
    assert!(rebound.contains(" 401 "), "{rebound}");

    // The one-time address: the token goes into a cookie, and the browser is sent on without
    // it in the address.
    let once = request(
        lan,
        on_lan,
        "GET",
        &format!("/?reader=entrance&token={}", in_query(TOKEN)),
        &[],
    );
    assert_eq!(once.status, 303, "{once:?}");
    assert_eq!(once.header("location"), Some("/?reader=entrance"));
    let set_cookie = once.header("set-cookie").unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
            && set_cookie.contains("Max-Age="),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(
        !cookie.contains(TOKEN),
        "the cookie's value is encoded: {cookie}"
    );
    for path in ["/", "/events", "/staff", "/events?staff=1"] {
        let answer = request(lan, on_lan, "GET", path, &[("Cookie", &cookie)]);
        assert_eq!(answer.status, 200, "GET {path} with the cookie: {answer:?}");
        // Set again, so a browser that keeps using it keeps it.
        assert_eq!(
            answer
                .header("set-cookie")
                .map(|c| c.split(';').next().unwrap()),
            Some(cookie.as_str()),
            "GET {path}"
        );
    }
    let wrong = request(lan, on_lan, "GET", "/?token=wrong", &[]);
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.header("set-cookie").is_none());

    // HEAD is answered as GET is, without the body.
    for (from, to, path, headers) in [
        (loopback, on_box, "/", vec![]),
        (
            lan,
            on_lan,
            "/staff",
            vec![("Authorization", bearer.as_str())],
        ),
        (lan, on_lan, "/health", vec![]),
    ] {
        let got = request(from, to, "GET", path, &headers);
        let head = request(from, to, "HEAD", path, &headers);
        assert_eq!(head.status, got.status, "HEAD {path}");
        for name in ["content-type", "content-length", "cache-control"] {
            assert_eq!(head.header(name), got.header(name), "HEAD {path}: {name}");
        }
        assert!(got.header("content-length").is_some(), "GET {path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body: {head:?}");
        assert!(!got.body.is_empty(), "GET {path}");
    }
    let head = request(loopback, on_box, "HEAD", "/events", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(head.body.is_empty(), "{head:?}");
    assert_eq!(request(lan, on_lan, "HEAD", "/", &[]).status, 401);
    assert_eq!(
        request(
            lan,
            on_lan,
            "HEAD",
            "/metrics",
            &[("Authorization", &bearer)]
        )
        .status,
        200
    );
    let post = request(loopback, on_box, "POST", "/", &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holding_200_streams_leaves_the_kiosk_its_screen() {
    const STREAMS: usize = 200;
    let (_dir, fake, mut pty, port, daemon) = desk_on_lan("lan-limits").await;
    let lan = lan_address();
    let on_lan = SocketAddr::new(lan, port);
    let bearer = format!("Bearer {TOKEN}");
    // One device on the LAN opens 200 event streams, each with the token, and holds them.
    let mut streams: Vec<TcpStream> = (0..STREAMS).map(|_| connect_from(lan, on_lan)).collect();
    // Each is served, or closed at once (its request then finds it closed, or its answer is
    // the end): count which, and keep those served.
    let mut closed = 0;
    streams.retain_mut(|stream| {
        stream.set_read_timeout(Some(LONG)).unwrap();
        let asked = write!(
            stream,
            "GET /events HTTP/1.1\r\nHost: {}\r\nAuthorization: {bearer}\r\n\r\n",
            host_of(on_lan)
        );
        let mut first = [0u8; 12];
        match asked.and_then(|()| stream.read_exact(&mut first)) {
            Ok(()) if first.starts_with(b"HTTP/1.1 200") => true,
            Ok(()) => panic!("{:?}", String::from_utf8_lossy(&first)),
            Err(_) => {
                closed += 1;
                false
            }
        }
    });
    let served = streams.len();
    println!("{STREAMS} streams from {lan}: {served} served, {closed} closed at once");
    assert_eq!(served, gym_checkin::screen::MAX_CONNECTIONS_PER_CLIENT);
    assert_eq!(closed, STREAMS - served);
    daemon
        .wait_for_line(
            &format!(
                "the screen holds {} connections from {lan} already",
                gym_checkin::screen::MAX_CONNECTIONS_PER_CLIENT
            ),
            LONG,
        )
        .await;

    // The kiosk on the box opens its page, and answers a tap, while that device holds on.
    let mut kiosk = Browser::start(1280, 800);
    kiosk.navigate(&format!("http://127.0.0.1:{port}/"));
    let title = "document.getElementById('title').textContent";
    assert!(
        kiosk
            .wait_until(
                "document.getElementById('link').textContent === '\u{25cf}'",
                LONG
            )
            .await,
        "the kiosk never connected"
    );
    let tapped = Instant::now();
    pty.write(&em4100_frame(ALEX));
    assert!(
        kiosk
            .wait_until(&format!("{title} === 'Welcome, Alex'"), LONG)
            .await,
        "the kiosk shows {}",
        kiosk.evaluate(title)
    );
    println!(
        "tap to the kiosk's greeting with {served} streams held by another client: {:?}",
        tapped.elapsed()
    );
    assert!(fake.wait_for(LONG, |r| count_visits(r) == 1).await.0);
    // The device's streams are still there, and heard the tap too.
    let mut heard = String::new();
    let stream = &mut streams[0];
    stream.set_nonblocking(true).unwrap();
    let welcome = poll(LONG, || {
        let mut buffer = [0u8; 4096];
        if let Ok(n) = stream.read(&mut buffer) {
            heard.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        heard.contains("Welcome, Alex").then_some(())
    })
    .await;
    assert!(welcome.is_some(), "a held stream heard: {heard}");
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_tablet_opens_the_one_time_address_once_and_keeps_the_screen() {
    let (_dir, _fake, mut pty, port, daemon) = desk_on_lan("lan-kiosk").await;
    let lan = lan_address();
    let base = format!("http://{}", host_of(SocketAddr::new(lan, port)));
    let mut tablet = Browser::start(1280, 800);
    let title = "document.getElementById('title').textContent";
    let connected = "document.getElementById('link').textContent === '\u{25cf}'";
    // Without the token, the page is refused.
    tablet.navigate(&format!("{base}/"));
    assert!(
        tablet
            .wait_until("document.body.innerText.includes('needs its token')", LONG)
            .await,
        "the page without the token shows {}",
        tablet.evaluate("document.body.innerText")
    );
    // Set up once: the one-time address, as the README says.
    tablet.navigate(&format!("{base}/?token={}", in_query(TOKEN)));
    assert!(
        tablet.wait_until(connected, LONG).await,
        "the page never connected"
    );
    assert_eq!(tablet.evaluate("location.href"), format!("{base}/"));
    // The page's scripts cannot read the token.
    assert_eq!(tablet.evaluate("document.cookie"), "");
    pty.write(&em4100_frame(ALEX));
    assert!(
        tablet
            .wait_until(&format!("{title} === 'Welcome, Alex'"), LONG)
            .await,
        "the tablet shows {}",
        tablet.evaluate(title)
    );
    // Loaded again later (a restart of the tablet's browser keeps its cookies on disk), with
    // nobody typing the token.
    tablet.navigate(&format!("{base}/"));
    assert!(
        tablet
            .wait_until(&format!("{connected} && {title} === 'Tap your card'"), LONG)
            .await,
        "the tablet shows {}",
        tablet.evaluate("document.body.innerText")
    );
    tablet.screenshot(&screenshot_path("screen-member-tablet.png"));
    drop(daemon);
}
