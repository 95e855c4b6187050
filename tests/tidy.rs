//! Tidy checks: the README's stated invariants, checked by reading the source, as
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
    // Timers and intervals elsewhere use tokio's monotonic `Instant`, which tests can pause;
    // std's would run on in a paused test.
    let std_instants = offending(
        &outside(&files, &["clock/"]),
        &["std::time::Instant", "std::time::{Duration, Instant}"],
    );
    assert_none(
        std_instants,
        "std's Instant outside src/clock/ (use tokio::time::Instant)",
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
    assert_eq!(pure.len(), 14, "a pure file was moved or renamed");
    let impure = offending(
        &pure,
        &[
            "Instant::now",
            "SystemTime::now",
            "Timestamp::now",
            "std::fs::",
            "tokio::fs",
            "tokio::time::sleep",
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
