//! Tidy checks: the rules ARCHITECTURE.md states, checked by reading the source, as
//! rust-analyzer's tidy tests do. Each names the file and line that breaks one.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` but the test modules kept in files of their own (`tests.rs`),
/// with its text, paths relative to `src/`.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, text)
        })
        .collect()
}

/// A file's code before its `#[cfg(test)]` module (tests may do what the code may not).
fn code_of(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |end| &text[..end])
}

/// Lines of the code (comments left out) that contain any of `needles`: `file:line: text`.
fn offending(files: &[(String, String)], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, text) in files {
        for (i, line) in code_of(text).lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|n| code.contains(n)) {
                found.push(format!("src/{name}:{}: {}", i + 1, code));
            }
        }
    }
    found
}

/// Fails, listing `found`, unless it is empty.
fn assert_none(found: Vec<String>, what: &str) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

fn outside(files: &[(String, String)], dirs: &[&str]) -> Vec<(String, String)> {
    files
        .iter()
        .filter(|(name, _)| !dirs.iter().any(|d| name.starts_with(d)))
        .cloned()
        .collect()
}

#[test]
fn sql_is_written_only_in_the_store() {
    let files = sources();
    let sql = offending(
        &outside(&files, &["store/"]),
        &[
            "SELECT ",
            "INSERT INTO",
            "INSERT OR",
            "UPDATE events",
            "DELETE FROM",
            "CREATE TABLE",
            "rusqlite::",
        ],
    );
    assert_none(sql, "SQL outside src/store/");
    // The check does find what it looks for.
    assert!(!offending(&files, &["INSERT INTO"]).is_empty());
}

#[test]
fn egym_paths_and_headers_are_known_only_to_the_client() {
    let files = sources();
    let egym = offending(
        &outside(&files, &["egym/"]),
        &[
            "/api/v2",
            "x-api-key",
            "X-RateLimit",
            "x-ratelimit",
            "accounts/rfid",
        ],
    );
    assert_none(egym, "EGYM's API outside src/egym/");
    assert!(!offending(&files, &["x-api-key"]).is_empty());
}

#[test]
fn the_wall_clock_is_read_only_through_the_clock() {
    let files = sources();
    let reads = offending(
        &outside(&files, &["clock/"]),
        &[
            "SystemTime::now",
            "Timestamp::now",
            "Zoned::now",
            "UNIX_EPOCH.elapsed",
        ],
    );
    assert_none(reads, "the wall clock read outside src/clock/");
    // Every timer and deadline goes through the clock (`clock::timer`, `Clock::sleep_until`),
    // on tokio's clock, which a test pauses and moves together with steady time; std's Instant
    // would run on in a paused test.
    let timers = offending(
        &outside(&files, &["clock/"]),
        &[
            "std::time::Instant",
            "std::time::{Duration, Instant}",
            "tokio::time",
        ],
    );
    assert_none(
        timers,
        "a timer outside src/clock/ (use clock::timer or Clock::sleep_until)",
    );
}

#[test]
fn pure_parts_read_no_clock_and_do_no_io() {
    let files = sources();
    let pure: Vec<(String, String)> = files
        .iter()
        .filter(|(name, _)| {
            [
                "tag.rs",
                "visit.rs",
                "delivery/policy.rs",
                "clock/placement.rs",
                "clock/trust.rs",
                "reader/frame.rs",
                "reader/protocols.rs",
                "reader/message.rs",
                "reader/poller.rs",
                "reader/em4100.rs",
                "reader/line.rs",
                "reader/pn532.rs",
                "reader/twn4.rs",
                "reader/pcsc.rs",
                "reader/presenter.rs",
            ]
            .contains(&name.as_str())
        })
        .cloned()
        .collect();
    assert_eq!(pure.len(), 15, "a pure file was moved or renamed");
    let impure = offending(
        &pure,
        &[
            "Instant::now",
            "SystemTime::now",
            "Timestamp::now",
            "std::fs::",
            "tokio::fs",
            "tokio::time::sleep",
            "timer::sleep",
            "std::thread::sleep",
            "std::net::",
            "std::process::",
        ],
    );
    assert_none(
        impure,
        "a clock read or I/O in a part that takes time and data passed in",
    );
}

#[test]
fn a_damaged_row_is_an_error_not_a_default() {
    let files = sources();
    let defaults = offending(&files, &["unwrap_or(Kind::", "unwrap_or_default() as Kind"]);
    assert_none(defaults, "a stored value read with a made-up default");
}

