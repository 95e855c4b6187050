//! The database's file: whether `store.path` can hold one, and the lock that keeps one service
//! per database.
//!
//! Two `gym-checkin run` on one database would both deliver its events, and EGYM would receive
//! each check-in twice. So `run` holds an exclusive `flock` on a file beside the database
//! (`gym-checkin.db.lock`) for as long as it runs. The kernel releases it when the process ends,
//! however it ends: a SIGKILL or a power cut leaves nothing stale to clean up. The file holds the
//! holder's pid and command, for the message the next one gives. `forget` and `export` take the
//! same lock while they work on the database of a service that is not running.
//!
//! The database holds card ids and the members' account ids: its files are the service user's
//! alone ([`keep_private`]), whatever the umask.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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
    /// Another process holds the lock: another service (or a `forget` or `export` working on
    /// the database) runs on this database.
    Held {
        path: PathBuf,
        pid: Option<u32>,
        /// The holder's command (`run`, `forget`, `export`), when it wrote one.
        command: Option<String>,
    },
    /// The lock file cannot be opened or locked.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, pid, command } => {
                let command = command.as_deref().unwrap_or("run");
                let who = match pid {
                    Some(pid) => format!("gym-checkin {command} (pid {pid})"),
                    None => format!("another gym-checkin {command}"),
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
    /// Takes the lock of the database at `db` for the service, or says who holds it. Never
    /// waits.
    pub fn acquire(db: &Path) -> Result<DatabaseLock, LockError> {
        DatabaseLock::acquire_for(db, "run")
    }

    /// Takes the lock of the database at `db` for `command` (`forget`, `export`), or says who
    /// holds it. Never waits. Made by root beside a database the service's user owns, the lock
    /// file is given to that user, whose service must be able to take it next.
    pub fn acquire_for(db: &Path, command: &str) -> Result<DatabaseLock, LockError> {
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
            let (pid, command) = read_holder(&mut file);
            return Err(LockError::Held { pid, command, path });
        }
        // Whatever the umask let through: the file is the owner's alone.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        give_to_owner_of(&file, db).map_err(io)?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{} {command}", std::process::id()).map_err(io)?;
        Ok(DatabaseLock { _file: file })
    }
}

/// As root, gives `file` to the owner of the database at `db`, if it has another: a file root
/// makes beside the service's database must stay usable by the service.
fn give_to_owner_of(file: &File, db: &Path) -> std::io::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(owner) = std::fs::metadata(db) else {
        return Ok(());
    };
    let own = file.metadata()?;
    if (own.uid(), own.gid()) == (owner.uid(), owner.gid()) {
        return Ok(());
    }
    // SAFETY: fchown takes a valid open descriptor, which `file` keeps open for the call.
    if unsafe { libc::fchown(file.as_raw_fd(), owner.uid(), owner.gid()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The files of the database at `db` (the database, its `-wal` and `-shm`) that exist.
pub fn database_files(db: &Path) -> Vec<PathBuf> {
    let mut files = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files.into_iter().filter(|f| f.exists()).collect()
}

/// Makes the database at `db` readable and writable by its owner alone (mode 0600), whatever
/// the umask: creates it so when it is missing, and takes from the database, its `-wal` and its
/// `-shm` any permission a group or others have (an older version made them as the umask let
/// it). SQLite makes the `-wal` and `-shm` it creates with the database's own mode, so they
/// follow. Staff read the status through the control socket, never the database.
pub fn keep_private(db: &Path) -> Result<(), String> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(file) => file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set the mode of {}: {e}", db.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", db.display())),
    }
    for file in database_files(db) {
        let meta = std::fs::metadata(&file)
            .map_err(|e| format!("cannot look at {}: {e}", file.display()))?;
        if meta.permissions().mode() & 0o777 != 0o600 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    format!(
                        "cannot make {} readable by its owner alone: {e}",
                        file.display()
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// The pid of the service that holds the lock of the database at `db`, if one does. Asking
/// takes a shared lock for a moment, which a running service's exclusive one refuses.
pub fn holder(db: &Path) -> Option<u32> {
    let mut file = File::open(lock_path(db)).ok()?;
    match try_flock(&file, libc::LOCK_SH) {
        Ok(false) => read_holder(&mut file).0,
        _ => None,
    }
}

/// Who holds the lock of the database at `db`, said as taking it would say it, if another
/// process holds it. Asks as [`holder`] does, without taking the lock.
pub fn held(db: &Path) -> Option<LockError> {
    let path = lock_path(db);
    let mut file = File::open(&path).ok()?;
    match try_flock(&file, libc::LOCK_SH) {
        Ok(false) => {
            let (pid, command) = read_holder(&mut file);
            Some(LockError::Held { path, pid, command })
        }
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

/// The holder's pid and command, as the lock file holds them (`812 run`; a version before the
/// command was written holds the pid alone).
fn read_holder(file: &mut File) -> (Option<u32>, Option<String>) {
    let mut text = String::new();
    if file.rewind().is_err() || file.read_to_string(&mut text).is_err() {
        return (None, None);
    }
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|pid| pid.parse().ok());
    (pid, words.next().map(str::to_string))
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
            Err(LockError::Held { pid, path, command }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, lock_path(&db));
                assert_eq!(command.as_deref(), Some("run"));
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
