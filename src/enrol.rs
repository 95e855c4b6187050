//! `gym-checkin enrol --reader NAME --member EMAIL_OR_MEMBERSHIP_ID [--tag RENDERING] [--yes]`:
//! adds a card to a member at EGYM, read from the reader (as `calibrate` reads one) or given as
//! the number the staff page shows; the taps waiting on the card are then delivered.
//!
//! When the service runs on this configuration's database, everything goes through it, on its
//! control socket ([`crate::control`]): its EGYM client (and rate-limit bucket) makes the
//! requests, the reader it holds hands it the next card presented instead of recording a tap,
//! its journal logs the enrolment with who asked, and its delivery looks the waiting taps up
//! again at once. When it does not run, this command makes the requests itself, reads the
//! reader itself, and (when it may open the database) makes the waiting taps due for the
//! service's next start.
//!
//! Staff see the member's first name and the cards already enrolled, then confirm (or pass
//! `--yes`). Each refusal says what was not done and why ([`crate::enrolment::Refused`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::console::{confirm, say};
use crate::control::{self, AskError, CardReply, MemberReply, Reply, Request};
use crate::egym::{self, ApiKey};
use crate::enrolment::{Card, Enroller, Holder, SentBy};
use crate::events::Listeners;
use crate::reader::{self, ReaderConfig, ReaderMessage};
use crate::store::{DatabaseLock, LockError, Store};
use crate::tag;

/// How long staff have to present the card.
pub const PRESENT_WITHIN: Duration = Duration::from_secs(60);

/// What `enrol` was asked.
#[derive(Clone, Debug)]
pub struct Asked {
    pub reader: ReaderConfig,
    pub member: String,
    /// The card's number as the staff page shows it; `None`: read it from the reader.
    pub tag: Option<String>,
    /// Enrol without asking.
    pub yes: bool,
}

/// How it ended: enrolled (or the member's already), or not, with why.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Enrolled,
    NotConfirmed,
    Refused(String),
}

/// Who does the enrolment: the running service, or this command.
enum Via {
    Service(PathBuf),
    Here {
        enroller: Box<Enroller>,
        /// Held while the database is written here: no service starts on it meanwhile.
        _lock: Option<DatabaseLock>,
        /// Why the waiting taps cannot be made due from here, when they cannot.
        no_database: Option<String>,
        clock: Clock,
    },
}

/// Runs `enrol` as `asked`; what it says goes to standard output, and the outcome decides the
/// exit code.
pub async fn run(config: &Config, key: ApiKey, asked: &Asked, clock: Clock) -> Outcome {
    let via = match choose(config, key, asked, clock).await {
        Ok(via) => via,
        Err(refused) => return Outcome::Refused(refused),
    };
    match enrol(&via, asked).await {
        Ok(outcome) => outcome,
        Err(refused) => Outcome::Refused(refused),
    }
}

/// The service, if it runs on this configuration's database and answers; else this command.
async fn choose(config: &Config, key: ApiKey, asked: &Asked, clock: Clock) -> Result<Via, String> {
    let database = &config.store.path;
    if let Some(socket) = &config.service.socket {
        let status = {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || control::ask(&socket, &Request::Status))
                .await
                .map_err(|e| e.to_string())?
        };
        match status {
            Ok(Reply::Status(reply)) if reply.service.database == *database => {
                return Ok(Via::Service(socket.clone()));
            }
            Ok(_) | Err(AskError::NotRunning) => {}
            Err(e @ AskError::PermissionDenied { .. }) => return Err(e.to_string()),
            Err(AskError::Failed(e)) => return Err(e),
        }
    }
    let holder = crate::store::holder(database);
    if let (Some(pid), None) = (holder, &asked.tag) {
        return Err(format!(
            "reader {}: the service (pid {pid}) is running and reads it, and cannot be asked \
             for the card (its control socket is off, [service] socket). Give the card's number \
             with --tag (the staff page shows it under unknown cards), or stop the service \
             first (`sudo systemctl stop gym-checkin`) and start it again afterwards",
            asked.reader.name
        ));
    }
    let client = egym::Client::new(
        &config.egym.base_url,
        config.egym.request_timeout,
        config.egym.rate_limit_per_second,
        config.egym.rate_limit_burst,
    )?;
    let readers = config
        .readers
        .iter()
        .map(|r| (r.name.clone(), r.egym_tag_format))
        .collect();
    let enroller = Enroller::new(
        client,
        config.egym.api_key.clone(),
        key,
        readers,
        Listeners::unheard(),
    );
    let (enroller, lock, no_database) = match holder {
        Some(pid) => (
            enroller,
            None,
            Some(format!(
                "the service (pid {pid}) runs, and cannot be asked (its control socket is off)"
            )),
        ),
        None => match open_database(database).await {
            Ok((lock, store)) => (enroller.with_store(store), Some(lock), None),
            Err(why) => (enroller, None, Some(why)),
        },
    };
    Ok(Via::Here {
        enroller: Box::new(enroller),
        _lock: lock,
        no_database,
        clock,
    })
}

