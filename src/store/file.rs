//! The database's file: whether `store.path` can hold one, and the lock that keeps one service
//! per database.
//!
//! Two `gym-checkin run` on one database would both deliver its events, and EGYM would receive
//! each check-in twice. So `run` holds an exclusive `flock` on a file beside the database
//! (`gym-checkin.db.lock`) for as long as it runs. The kernel releases it when the process ends,
//! however it ends: a SIGKILL or a power cut leaves nothing stale to clean up. The file holds the
//! holder's pid, for the message the next one gives.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Held while this process runs the service on a database; released when dropped, or by the
/// kernel when the process ends.
#[derive(Debug)]
pub struct DatabaseLock {
    /// Holding the descriptor open holds the lock.
    _file: File,
}

#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock: another service runs on this database.
    Held { path: PathBuf, pid: Option<u32> },
    /// The lock file cannot be opened or locked.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, pid } => {
                let who = match pid {
                    Some(pid) => format!("gym-checkin run (pid {pid})"),
                    None => "another gym-checkin run".to_string(),
                };
                write!(
                    f,
                    "{who} already runs on this database (it holds {}); two would send every tap \
                     to EGYM twice. Stop it first (`sudo systemctl stop gym-checkin` for the \
                     service), or give this one another [store] path",
                    path.display()
                )
            }
            LockError::Io { path, error } => {
                write!(f, "cannot lock {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LockError {}

impl DatabaseLock {
    /// Takes the lock of the database at `db`, or says who holds it. Never waits.
    pub fn acquire(db: &Path) -> Result<DatabaseLock, LockError> {
        let path = lock_path(db);
        let io = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if !try_flock(&file, libc::LOCK_EX).map_err(io)? {
            return Err(LockError::Held {
                pid: read_pid(&mut file),
                path,
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DatabaseLock { _file: file })
    }
}

/// The pid of the service that holds the lock of the database at `db`, if one does. Asking
/// takes a shared lock for a moment, which a running service's exclusive one refuses.
pub fn holder(db: &Path) -> Option<u32> {
    let mut file = File::open(lock_path(db)).ok()?;
    match try_flock(&file, libc::LOCK_SH) {
        Ok(false) => read_pid(&mut file),
        _ => None,
    }
}

/// `flock` without waiting: `Ok(false)` when another process holds a conflicting lock.
fn try_flock(file: &File, operation: i32) -> std::io::Result<bool> {
    // SAFETY: flock takes a valid open descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Why `store.path` cannot hold the database, if it cannot: its directory is missing or is not
/// one, this user may not create files in it, it is on a file system that holds no files (such
/// as /proc), or the file is there and is not a file this user may write. These do not go away
/// by trying again: they are configuration problems.
pub fn check_path(db: &Path) -> Result<(), String> {
    let dir = match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let user = crate::console::user_name();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "the directory {} does not exist: create it (`sudo install -d -m 0700 -o \
                 gym-checkin -g gym-checkin {}`), or choose another path",
                dir.display(),
                dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot look at the directory {} as user {user}: {e}",
                dir.display()
            ));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(format!("{} is not a directory", dir.display()));
        }
        Ok(_) => {}
    }
    if let Some(kind) = pseudo_file_system(dir) {
        return Err(format!(
            "{} is on {kind}, which holds no files: choose a directory on a disk, e.g. \
             /var/lib/gym-checkin",
            dir.display()
        ));
    }
    match std::fs::metadata(db) {
        Ok(meta) if meta.is_dir() => {
            return Err(format!(
                "{} is a directory: name the database file in it, e.g. {}",
                db.display(),
                db.join("gym-checkin.db").display()
            ));
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(format!(
                "{} is {}, not a database file",
                db.display(),
                crate::console::file_type_name(&meta.file_type())
            ));
        }
        Ok(_) => {
            if !accessible(db, libc::R_OK | libc::W_OK) {
                return Err(format!(
                    "user {user} may not write {}: {}",
                    db.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        Err(_) => {
            if !accessible(dir, libc::W_OK | libc::X_OK) {
                return Err(format!(
                    "user {user} may not create files in {}: {}",
                    dir.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}

/// `access(2)` for this process's real user, as the service will use it.
fn accessible(path: &Path, mode: i32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads a NUL-terminated path that lives across the call.
    unsafe { libc::access(path.as_ptr(), mode) == 0 }
}

/// The file systems that hold no files of their own, by `statfs`'s magic number.
fn pseudo_file_system(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: statfs reads a NUL-terminated path and fills one statfs; it is read only when the
    // call succeeds.
    let stat = unsafe {
        if libc::statfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    // The magic numbers of linux/magic.h.
    match stat.f_type as i64 {
        0x9fa0 => Some("/proc (procfs)"),
        0x6265_6572 => Some("sysfs"),
        0x6367_7270 => Some("cgroup2"),
        0x0027_e0eb => Some("cgroup"),
        0x1cd1 => Some("devpts"),
        0x6462_6720 => Some("debugfs"),
        0x7363_6673 => Some("securityfs"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gym-checkin-file-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_lock_on_one_database_names_the_holder() {
        let dir = temp_dir("lock");
        let db = dir.join("gym-checkin.db");
        let first = DatabaseLock::acquire(&db).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts exactly as another process's would.
        match DatabaseLock::acquire(&db) {
            Err(LockError::Held { pid, path }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, lock_path(&db));
            }
            other => panic!("expected the lock to be held, got {other:?}"),
        }
        assert_eq!(holder(&db), Some(std::process::id()));
        drop(first);
        assert_eq!(holder(&db), None, "released when dropped");
        let again = DatabaseLock::acquire(&db);
        assert!(again.is_ok(), "{again:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_path_that_cannot_hold_a_database_says_why() {
        let dir = temp_dir("path");
        assert_eq!(check_path(&dir.join("gym-checkin.db")), Ok(()));
        let missing = check_path(&dir.join("missing/gym-checkin.db")).unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
        let proc = check_path(Path::new("/proc/gym-checkin.db")).unwrap_err();
        assert!(proc.contains("procfs"), "{proc}");
        let directory = check_path(&dir).unwrap_err();
        assert!(directory.contains("is a directory"), "{directory}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
