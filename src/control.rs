//! The service's control socket: how `gym-checkin status` asks the running service, without
//! reading its database, and how `forget` and `export` work through it.
//!
//! The database lives in a directory only the service's user may enter (`/var/lib/gym-checkin`,
//! mode 0700), and it holds every member's card ids. The status holds none of them. So the
//! service answers for it on a Unix socket (`[service] socket`, `/run/gym-checkin/
//! gym-checkin.sock` by default) that its group may use: the socket is mode 0660, in a
//! directory the unit makes mode 0750, so a staff account added to the group `gym-checkin` can
//! run `gym-checkin status`, and nothing more.
//!
//! Erasing a card or a member (`forget`) and exporting what the box holds about one (`export`)
//! go through the running service too, so that it forgets what it holds in memory as well, and
//! so that a running service's database is never written by a second process. Those requests
//! are answered for root and for the service's own user alone, told by the socket's peer
//! credentials: an erasure can take taps from EGYM, and an export holds every card id of a
//! member. Staff in the group ask for the status only.
//!
//! One request per connection: a line of JSON (`{"request":"status"}`), answered by one line of
//! JSON. Each answer names the database the service runs on, so a command configured for
//! another database never takes it for its own.
//!
//! `gym-checkin enrol` asks the running service too, so that its requests to EGYM take their
//! tokens from the service's own bucket, the taps waiting on the card go out at once, and the
//! reader the service holds is not opened twice: find the member (`enrol_preview`), claim the
//! next card presented on a reader (`enrol_read`), enrol (`enrol`). The service logs each
//! enrolment with who asked, from the socket's peer credentials.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::clock::timer;
use crate::clock::{SteadyMs, WallMs};
use crate::enrolment::{Card, MemberFound, Refused};
use crate::store::status::StatusData;
use crate::store::{ExportData, Holdings, Subject};
use crate::tag;

/// The socket's default path, in the directory the unit's `RuntimeDirectory=` makes.
pub const DEFAULT_SOCKET: &str = "/run/gym-checkin/gym-checkin.sock";
/// A client that sends no whole request within this is hung up on.
const REQUEST_WITHIN: Duration = Duration::from_secs(5);
/// A command waits this long for the service's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Connections answered at once, at most; more wait.
const MAX_CONNECTIONS: usize = 16;
/// A request longer than this is refused.
const MAX_REQUEST: u64 = 64 * 1024;
/// The longest a card may be waited for on a reader the service holds.
pub const MAX_READ_WAIT: Duration = Duration::from_secs(120);

/// What a command asks the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// What the box holds about a card or member, counted (before `forget` asks to confirm).
    /// Each of these names the database the command means: a service running on another one
    /// answers [`Reply::OtherDatabase`] and does nothing.
    Holdings {
        database: PathBuf,
        subject: Subject,
    },
    /// Erase everything about a card or member; with `open_confirmed`, only if no more of its
    /// events wait for delivery than that (the number the user confirmed).
    Forget {
        database: PathBuf,
        subject: Subject,
        open_confirmed: Option<u64>,
    },
    /// Everything the box holds about a card or member.
    Export {
        database: PathBuf,
        subject: Subject,
    },
    /// Find `member` (e-mail or membership id) at EGYM, with the cards enrolled for them, and,
    /// with `rfid`, who holds that card as `reader` sends it.
    EnrolPreview {
        reader: String,
        member: String,
        rfid: Option<String>,
    },
    /// Hand the next card presented on `reader`, within `within_s` seconds, to this enrolment
    /// instead of recording it as a tap.
    EnrolRead {
        reader: String,
        within_s: u64,
    },
    /// Enrol the card `rfid` seen on `reader` for `member`, shown to staff as `account_id`.
    Enrol {
        reader: String,
        rfid: String,
        member: String,
        account_id: String,
    },
}

impl Request {
    /// The request's name, for the log: never the card or member it is about.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Holdings { .. } => "holdings",
            Request::Forget { .. } => "forget",
            Request::Export { .. } => "export",
            Request::EnrolPreview { .. } => "enrol_preview",
            Request::EnrolRead { .. } => "enrol_read",
            Request::Enrol { .. } => "enrol",
        }
    }

    /// The database a request about one member's data means; `None` for the status.
    pub fn database(&self) -> Option<&Path> {
        match self {
            Request::Status
            | Request::EnrolPreview { .. }
            | Request::EnrolRead { .. }
            | Request::Enrol { .. } => None,
            Request::Holdings { database, .. }
            | Request::Forget { database, .. }
            | Request::Export { database, .. } => Some(database),
        }
    }
}

