//! The staff page's Enrol action, served by the real binary: the screen's token on every
//! address, the same-origin and CSRF checks on its POSTs, and an unknown card enrolled from the
//! page in headless Chromium, its waiting tap delivered to the stand-in EGYM with its tap time.

mod common;

use common::*;
use serde_json::{Value, json};

/// A card no member has yet, as an RDM6300 reads it.
const NEW_CARD: &str = "0A0B0C0D0E";
const ALEX_CARD: &str = "0C000621A5";
const TOKEN: &str = "staff-token-5c2e91d0a7";

fn members() -> Vec<Member> {
    vec![
        Member::new(&format!("0x{ALEX_CARD}"), "acc-alex", "Alex Quillfeather"),
        Member::new("0x1EA68671", "acc-pat", "Pat Member")
            .enrolled_as("MIFARE")
            .email("pat@example.invalid"),
    ]
}

/// The service with its screen on 127.0.0.1, with the screen's token or without, a pty reader
/// `entrance` and the stand-in EGYM. Waits until the screen is served.
async fn desk(name: &str, token: bool) -> (TestDir, FakeEgym, Pty, u16, Daemon) {
    let dir = TestDir::new(name);
    let fake = start_egym(members()).await;
    let pty = Pty::open();
    let port = free_port();
    let mut screen = format!("listen = \"127.0.0.1:{port}\"");
    if token {
        let token_file = dir.path("screen-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        screen.push_str(&format!("\ntoken-file = \"{}\"", token_file.display()));
    }
    let reader = serial_reader(
        "entrance",
        &pty.slave_path,
        "em4100",
        "debounce = \"100ms\"",
    );
    let config = write_config_with_screen(&dir, &fake.base_url(), &screen, &reader);
    let daemon = Daemon::start(&config);
    daemon.wait_for_line("the screen is served", LONG).await;
    (dir, fake, pty, port, daemon)
}