/// The database, with its lock, when there is one and this user may open it.
async fn open_database(database: &Path) -> Result<(DatabaseLock, Store), String> {
    if !database.exists() {
        return Err(format!(
            "there is no database at {} yet",
            database.display()
        ));
    }
    let lock = DatabaseLock::acquire(database).map_err(|e| match e {
        LockError::Held { .. } => e.to_string(),
        LockError::Io { error, .. } => format!(
            "its database {} cannot be opened here ({error}; as root it can)",
            database.display()
        ),
    })?;
    let store = Store::open(database).await.map_err(|e| {
        format!(
            "its database {} cannot be opened here ({e}; as root it can)",
            database.display()
        )
    })?;
    Ok((lock, store))
}

async fn enrol(via: &Via, asked: &Asked) -> Result<Outcome, String> {
    let reader = asked.reader.name.as_str();
    // With the card's number given, one look at the member with it; else the member first, so
    // a mistyped e-mail address fails before anyone presents a card.
    let (preview, rfid) = match &asked.tag {
        Some(tag) => {
            let preview = preview(via, reader, &asked.member, tag).await?;
            say_found(&preview);
            (preview, tag.clone())
        }
        None => {
            let member = find_member(via, reader, &asked.member).await?;
            say_found(&member);
            let rfid = read_card(via, &asked.reader).await?.rfid;
            let preview = preview(via, reader, &asked.member, &rfid).await?;
            if preview.account_id != member.account_id {
                return Err(
                    "the member found now is not the one found a moment ago; nothing \
                            was changed. Run enrol again"
                        .into(),
                );
            }
            (preview, rfid)
        }
    };
    let member = &preview;
    let who = member
        .first_name
        .clone()
        .unwrap_or_else(|| "the member".into());
    let card = preview
        .card
        .clone()
        .ok_or("the service did not say which card it would enrol")?;
    let card_text = format!(
        "card {} ({})",
        tag::short(&card.rfid),
        match &card.tag_format {
            Some(format) => format!("tagFormat {format}"),
            None => "no tagFormat".into(),
        }
    );
    if preview.already_theirs {
        say(&format!(
            "The {card_text} is enrolled for {who} already: nothing to add at EGYM."
        ));
    } else if !asked.yes {
        let question = format!(
            "Enrol the {card_text} for {who} (account {})?",
            member.account_id
        );
        let answered = tokio::task::spawn_blocking(move || confirm(&question))
            .await
            .unwrap_or(false);
        if !answered {
            say("Not confirmed: nothing was changed.");
            return Ok(Outcome::NotConfirmed);
        }
    }
    let (waiting, sent_by) = add(via, reader, &rfid, &asked.member, &member.account_id).await?;
    if !preview.already_theirs {
        say(&format!("Enrolled the {card_text} for {who} at EGYM."));
    }
    say(&waiting_text(waiting, sent_by, via));
    Ok(Outcome::Enrolled)
}

fn say_found(member: &MemberReply) {
    say(&format!(
        "Found {} at EGYM (account {}), with {} enrolled{}",
        member.first_name.as_deref().unwrap_or("the member"),
        member.account_id,
        counted(member.cards.len(), "card", "cards"),
        cards_text(&member.cards)
    ));
}

