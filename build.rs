//! Names the build for `gym-checkin --version` and `/metrics`: the git commit (when built from a
//! git checkout; `GYM_CHECKIN_COMMIT` overrides it, e.g. for a package built from a tarball)
//! and the target triple.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GYM_CHECKIN_COMMIT");
    let commit = std::env::var("GYM_CHECKIN_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GYM_CHECKIN_COMMIT={commit}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=GYM_CHECKIN_TARGET={target}");
}

/// The checkout's commit; watched so that a new commit rebuilds.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let git_dir = git(&["rev-parse", "--git-dir"])?;
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={git_dir}/{head}");
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