/// The service's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Status(Box<StatusReply>),
    /// What the box holds about the subject.
    Holdings(ServiceInfo, Holdings),
    /// What was erased.
    Erased(ServiceInfo, Holdings),
    /// Nothing was erased: more events wait for delivery than were confirmed. What there is now.
    Changed(ServiceInfo, Holdings),
    Exported(Box<ExportReply>),
    /// The request names another database than the one this service runs on: nothing done.
    OtherDatabase(ServiceInfo),
    /// This user may not ask that: why, and what to do.
    Denied(String),
    /// The member found, for an enrolment.
    Member(MemberReply),
    /// The card presented on the reader.
    Card(CardReply),
    /// The card enrolled.
    Enrolled(EnrolledReply),
    /// The enrolment was refused: a stable reason, and the words for staff.
    Refused {
        reason: String,
        message: String,
    },
    /// The request cannot be answered: why.
    Failed(String),
}

impl Reply {
    /// The service that answered, when the answer says.
    pub fn service(&self) -> Option<&ServiceInfo> {
        match self {
            Reply::Status(status) => Some(&status.service),
            Reply::Holdings(service, _)
            | Reply::Erased(service, _)
            | Reply::Changed(service, _) => Some(service),
            Reply::Exported(export) => Some(&export.service),
            Reply::OtherDatabase(service) => Some(service),
            Reply::Member(_)
            | Reply::Card(_)
            | Reply::Enrolled(_)
            | Reply::Refused { .. }
            | Reply::Denied(_)
            | Reply::Failed(_) => None,
        }
    }
}

/// A card: its number as EGYM keeps it, and its `tagFormat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardReply {
    pub rfid: String,
    pub tag_format: Option<String>,
}

/// A member found at EGYM for an enrolment. The first name is for the staff member who asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReply {
    pub account_id: String,
    pub first_name: Option<String>,
    /// The cards enrolled for the member, shortened.
    pub cards: Vec<CardReply>,
    /// The card asked about, as it would be enrolled, and whether it is this member's
    /// already.
    pub card: Option<CardReply>,
    pub already_theirs: bool,
}

impl CardReply {
    pub fn of(card: Card) -> CardReply {
        CardReply {
            rfid: card.rfid,
            tag_format: card.tag_format.map(|f| f.as_str().to_string()),
        }
    }
}

/// Everything the running service holds about a subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReply {
    pub service: ServiceInfo,
    pub data: ExportData,
    /// The service's steady time when it answered, for ages counted in steady time.
    pub steady: SteadyMs,
}

impl MemberReply {
    /// The member `found`, with the card asked about, if any, and whether it is theirs.
    /// The member's cards are shortened (`0x…8671`): whoever may use the socket sees which
    /// cards a member has, never their numbers.
    pub fn of(found: MemberFound, card: Option<Card>, already_theirs: bool) -> MemberReply {
        MemberReply {
            account_id: found.account_id,
            first_name: found.first_name,
            cards: found
                .cards
                .into_iter()
                .map(|c| CardReply {
                    rfid: tag::short(&c.rfid),
                    tag_format: c.tag_format,
                })
                .collect(),
            card: card.map(CardReply::of),
            already_theirs,
        }
    }
}

impl Reply {
    /// An enrolment refused, as the socket says it.
    pub fn refused(refused: &Refused) -> Reply {
        Reply::Refused {
            reason: refused.code().to_string(),
            message: refused.to_string(),
        }
    }
}

/// A card enrolled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledReply {
    pub card: CardReply,
    pub account_id: String,
    /// It was the member's already: nothing was written to EGYM.
    pub already: bool,
    /// Taps that waited on it, now looked up again and delivered.
    pub waiting: usize,
}

/// The running service's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub service: ServiceInfo,
    pub data: StatusData,
    /// The service's wall time and steady time when it answered.
    pub wall: WallMs,
    pub steady: SteadyMs,
}

/// Which service answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub pid: u32,
    pub version: String,
    /// The database it runs on.
    pub database: PathBuf,
}

/// Who asks: from the socket's peer credentials.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// Why a command got no answer from the service.
#[derive(Debug)]
pub enum AskError {
    /// Nothing listens there: the service is not running (or its socket is off).
    NotRunning,
    /// The socket is there, but this user may not use it.
    PermissionDenied { path: PathBuf, user: String },
    /// Anything else, said in words.
    Failed(String),
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::NotRunning => write!(f, "the service is not running"),
            AskError::PermissionDenied { path, user } => write!(
                f,
                "user {user} may not use the service's socket {}: permission denied. Staff who \
                 run `gym-checkin status` belong to the group gym-checkin: `sudo usermod -aG \
                 gym-checkin {user}`, then log in again (or run `sudo gym-checkin status`)",
                path.display()
            ),
            AskError::Failed(detail) => write!(f, "{detail}"),
        }
    }
}

/// Asks the service listening on `path`, and waits for its answer.
pub fn ask(path: &Path, request: &Request) -> Result<Reply, AskError> {
    ask_waiting(path, request, ANSWER_WITHIN)
}