/// The module a file of `src/` belongs to: `config/walk.rs` → `config`, `tag.rs` → `tag`.
fn module_of(name: &str) -> &str {
    let first = name.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The layers `src/lib.rs` states, top first: the modules linked on each line of its
/// "# Layers" list.
fn stated_layers() -> Vec<Vec<String>> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let list = lib
        .split("//! # Layers")
        .nth(1)
        .expect("src/lib.rs has a \"# Layers\" section");
    let mut layers = Vec::new();
    for line in list.lines().skip(1).take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!");
        if !text.starts_with(" - ") {
            continue;
        }
        let mut modules = Vec::new();
        // Only the links before the colon name the line's modules.
        let head = text.split(':').next().unwrap();
        for part in head.split("[`").skip(1) {
            modules.push(part.split('`').next().unwrap().to_string());
        }
        layers.push(modules);
    }
    layers
}

/// The modules a file's code (tests left out) names as `crate::module`.
fn modules_used(text: &str) -> Vec<(usize, String)> {
    let mut used = Vec::new();
    for (i, line) in code_of(text).lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for part in line.split("crate::").skip(1) {
            let module: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !module.is_empty() {
                used.push((i + 1, module));
            }
        }
    }
    used
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let layers = stated_layers();
    let layer_of = |module: &str| layers.iter().position(|l| l.iter().any(|m| m == module));
    let files = sources();
    let mut declared: Vec<String> = files
        .iter()
        .map(|(name, _)| module_of(name).to_string())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    declared.sort();
    declared.dedup();
    let mut stated: Vec<String> = layers.concat();
    stated.sort();
    assert_eq!(
        stated, declared,
        "src/lib.rs's layers name every module once"
    );
    let mut upward = Vec::new();
    for (name, text) in &files {
        let module = module_of(name);
        let Some(own) = layer_of(module) else {
            continue;
        };
        for (line, used) in modules_used(text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer > own => {}
                _ => upward.push(format!(
                    "src/{name}:{line}: {module} uses {used}, which is not on a line below it"
                )),
            }
        }
    }
    assert_none(upward, "uses against src/lib.rs's layers");
    // The check does find what it looks for.
    assert!(
        modules_used("use crate::store::Store;\n").contains(&(1, "store".to_string())),
        "the scan reads `crate::` paths"
    );
}

/// Every `.rs` file of the repository's own code and tests (test data left out), with its text,
/// paths relative to the repository.
fn all_rust_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut dirs = vec![root.join("src"), root.join("tests"), root.join("benches")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found.push((
        "build.rs".into(),
        std::fs::read_to_string(root.join("build.rs")).unwrap(),
    ));
    found.sort();
    found
}

#[test]
fn every_document_a_comment_names_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for (name, text) in all_rust_files() {
        for (i, line) in text.lines().enumerate() {
            let Some((_, comment)) = line.split_once("//") else {
                continue;
            };
            for word in comment.split(|c: char| !(c.is_alphanumeric() || "._-/".contains(c))) {
                let word = word.trim_end_matches('.');
                if word.ends_with(".md") && !root.join(word).exists() {
                    missing.push(format!("{name}:{}: {word}", i + 1));
                }
            }
        }
    }
    assert_none(
        missing,
        "comments name documents the repository does not have",
    );
}

#[test]
fn standard_output_and_error_are_written_only_through_the_console() {
    let files: Vec<(String, String)> = sources()
        .into_iter()
        .filter(|(name, _)| name != "console.rs")
        .collect();
    assert_none(
        // `eprintln!` and `eprint!(` contain these too. (The log's writer to stderr ignores a
        // closed stderr by itself.)
        offending(&files, &["println!", "print!(", "std::io::stdout"]),
        "standard output or error written outside console.rs (a closed pipe would panic there)",
    );
}

/// A token of Rust code, as far as paths go: a name, `::`, or one other character.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Name(String),
    PathSep,
    Other(char),
}

/// The tokens of `code` with the line each is on; comments left out.
fn tokens(code: &str) -> Vec<(usize, Token)> {
    let mut found = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() || c == '_' {
                let mut name = c.to_string();
                while let Some(&next) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                    name.push(next);
                    chars.next();
                }
                found.push((i + 1, Token::Name(name)));
            } else if c == ':' && chars.peek() == Some(&':') {
                chars.next();
                found.push((i + 1, Token::PathSep));
            } else if !c.is_whitespace() {
                found.push((i + 1, Token::Other(c)));
            }
        }
    }
    found
}