/// "1 card", "2 cards".
fn counted(n: usize, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

fn cards_text(cards: &[CardReply]) -> String {
    if cards.is_empty() {
        return ".".into();
    }
    let list: Vec<String> = cards
        .iter()
        .map(|c| match &c.tag_format {
            Some(format) => format!("{} ({format})", c.rfid),
            None => c.rfid.clone(),
        })
        .collect();
    format!(": {}.", list.join(", "))
}

fn waiting_text(waiting: usize, sent_by: SentBy, via: &Via) -> String {
    let no_database = match via {
        Via::Here { no_database, .. } => no_database.clone(),
        Via::Service(_) => None,
    };
    match (waiting, sent_by) {
        (0, SentBy::Service | SentBy::NextStart) => {
            "No taps were waiting on this card: its next tap checks the member in or out.".into()
        }
        (1, SentBy::Service) => {
            "The tap waiting on it is looked up again and delivered now, with its own tap time."
                .into()
        }
        (n, SentBy::Service) => format!(
            "{n} taps waiting on it are looked up again and delivered now, each with its own \
             tap time."
        ),
        (1, SentBy::NextStart) => "The service is not running: the tap waiting on it is \
             delivered, with its own tap time, as soon as it starts."
            .into(),
        (n, SentBy::NextStart) => format!(
            "The service is not running: the {n} taps waiting on it are delivered, each with \
             its own tap time, as soon as it starts."
        ),
        (_, SentBy::TheirSchedule) => format!(
            "Taps waiting on this card, if any, are looked up again on their own schedule \
             (within an hour of the service running), not at once: {}.",
            no_database.unwrap_or_else(|| "the database was not opened".into())
        ),
    }
}

/// Finds the member: through the service, or here.
async fn find_member(via: &Via, reader: &str, member: &str) -> Result<MemberReply, String> {
    match via {
        Via::Service(socket) => {
            let request = Request::EnrolPreview {
                reader: reader.to_string(),
                member: member.to_string(),
                rfid: None,
            };
            match ask(socket, request, control_wait()).await? {
                Reply::Member(found) => Ok(found),
                other => Err(unexpected(other)),
            }
        }
        Via::Here { enroller, .. } => enroller
            .find_member(member)
            .await
            .map(|found| MemberReply::of(found, None, false))
            .map_err(|refused| refused.to_string()),
    }
}

/// Reads the card: the service hands over the next presentation on its reader, or this
/// command reads the reader itself.
async fn read_card(via: &Via, config: &ReaderConfig) -> Result<CardReply, String> {
    let reader = config.name.as_str();
    match via {
        Via::Service(socket) => {
            say(&format!(
                "Present the card on reader {reader} now (within {} s): the service hands it to \
                 this enrolment instead of recording a tap.",
                PRESENT_WITHIN.as_secs()
            ));
            let request = Request::EnrolRead {
                reader: reader.to_string(),
                within_s: PRESENT_WITHIN.as_secs(),
            };
            match ask(socket, request, PRESENT_WITHIN + control_wait()).await? {
                Reply::Card(card) => Ok(card),
                other => Err(unexpected(other)),
            }
        }
        Via::Here { clock, .. } => {
            say(&format!(
                "Present the card on reader {reader} now (within {} s).",
                PRESENT_WITHIN.as_secs()
            ));
            let wanted = |message: &ReaderMessage| match message {
                ReaderMessage::Tap(tap) => !tap.repeat,
                ReaderMessage::Unreadable { .. } | ReaderMessage::RandomUid { .. } => true,
                _ => false,
            };
            match reader::read_one(config, clock.clone(), PRESENT_WITHIN, wanted).await {
                Ok(ReaderMessage::Tap(tap)) => {
                    if tap.cut_short {
                        say(&format!("Warning: {}", reader::CUT_SHORT));
                    }
                    Ok(CardReply::of(Card {
                        rfid: tap.rfid,
                        tag_format: tap.tag_format,
                    }))
                }
                Ok(ReaderMessage::Unreadable { error, .. }) => Err(format!(
                    "reader {reader} sent text that is no card number in its id-format ({error}); \
                     check the reader's settings with `gym-checkin listen`"
                )),
                Ok(ReaderMessage::RandomUid { .. }) => {
                    Err(format!("reader {reader}: {}", reader::RANDOM_UID))
                }
                Ok(other) => Err(format!("reader {reader} sent {other:?}")),
                Err(e) => Err(format!("reader {reader}: {e}")),
            }
        }
    }
}

/// The member and the card, as they would be enrolled.
async fn preview(via: &Via, reader: &str, member: &str, rfid: &str) -> Result<MemberReply, String> {
    match via {
        Via::Service(socket) => {
            let request = Request::EnrolPreview {
                reader: reader.to_string(),
                member: member.to_string(),
                rfid: Some(rfid.to_string()),
            };
            match ask(socket, request, control_wait()).await? {
                Reply::Member(found) => Ok(found),
                other => Err(unexpected(other)),
            }
        }
        Via::Here { enroller, .. } => enroller
            .preview(reader, rfid, member)
            .await
            .map(|p| MemberReply::of(p.member, Some(p.card), p.holder == Holder::ThisMember))
            .map_err(|refused| refused.to_string()),
    }
}

/// Adds the card: how many taps waited on it, and who sends them.
async fn add(
    via: &Via,
    reader: &str,
    rfid: &str,
    member: &str,
    account_id: &str,
) -> Result<(usize, SentBy), String> {
    match via {
        Via::Service(socket) => {
            let request = Request::Enrol {
                reader: reader.to_string(),
                rfid: rfid.to_string(),
                member: member.to_string(),
                account_id: account_id.to_string(),
            };
            match ask(socket, request, control_wait()).await? {
                Reply::Enrolled(done) => Ok((done.waiting, SentBy::Service)),
                other => Err(unexpected(other)),
            }
        }
        Via::Here { enroller, .. } => {
            let by = format!("user {} on the command line", crate::console::user_name());
            enroller
                .enrol(reader, rfid, member, account_id, &by)
                .await
                .map(|done| (done.waiting, done.sent_by))
                .map_err(|refused| refused.to_string())
        }
    }
}

/// How long a request to the service may take: its few requests to EGYM, each within the
/// request timeout.
fn control_wait() -> Duration {
    Duration::from_secs(60)
}

async fn ask(socket: &Path, request: Request, wait: Duration) -> Result<Reply, String> {
    let socket = socket.to_path_buf();
    let reply = tokio::task::spawn_blocking(move || control::ask_waiting(&socket, &request, wait))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match reply {
        Reply::Refused { message, .. } | Reply::Failed(message) => Err(message),
        reply => Ok(reply),
    }
}

fn unexpected(reply: Reply) -> String {
    format!("the service answered something this enrol did not ask for: {reply:?}")
}