/// A POST of `body` as JSON to the screen, with the headers `change` adds.
async fn post(
    port: u16,
    path: &str,
    body: Value,
    change: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (u16, Value) {
    post_as(port, path, "application/json", body, change).await
}

/// A POST of `body` as `content_type` to the screen, with the headers `change` adds.
async fn post_as(
    port: u16,
    path: &str,
    content_type: &str,
    body: Value,
    change: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (u16, Value) {
    let request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", content_type)
        .body(body.to_string());
    let response = change(request).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The page's CSRF token, as the page gets it.
async fn csrf_token(port: u16) -> String {
    let answer: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/staff/enrol"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["available"], true, "{answer}");
    answer["csrf"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_screens_token_the_page_cannot_enrol_even_on_loopback() {
    let (_dir, fake, _pty, port, daemon) = desk("enrol-page-no-token", false).await;
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/staff/enrol"))
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["refused"]["reason"], "off", "{answer}");
    assert!(
        answer["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the screen's token: set [screen] token-file"),
        "{answer}"
    );
    let (status, _) = post(
        port,
        "/staff/enrol",
        json!({"reader": "entrance", "rfid": format!("0x{NEW_CARD}"),
               "member": "pat@example.invalid", "account_id": "acc-pat"}),
        |r| r.header("origin", format!("http://127.0.0.1:{port}")),
    )
    .await;
    assert_eq!(status, 403);
    // The staff page itself is there, open on loopback as before.
    let page = reqwest::get(format!("http://127.0.0.1:{port}/staff"))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(fake.received().is_empty(), "{:#?}", fake.received());
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_staff_page_s_own_post_with_its_csrf_token_enrols_and_it_is_logged() {
    let (_dir, fake, _pty, port, daemon) = desk("enrol-page-csrf", true).await;
    let origin = format!("http://127.0.0.1:{port}");
    let csrf = csrf_token(port).await;
    let asked = json!({"reader": "entrance", "rfid": format!("0x{NEW_CARD}"),
                       "member": "pat@example.invalid"});
    // Each part missing or wrong: refused, and EGYM is never asked.
    type Change<'a> = Box<dyn FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder + 'a>;
    let cases: Vec<(&str, u16, Change)> = vec![
        (
            "no token",
            401,
            Box::new(|r| r.header("origin", &origin).header("x-csrf-token", &csrf)),
        ),
        (
            "a wrong token",
            401,
            Box::new(|r| {
                r.bearer_auth("not-the-staff-token")
                    .header("origin", &origin)
                    .header("x-csrf-token", &csrf)
            }),
        ),
        (
            "no Origin",
            403,
            Box::new(|r| r.bearer_auth(TOKEN).header("x-csrf-token", &csrf)),
        ),
        (
            "another site's Origin",
            403,
            Box::new(|r| {
                // Another origin by its port alone: nothing is contacted at that address.
                r.bearer_auth(TOKEN)
                    .header("origin", "http://127.0.0.1:1")
                    .header("x-csrf-token", &csrf)
            }),
        ),
        (
            "a cross-site fetch",
            403,
            Box::new(|r| {
                r.bearer_auth(TOKEN)
                    .header("origin", &origin)
                    .header("sec-fetch-site", "cross-site")
                    .header("x-csrf-token", &csrf)
            }),
        ),
        (
            "no CSRF token",
            403,
            Box::new(|r| r.bearer_auth(TOKEN).header("origin", &origin)),
        ),
        (
            "a wrong CSRF token",
            403,
            Box::new(|r| {
                r.bearer_auth(TOKEN)
                    .header("origin", &origin)
                    .header("x-csrf-token", "0".repeat(32))
            }),
        ),
        (
            "a form's body",
            400,
            Box::new(|r| {
                r.bearer_auth(TOKEN)
                    .header("origin", &origin)
                    .header("x-csrf-token", &csrf)
                    .header("content-type", "application/x-www-form-urlencoded")
            }),
        ),
    ];
    for (what, expected, change) in cases {
        let (status, body) = post(port, "/staff/enrol/preview", asked.clone(), change).await;
        assert_eq!(status, expected, "{what}: {body}");
    }
    let (status, _) = post(port, "/staff/enrol", asked.clone(), |r| r).await;
    assert_eq!(status, 401);
    // A form's body, which any site can make a browser send here without asking first.
    let (status, body) = post_as(
        port,
        "/staff/enrol/preview",
        "text/plain",
        asked.clone(),
        |r| {
            r.bearer_auth(TOKEN)
                .header("origin", &origin)
                .header("x-csrf-token", &csrf)
        },
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let get = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/staff/enrol/preview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert!(fake.received().is_empty(), "{:#?}", fake.received());

    // The page's own: the member, their cards, the card as it would be enrolled.
    let page = |r: reqwest::RequestBuilder| {
        r.bearer_auth(TOKEN)
            .header("origin", &origin)
            .header("sec-fetch-site", "same-origin")
            .header("x-csrf-token", &csrf)
    };
    let (status, preview) = post(port, "/staff/enrol/preview", asked.clone(), page).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["first_name"], "Pat");
    assert_eq!(preview["account_id"], "acc-pat");
    assert_eq!(
        preview["cards"],
        json!([{"tag": "0x…8671", "tag_format": "MIFARE"}])
    );
    assert_eq!(
        preview["card"],
        json!({"tag": "0x…0D0E", "tag_format": null})
    );
    assert!(fake.cards("acc-pat").len() == 1, "a preview writes nothing");

    let mut confirm = asked.clone();
    confirm["account_id"] = json!("acc-pat");
    let (status, done) = post(port, "/staff/enrol", confirm, page).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["tag"], "0x…0D0E");
    assert_eq!(fake.cards("acc-pat").len(), 2);
    let line = daemon.wait_for_event("card_enrolled", LONG).await;
    assert!(
        line.contains("client=staff page at 127.0.0.1:"),
        "the client's address: {line}"
    );
    assert_eq!(field(&line, "account_id"), Some("acc-pat"));
    assert_eq!(field(&line, "tag"), Some("0x…0D0E"));

    // The requests were the service's own, counted by its client (whose bucket delivery uses).
    let metrics = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "gym_checkin_egym_request_duration_seconds_count{call=\"account\"} 2",
        "gym_checkin_egym_request_duration_seconds_count{call=\"rfids\"} 1",
        "gym_checkin_egym_request_duration_seconds_count{call=\"add_rfid\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }

    // Alex's card for Pat: refused, Alex not named.
    let alex = json!({"reader": "entrance", "rfid": format!("0x{ALEX_CARD}"),
                      "member": "pat@example.invalid"});
    let (status, refused) = post(port, "/staff/enrol/preview", alex, page).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["refused"]["reason"], "held_by_another_member");
    assert!(!refused.to_string().contains("Alex"), "{refused}");
}

/// What a member screen's event stream has said so far, collected as it comes.
struct MemberStream {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl MemberStream {
    async fn open(port: u16) -> MemberStream {
        let mut response = reqwest::get(format!("http://127.0.0.1:{port}/events"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(chunk)) = response.chunk().await {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        });
        MemberStream { text, task }
    }

    /// Waits until the stream has said `text`.
    async fn wait_for(&self, text: &str) {
        assert!(
            wait_until(LONG, || self.text.lock().unwrap().contains(text)).await,
            "the member screen never heard {text:?}: {}",
            self.text.lock().unwrap()
        );
    }
}

impl Drop for MemberStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_enrol_an_unknown_card_from_the_page_and_its_waiting_tap_reaches_egym_with_its_time()
{
    use common::browser::{Browser, screenshot_path};
    let (_dir, fake, mut pty, port, daemon) = desk("enrol-page-browser", true).await;
    let member_screen = MemberStream::open(port).await;
    let mut browser = Browser::start(1280, 800);
    browser.navigate(&format!("http://127.0.0.1:{port}/staff?token={TOKEN}"));
    assert!(
        browser
            .wait_until(
                "document.getElementById('link').textContent === 'live'",
                LONG
            )
            .await,
        "the staff page never connected"
    );

    // A new member taps a card EGYM does not know: it waits for its enrolment.
    pty.write(&em4100_frame(NEW_CARD));
    daemon.wait_for_event("unknown_tag", LONG).await;
    let tapped_at_ms = daemon.recorded()[0].tapped_at_ms;
    let button = "document.querySelector('#unknown button.enrol')";
    assert!(
        browser
            .wait_until(&format!("{button} !== null"), LONG)
            .await,
        "no Enrol action for the unknown card: {}",
        browser.evaluate("document.getElementById('unknown').innerText")
    );
    browser.evaluate(&format!("{button}.click()"));
    assert!(
        browser
            .wait_until(
                "document.getElementById('enrol-dialog').open \
                 && document.getElementById('enrol-dialog').dataset.ready === 'yes'",
                LONG
            )
            .await,
        "the dialog never got ready: {}",
        browser.evaluate("document.getElementById('enrol-dialog').innerText")
    );
    browser.evaluate(
        "document.getElementById('enrol-member').value = 'pat@example.invalid'; \
         document.getElementById('enrol-look').click()",
    );
    // The member's first name and the card already enrolled; nothing is written yet.
    assert!(
        browser
            .wait_until(
                "document.getElementById('enrol-name')?.textContent === 'Pat'",
                LONG
            )
            .await,
        "the dialog shows {}",
        browser.evaluate("document.getElementById('enrol-dialog').innerText")
    );
    let dialog = browser
        .evaluate("document.getElementById('enrol-dialog').innerText")
        .to_string();
    assert!(
        dialog.contains("0x…8671 (tagFormat MIFARE)")
            && dialog.contains("Enrol card 0x…0D0E (no tagFormat) for Pat?"),
        "{dialog}"
    );
    assert_eq!(fake.cards("acc-pat").len(), 1);
    let (width, height) = browser.screenshot(&screenshot_path("screen-staff-enrol.png"));
    assert_eq!((width, height), (1280, 800));

    let confirmed = std::time::Instant::now();
    browser.evaluate("document.getElementById('enrol-confirm').click()");
    let (delivered, received) = fake
        .wait_for(LONG, |r| {
            visits(r)
                .iter()
                .any(|(account, what, _)| account == "acc-pat" && what == "checkins")
        })
        .await;
    assert!(delivered, "{received:#?}\n{}", daemon.lines().join("\n"));
    println!(
        "Enrol clicked to the waiting tap at EGYM: {:?}",
        confirmed.elapsed()
    );
    // The tap that waited, with the time it was made.
    assert_eq!(
        visits(&received),
        vec![("acc-pat".into(), "checkins".into(), tapped_at_ms)]
    );
    assert_eq!(fake.cards("acc-pat").len(), 2);
    assert!(
        browser
            .wait_until(
                "document.getElementById('enrol-said').textContent.includes('enrolled')",
                LONG
            )
            .await,
        "{}",
        browser.evaluate("document.getElementById('enrol-dialog').innerText")
    );
    // The staff page no longer lists the card as unknown, and shows its tap delivered; the
    // member, still at the desk, is greeted on the member screen.
    assert!(
        browser
            .wait_until(
                &format!("!document.getElementById('unknown').innerText.includes('0x{NEW_CARD}')"),
                LONG
            )
            .await,
        "{}",
        browser.evaluate("document.getElementById('unknown').innerText")
    );
    assert!(
        browser
            .wait_until(
                "document.getElementById('taps').innerText.includes('Sent to EGYM')",
                LONG
            )
            .await,
        "{}",
        browser.evaluate("document.getElementById('taps').innerText")
    );
    member_screen.wait_for("\"title\":\"Welcome, Pat\"").await;
    drop(daemon);
}