/// The paths in `tokens` (`super::codec::{self, Codec}` is `super::codec::self` and
/// `super::codec::Codec`), each with the line it starts on: every name followed by `::` that no
/// `::` comes before starts one.
fn paths(tokens: &[(usize, Token)]) -> Vec<(usize, Vec<String>)> {
    /// The paths that start at `tokens[*at]`, under `prefix`; moves `at` past them.
    fn read(tokens: &[(usize, Token)], at: &mut usize, prefix: &[String]) -> Vec<Vec<String>> {
        let mut path = prefix.to_vec();
        loop {
            match tokens.get(*at).map(|(_, t)| t) {
                Some(Token::Name(name)) => path.push(name.clone()),
                Some(Token::Other('*')) => path.push("*".into()),
                Some(Token::Other('{')) => {
                    *at += 1;
                    let mut group = Vec::new();
                    while let Some((_, token)) = tokens.get(*at) {
                        match token {
                            Token::Other('}') => break,
                            Token::Other(',') => *at += 1,
                            _ => {
                                let before = *at;
                                group.extend(read(tokens, at, &path));
                                // Something no path holds: stepped over.
                                if *at == before {
                                    *at += 1;
                                }
                            }
                        }
                    }
                    *at += 1;
                    return group;
                }
                _ => return vec![path],
            }
            *at += 1;
            if tokens.get(*at).map(|(_, t)| t) != Some(&Token::PathSep) {
                return vec![path];
            }
            *at += 1;
        }
    }
    let mut found = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let starts = matches!(tokens[at].1, Token::Name(_))
            && tokens.get(at + 1).map(|(_, t)| t) == Some(&Token::PathSep)
            && (at == 0 || tokens[at - 1].1 != Token::PathSep);
        if !starts {
            at += 1;
            continue;
        }
        let line = tokens[at].0;
        found.extend(read(tokens, &mut at, &[]).into_iter().map(|p| (line, p)));
    }
    found
}

/// The files of `src/reader/` that a file there uses, by name (`frame.rs`), each with the line of
/// its first use. `name` is the file's path under `src/reader/`; `files`, the names of the files
/// directly in it. A use of something `mod.rs` holds (or passes on) is a use of `mod.rs`; a file
/// of a subfolder (`pcsc/device.rs`) counts as its folder's module (`pcsc.rs`).
fn reader_uses(name: &str, code: &str, files: &[String]) -> Vec<(String, usize)> {
    let file_of = |first: &str| {
        let file = format!("{first}.rs");
        if first != "mod" && files.contains(&file) {
            file
        } else {
            "mod.rs".to_string()
        }
    };
    let (own, depth) = match name.split_once('/') {
        Some((folder, _)) => (format!("{folder}.rs"), 2),
        None => (name.to_string(), 1),
    };
    let mut used: Vec<(String, usize)> = Vec::new();
    for (line, path) in paths(&tokens(code)) {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let target = if path.starts_with(&["crate", "reader"]) {
            file_of(path.get(2).copied().unwrap_or("mod"))
        } else if own == "mod.rs" {
            // A child module by name, or through `self::`; in a module written inside mod.rs,
            // through `super::`.
            let rest = match path[0] {
                "self" | "super" => &path[1..],
                _ => &path[..],
            };
            if rest.len() < 2 || !files.contains(&format!("{}.rs", rest[0])) {
                continue;
            }
            file_of(rest[0])
        } else {
            let supers = path.iter().take_while(|s| **s == "super").count();
            if supers != depth {
                continue;
            }
            file_of(path.get(depth).copied().unwrap_or("mod"))
        };
        if target != own && !used.iter().any(|(t, _)| *t == target) {
            used.push((target, line));
        }
    }
    used
}

/// Which files each file uses: a file's name, and the files it uses with the line of each use.
type Uses = Vec<(String, Vec<(String, usize)>)>;

/// A cycle in `uses`, written out: `codec.rs → em4100.rs → codec.rs`, then where each file uses
/// the next (`src/reader/codec.rs:15 uses em4100.rs`). `None` when there is none.
fn cycle_in(uses: &Uses) -> Option<String> {
    fn used_by<'a>(uses: &'a Uses, file: &str) -> &'a [(String, usize)] {
        uses.iter()
            .find(|(f, _)| f == file)
            .map_or(&[], |(_, used)| used.as_slice())
    }
    /// Follows every use from `file`, the files on the way in `path`; `done` holds the files
    /// whose uses were all followed without finding a cycle.
    fn visit(
        uses: &Uses,
        file: &str,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|f| f == file) {
            let mut cycle = path[start..].to_vec();
            cycle.push(file.to_string());
            return Some(cycle);
        }
        if done.iter().any(|d| d == file) {
            return None;
        }
        path.push(file.to_string());
        for (next, _) in used_by(uses, file) {
            if let Some(cycle) = visit(uses, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(file.to_string());
        None
    }
    let mut done = Vec::new();
    for (file, _) in uses {
        let Some(cycle) = visit(uses, file, &mut Vec::new(), &mut done) else {
            continue;
        };
        let mut text = cycle.join(" → ");
        for pair in cycle.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            let line = used_by(uses, from)
                .iter()
                .find(|(f, _)| f == to)
                .map_or(0, |(_, line)| *line);
            text.push_str(&format!("\n  src/reader/{from}:{line} uses {to}"));
        }
        return Some(text);
    }
    None
}