/// Asks the service listening on `path`, and waits for its answer at most `wait` (a request
/// that waits for a card, say).
pub fn ask_waiting(path: &Path, request: &Request, wait: Duration) -> Result<Reply, AskError> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            AskError::NotRunning
        }
        std::io::ErrorKind::PermissionDenied => AskError::PermissionDenied {
            path: path.to_path_buf(),
            user: crate::console::user_name(),
        },
        _ => AskError::Failed(format!("cannot connect to {}: {e}", path.display())),
    })?;
    let failed = |e: std::io::Error| {
        AskError::Failed(format!(
            "the service at {} did not answer: {e}",
            path.display()
        ))
    };
    stream.set_read_timeout(Some(wait)).map_err(failed)?;
    stream
        .set_write_timeout(Some(ANSWER_WITHIN))
        .map_err(failed)?;
    let mut line = serde_json::to_string(request).map_err(|e| AskError::Failed(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(failed)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(failed)?;
    serde_json::from_str(&answer).map_err(|e| {
        AskError::Failed(format!(
            "the service at {} answered something this gym-checkin cannot read ({e}); is it \
             another version?",
            path.display()
        ))
    })
}

/// A bound control socket, removed again when the service stops.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

/// Binds the control socket at `path`: makes its directory if it is missing, replaces a socket
/// that nothing answers on any more (left by a service that was killed), and refuses to take
/// one another process still answers on. Call only while holding the database's lock.
pub fn bind(path: &Path) -> Result<Listener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "another process answers on {}: give each service its own [service] socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the old socket {}: {e}", path.display()))?;
        }
        Ok(meta) => {
            return Err(format!(
                "{} is {}, not a socket: remove it or choose another [service] socket",
                path.display(),
                crate::console::file_type_name(&meta.file_type())
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    // The group may ask; others may not (bind made it as the umask allows).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    let inode = std::fs::metadata(path)
        .map_err(|e| format!("cannot look at {}: {e}", path.display()))?
        .ino();
    Ok(Listener {
        listener,
        path: path.to_path_buf(),
        inode,
    })
}

/// Answers requests with `handler` until `stopping` turns true; then removes the socket.
pub async fn serve<H, F>(listener: Listener, handler: H, mut stopping: watch::Receiver<bool>)
where
    H: Fn(Request, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, socket = %listener.path.display(), "cannot accept on the control socket");
                tokio::select! {
                    () = timer::sleep(Duration::from_millis(100)) => continue,
                    _ = stopping.wait_for(|stop| *stop) => break,
                }
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let _slot = slot;
            if let Err(e) = answer(stream, handler).await {
                debug!(error = %e, "control connection ended early");
            }
        });
    }
    connections.abort_all();
    // Only the socket this service made: a new service may have replaced it already.
    if std::fs::metadata(&listener.path).is_ok_and(|meta| meta.ino() == listener.inode) {
        let _ = std::fs::remove_file(&listener.path);
    }
}

async fn answer<H, F>(stream: tokio::net::UnixStream, handler: H) -> std::io::Result<()>
where
    H: Fn(Request, Peer) -> F,
    F: Future<Output = Reply>,
{
    let credentials = stream.peer_cred()?;
    let peer = Peer {
        uid: credentials.uid(),
        pid: credentials.pid(),
    };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut read = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    timer::timeout(REQUEST_WITHIN, read.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no request in time"))??;
    let reply = match serde_json::from_str::<Request>(&line) {
        // A card waited for is handed to nobody once the command that asked has gone (Ctrl-C):
        // the next presentation on the reader is a member's tap again.
        Ok(request @ Request::EnrolRead { .. }) => {
            debug!(uid = peer.uid, pid = ?peer.pid, request = ?request, "control request");
            tokio::select! {
                reply = handler(request, peer) => reply,
                () = hung_up(&mut read) => return Ok(()),
            }
        }
        Ok(request) => {
            debug!(uid = peer.uid, pid = ?peer.pid, request = request.name(), "control request");
            handler(request, peer).await
        }
        Err(e) => Reply::Failed(format!("not a request this service knows: {e}")),
    };
    let mut text = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// Completes when the client has closed its end (or it fails): a client sends nothing after
/// its request.
async fn hung_up(read: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buffer = [0u8; 64];
    loop {
        match tokio::io::AsyncReadExt::read(read, &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_answered_and_a_stale_socket_replaced() {
        let dir = std::env::temp_dir().join(format!(
            "gym-checkin-control-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let path = dir.join("run/gym-checkin.sock");
        // A socket left behind by a service that was killed: nothing answers on it.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(
            bind(&path).unwrap_err().contains("another process answers"),
            "a live socket is never taken over"
        );
        let (stop, stopping) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            |request, _peer| async move { Reply::Failed(format!("asked {request:?}")) },
            stopping,
        ));
        let asked = path.clone();
        let reply = tokio::task::spawn_blocking(move || ask(&asked, &Request::Status))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, Reply::Failed("asked Status".into()));
        stop.send(true).unwrap();
        server.await.unwrap();
        assert!(!path.exists(), "the socket is removed at the stop");
        assert!(matches!(
            ask(&path, &Request::Status),
            Err(AskError::NotRunning)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
