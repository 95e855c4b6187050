//! Debian's Chromium, headless, driven through the DevTools protocol over
//! `--remote-debugging-pipe`: commands are JSON messages ended by a NUL byte, written to the
//! browser's file descriptor 3; answers and events come back on its descriptor 4. Nothing is
//! downloaded: the browser is the package `.ci/run` installs.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless browser with one page open.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: super::TestDir,
}

impl Browser {
    /// Starts Chromium with a page of `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "Chromium is not installed at {CHROMIUM}: the screen's browser test drives it. \
             Install Debian's chromium package (apt-get install chromium), as .ci/run does"
        );
        let profile = super::TestDir::new("chromium");
        let (browser_reads, to_browser) = std::io::pipe().unwrap();
        let (from_browser, browser_writes) = std::io::pipe().unwrap();
        let reads = OwnedFd::from(browser_reads);
        let writes = OwnedFd::from(browser_writes);
        let (read_fd, write_fd) = (reads.as_raw_fd(), writes.as_raw_fd());
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl and dup2 run between fork and exec, on descriptors open in the
        // parent; both are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                // The pipe's ends may already be 3 or 4 (tests open and close descriptors side
                // by side): copied above them first, neither overwrites the other, and dup2
                // always makes a new descriptor, without close-on-exec (dup2 onto itself would
                // keep the flag, and the browser would find the descriptor closed).
                let read_copy = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let write_copy = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if read_copy < 0
                    || write_copy < 0
                    || libc::dup2(read_copy, 3) < 0
                    || libc::dup2(write_copy, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        drop(reads);
        drop(writes);
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_browser);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && sender.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands: to_browser,
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call(
            "Target.createTarget",
            json!({ "url": "about:blank" }),
            false,
        );
        let session = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
            false,
        );
        browser.session = session["sessionId"].as_str().unwrap().to_string();
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            true,
        );
        browser.call("Page.enable", json!({}), true);
        browser
    }

    /// Sends a command (to the page's session, or to the browser) and waits for its answer.
    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        match self.try_call(method, params, on_page) {
            Ok(result) => result,
            Err(error) => panic!("{method}: {error}"),
        }
    }

    /// As [`Browser::call`], with Chromium's error as an `Err`.
    fn try_call(&mut self, method: &str, params: Value, on_page: bool) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        self.commands.flush().unwrap();
        let deadline = Instant::now() + super::LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} from Chromium"));
            if answer["id"] == id {
                return match answer.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }), true);
    }

    /// The value of a JavaScript expression in the page.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
            true,
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page, at most `timeout`. A page that is loading
    /// anew (it reloads itself, say) cannot answer for a moment: that is "not yet".
    #[must_use = "`false` says the deadline passed: assert on it"]
    pub async fn wait_until(&mut self, expression: &str, timeout: Duration) -> bool {
        super::wait_until(timeout, || {
            let asked = json!({ "expression": expression, "returnByValue": true });
            match self.try_call("Runtime.evaluate", asked, true) {
                Ok(result) => result["result"]["value"] == json!(true),
                Err(error) if navigating(&error) => false,
                Err(error) => panic!("Runtime.evaluate: {error}"),
            }
        })
        .await
    }

    /// A PNG of the page, saved at `path`; returns its width and height in pixels.
    pub fn screenshot(&mut self, path: &Path) -> (u32, u32) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }), true);
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG", "not a PNG");
        std::fs::write(path, &png).unwrap();
        let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (dimension(16), dimension(20))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Chromium refused an evaluation because the page was navigating: its document went
/// while it was asked, or the new one has no context yet.
fn navigating(error: &Value) -> bool {
    let message = error["message"].as_str().unwrap_or_default();
    message.contains("navigated or closed") || message.contains("Cannot find context")
}

/// Where a test keeps the screenshots it takes.
pub fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}