/// The uses among the files of `src/reader/` (their code, tests left out).
fn reader_graph(files: &[(String, String)]) -> Uses {
    let in_reader: Vec<(String, &str)> = files
        .iter()
        .filter_map(|(name, text)| Some((name.strip_prefix("reader/")?.to_string(), code_of(text))))
        .collect();
    let top: Vec<String> = in_reader
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| !name.contains('/'))
        .collect();
    let mut uses: Uses = top.iter().map(|name| (name.clone(), Vec::new())).collect();
    uses.sort();
    for (name, code) in &in_reader {
        let own = name
            .split_once('/')
            .map_or(name.clone(), |(folder, _)| format!("{folder}.rs"));
        let entry = &mut uses
            .iter_mut()
            .find(|(f, _)| *f == own)
            .expect("a folder has its file")
            .1;
        for (used, line) in reader_uses(name, code, &top) {
            if !entry.iter().any(|(f, _)| *f == used) {
                entry.push((used, line));
            }
        }
    }
    uses
}

#[test]
fn the_files_of_the_reader_module_use_each_other_without_a_cycle() {
    // The check finds what it looks for: uses through `super::`, `crate::reader::` and groups,
    // of files and of what mod.rs holds, and a cycle of them.
    let made_up = |files: &[(&str, &str)]| {
        reader_graph(
            &files
                .iter()
                .map(|(name, text)| (format!("reader/{name}"), text.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    let cycle = cycle_in(&made_up(&[
        ("mod.rs", "mod codec;\nmod em4100;\nuse codec::Codec;\n"),
        ("codec.rs", "use super::em4100::Em4100Codec;\n"),
        ("em4100.rs", "use super::{codec::{Codec, Frame}, Tap};\n"),
    ]));
    assert_eq!(
        cycle.as_deref(),
        Some(
            "codec.rs → em4100.rs → codec.rs\n  src/reader/codec.rs:1 uses em4100.rs\n  \
             src/reader/em4100.rs:1 uses codec.rs"
        )
    );
    let cycle = cycle_in(&made_up(&[
        (
            "mod.rs",
            "mod presenter;\n\npub use presenter::Presenter;\npub struct Tap;\n",
        ),
        (
            "presenter.rs",
            "pub struct Presenter;\nfn f(tap: crate::reader::Tap) {}\n",
        ),
    ]));
    assert_eq!(
        cycle.as_deref(),
        Some(
            "mod.rs → presenter.rs → mod.rs\n  src/reader/mod.rs:3 uses presenter.rs\n  \
             src/reader/presenter.rs:2 uses mod.rs"
        )
    );
    let no_cycle = made_up(&[
        (
            "mod.rs",
            "pub use message::Tap;\npub mod codec {\n    pub use super::frame::Codec;\n}\n",
        ),
        ("message.rs", "use crate::tag::RawId;\n"),
        (
            "frame.rs",
            "// use super::Tap;\npub enum Frame { NoTag } // not super::Tap\n",
        ),
        (
            "presenter.rs",
            "use crate::reader::message::Tap;\nfn f() { super::frame::Frame::NoTag }\n",
        ),
    ]);
    assert_eq!(cycle_in(&no_cycle), None);
    assert_eq!(
        no_cycle,
        [
            ("frame.rs".to_string(), vec![]),
            ("message.rs".to_string(), vec![]),
            (
                "mod.rs".to_string(),
                vec![("message.rs".to_string(), 1), ("frame.rs".to_string(), 3)]
            ),
            (
                "presenter.rs".to_string(),
                vec![("message.rs".to_string(), 1), ("frame.rs".to_string(), 2)]
            ),
        ]
    );
    let uses = reader_graph(&sources());
    assert!(
        uses.iter().any(|(file, _)| file == "mod.rs") && uses.len() > 5,
        "src/reader/ is read"
    );
    if let Some(cycle) = cycle_in(&uses) {
        panic!("an import cycle among the files of src/reader/: {cycle}");
    }
}

#[test]
fn what_happened_is_said_only_in_events() {
    let files: Vec<(String, String)> = sources()
        .into_iter()
        .filter(|(name, _)| name != "events.rs")
        .collect();
    assert_none(
        offending(
            &files,
            &[
                "event = \"",
                "metrics.tap(",
                "metrics.delivery(",
                "metrics.admission_refused(",
                ".happened(",
            ],
        ),
        "a log line with an `event` field, an event's metric or a screen message outside \
         src/events.rs (add or extend an event there)",
    );
    let events = sources()
        .into_iter()
        .filter(|(name, _)| name == "events.rs")
        .collect::<Vec<_>>();
    assert!(!offending(&events, &["event = \"tap_recorded\""]).is_empty());
}

/// The names of the `#[test]` functions of this file.
fn tidy_checks() -> Vec<String> {
    let text = include_str!("tidy.rs");
    let mut names = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "#[test]"
            && let Some(name) = lines
                .next()
                .and_then(|l| l.strip_prefix("fn "))
                .and_then(|l| l.split('(').next())
        {
            names.push(name.to_string());
        }
    }
    names
}

/// The texts between backticks in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_architecture_document_names_real_checks_and_files_and_maps_every_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let checks = tidy_checks();
    assert!(checks.len() >= 10, "{checks:?}");
    let mut wrong = Vec::new();
    // Each rule that says tidy checks it names a check that exists: "(tidy: `name`)".
    let mut claimed = 0;
    for after in doc.split("tidy:").skip(1) {
        let name = quoted(after)[0];
        claimed += 1;
        if !checks.iter().any(|c| c == name) {
            wrong.push(format!(
                "names the tidy check `{name}`, which tests/tidy.rs lacks"
            ));
        }
    }
    assert!(claimed >= 8, "the document names only {claimed} checks");
    // Each file or directory it names is there.
    let names = quoted(&doc);
    for name in &names {
        let is_path = ["src/", "tests/", "docs/", "config/", ".ci/"]
            .iter()
            .any(|dir| name.starts_with(dir));
        if is_path && !name.contains(char::is_whitespace) && !root.join(name).exists() {
            wrong.push(format!("names `{name}`, which the repository lacks"));
        }
    }
    // Each file of src/ is in the code map: by its path, or by its name within its directory's
    // entry (`pn532.rs` under `src/reader/`).
    for (file, _) in sources() {
        let path = format!("src/{file}");
        let parts: Vec<&str> = file.split('/').collect();
        let mapped = names.contains(&path.as_str())
            || (parts.len() > 1
                && names.contains(&format!("src/{}/", parts[0]).as_str())
                && (1..parts.len()).any(|i| names.contains(&parts[i..].join("/").as_str())));
        if !mapped {
            wrong.push(format!("does not map `{path}`"));
        }
    }
    assert_none(wrong, "ARCHITECTURE.md");
}

#[test]
fn every_document_a_document_links_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    let mut missing = Vec::new();
    let mut links = 0;
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for after in text.split("](").skip(1) {
            let Some(target) = after.split(')').next() else {
                continue;
            };
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            links += 1;
            if !document.parent().unwrap().join(file).exists() {
                missing.push(format!(
                    "{}: {target}",
                    document.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(links >= 3, "only {links} links to files found");
    assert_none(missing, "documents link files the repository does not have");
}

#[test]
fn tests_wait_for_a_signal_not_for_the_wall_clock() {
    // A test on tokio's paused time may sleep: that moves simulated time, at no cost. Any other
    // sleep is a wait on the wall clock, which a loaded machine misses: tests wait for a
    // positive signal through tests/common's `poll`/`wait_until`, and the few waits that are
    // on the wall clock by nature say so on the line above.
    let mut found = Vec::new();
    let mut sleeps = 0;
    for (name, text) in all_rust_files() {
        if !name.starts_with("tests/") || name == "tests/tidy.rs" {
            continue;
        }
        let paused = text.contains("start_paused = true");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || !code.contains("sleep(") {
                continue;
            }
            sleeps += 1;
            let said = i > 0 && lines[i - 1].contains("wall-clock wait on purpose");
            if !paused && !said {
                found.push(format!("{name}:{}: {code}", i + 1));
            }
        }
    }
    assert!(sleeps > 0);
    assert_none(
        found,
        "tests that sleep on the wall clock (wait for a signal with tests/common's `poll` or \
         `wait_until`; or, if the wait itself is the point, say why on the line above with \
         \"A wall-clock wait on purpose:\")",
    );
}
