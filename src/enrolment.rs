//! Enrolling a card at EGYM from the box: the staff page's **Enrol** action, `gym-checkin
//! enrol`, and the control socket's requests for it all come here.
//!
//! An enrolment is a write to EGYM on behalf of staff, in three steps, each its own request
//! so staff see what they are about to do:
//! 1. **Find the member** by e-mail (the text holds `@`) or membership id, and the cards
//!    already enrolled for them (two requests).
//! 2. **Look the card up**, as delivery would (one request, with the card's `tagFormat`): a card
//!    that already belongs to another member is refused here, without naming the member; one
//!    that is this member's already needs no write.
//! 3. **Add the card** (`POST accounts/{id}/rfids`), after looking it up once more (nobody may
//!    have taken it since step 2), with the rendering and `tagFormat` the reader's lookups send,
//!    so that the next lookup finds the member ([`Card`]). Then the taps waiting on the card
//!    are looked up again at once and delivered with their own tap times, and one line is
//!    logged ([`CardEnrolled`]) with who asked, the member's account id and the tag, shortened.
//!
//! Every request goes through the service's one [`egym::Client`], so it takes its token from
//! the same bucket as every other EGYM call. What EGYM's answers mean for staff is one pure
//! function, [`refusal`]; each refusal says what was (not) changed and what to do.
//!
//! While the service runs, a card presented on a reader can be *claimed* for an enrolment
//! ([`Claims`]): the recorder hands that one presentation to the enrolment instead of recording
//! it as a tap (`gym-checkin enrol` without `--tag`, on a reader the service reads).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::egym::{self, ApiKey, ApiKeySource, EnrolledRfid, Failure};
use crate::events::{CardEnrolled, EnrolmentRefused, Listeners};
use crate::store::Store;
use crate::tag::{self, TagFormat};
use crate::visit::Membership;

/// A card as EGYM should hold it: the rendering a reader's lookups send, and their `tagFormat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    pub rfid: String,
    pub tag_format: Option<TagFormat>,
}

/// A member found at EGYM, and the cards enrolled for them. The first name is for staff on the
/// page or the terminal; it is never logged nor written down.
#[derive(Clone, PartialEq, Eq)]
pub struct MemberFound {
    pub account_id: String,
    pub first_name: Option<String>,
    pub membership: Membership,
    pub cards: Vec<EnrolledRfid>,
}

impl fmt::Debug for MemberFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberFound")
            .field("account_id", &self.account_id)
            .field("cards", &self.cards.len())
            .finish_non_exhaustive()
    }
}

/// Who holds a card at EGYM now, as a lookup of it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    /// The member being enrolled: nothing to add.
    ThisMember,
    /// Someone else, never named.
    Another,
}

/// What staff are shown before they confirm: the member, the card, and whether the card is
/// this member's already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    pub member: MemberFound,
    pub card: Card,
    pub holder: Holder,
}

/// An enrolment done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolled {
    pub card: Card,
    pub account_id: String,
    /// The card was this member's already: nothing was written to EGYM.
    pub already: bool,
    /// Taps that waited on the card (looked up again at once, then delivered).
    pub waiting: usize,
    /// How the waiting taps are sent: by the running service at once, or not by this process.
    pub sent_by: SentBy,
}

/// Who delivers the taps that waited on a card enrolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentBy {
    /// The running service, at once.
    Service,
    /// The service, when it next runs: they were made due in its database.
    NextStart,
    /// Nobody was told: the database could not be opened here. They follow their own schedule.
    TheirSchedule,
}

/// Which step of an enrolment EGYM answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET accounts/email/…` or `accounts/membership/…`.
    FindMember,
    /// `GET accounts/{id}/rfids`.
    ListCards,
    /// `GET accounts/rfid/{rfid}`.
    LookUpCard,
    /// `POST accounts/{id}/rfids`.
    AddCard,
}

/// Why an enrolment was not done, in words for staff. Nothing was changed at EGYM unless the
/// words say it may have been.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// EGYM knows no member with this e-mail address or membership id.
    NoSuchMember { member: String },
    /// The card belongs to another member at EGYM (who is not named).
    HeldByAnother { tag: String },
    /// EGYM refused the key for a read: missing, wrong, or without the permission to read.
    KeyRefused(Failure),
    /// The key may read, but not add cards.
    MayNotWriteCards(Failure),
    /// The account went away between finding the member and adding the card.
    AccountGone,
    /// The member found is not the one staff were shown (the e-mail or membership id now names
    /// another account).
    MemberChanged,
    /// The text is no card number as a reader sends it to EGYM.
    NotACard { given: String },
    /// No such reader in the configuration.
    NoSuchReader {
        reader: String,
        configured: Vec<String>,
    },
    /// EGYM could not be asked (no answer, a timeout, 408, 429, 5xx): try again. For the write,
    /// the card may have been added; enrolling again is safe, it looks the card up first.
    Unreachable { step: Step, failure: Failure },
    /// EGYM would not do it, for another reason: its own words.
    Egym { step: Step, failure: Failure },
    /// The box's database could not be read.
    Database(String),
}

impl Refused {
    /// The words for the log: as said to staff, without the e-mail address or membership id
    /// they typed.
    pub fn for_the_log(&self) -> String {
        match self {
            Refused::NoSuchMember { .. } => {
                "EGYM knows no member with the e-mail address or membership id given".into()
            }
            other => other.to_string(),
        }
    }

    /// A stable name for the log's `reason` field and the page.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::NoSuchMember { .. } => "no_such_member",
            Refused::HeldByAnother { .. } => "held_by_another_member",
            Refused::KeyRefused(_) => "key_refused",
            Refused::MayNotWriteCards(_) => "key_may_not_write_cards",
            Refused::AccountGone => "account_gone",
            Refused::MemberChanged => "member_changed",
            Refused::NotACard { .. } => "not_a_card",
            Refused::NoSuchReader { .. } => "no_such_reader",
            Refused::Unreachable { .. } => "egym_unreachable",
            Refused::Egym { .. } => "egym_refused",
            Refused::Database(_) => "database",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NoSuchMember { member } if member.contains('@') => write!(
                f,
                "EGYM knows no member with the e-mail address {member:?}. Check the spelling, \
                 or use the membership id"
            ),
            Refused::NoSuchMember { member } => write!(
                f,
                "EGYM knows no member with the membership id {member:?}. Check it, or use the \
                 member's e-mail address"
            ),
            Refused::HeldByAnother { tag } => write!(
                f,
                "card {tag} is already enrolled for another member at EGYM; nothing was \
                 changed. If the card now belongs to this member, remove it from the other \
                 member in EGYM first"
            ),
            Refused::KeyRefused(failure) => write!(
                f,
                "EGYM refused the API key ({failure}); nothing was changed. Check the key, and \
                 that EGYM gave it the permissions to look up members and their cards"
            ),
            Refused::MayNotWriteCards(failure) => write!(
                f,
                "EGYM did not let this box add the card: the API key may not write cards \
                 ({failure}). Nothing was changed. Ask EGYM to give this location's key the \
                 permission to manage members' RFIDs, or enrol the card in EGYM's own app"
            ),
            Refused::AccountGone => write!(
                f,
                "EGYM no longer has this member's account; nothing was changed. Look the \
                 member up again"
            ),
            Refused::MemberChanged => write!(
                f,
                "the member found now is not the one shown; nothing was changed. Look the \
                 member up again"
            ),
            Refused::NotACard { given } => write!(
                f,
                "{given:?} is no card number as a reader sends it to EGYM: give it as 0x and \
                 whole bytes of hex (e.g. 0x0A0B0C0D0E), as the staff page shows it under \
                 unknown cards"
            ),
            Refused::NoSuchReader { reader, configured } => write!(
                f,
                "no reader {reader:?} is configured (configured: {})",
                configured.join(", ")
            ),
            Refused::Unreachable {
                step: Step::AddCard,
                failure,
            } => write!(
                f,
                "EGYM did not answer the request to add the card ({failure}): it may or may \
                 not have been added. Enrolling again is safe: the card is looked up first"
            ),
            Refused::Unreachable { failure, .. } => write!(
                f,
                "cannot ask EGYM now ({failure}); nothing was changed. Try again in a moment"
            ),
            Refused::Egym { step, failure } => write!(
                f,
                "EGYM would not {} ({failure}); nothing was changed",
                match step {
                    Step::FindMember => "look the member up",
                    Step::ListCards => "list the member's cards",
                    Step::LookUpCard => "look the card up",
                    Step::AddCard => "add the card",
                }
            ),
            Refused::Database(e) => write!(
                f,
                "the box's database cannot be read ({e}); nothing was changed"
            ),
        }
    }
}

/// What an unsuccessful answer to `step` means for an enrolment (pure). `member` is the e-mail
/// address or membership id staff gave.
pub fn refusal(step: Step, member: &str, failure: Failure) -> Refused {
    let status = match &failure {
        Failure::Transport { .. } | Failure::Malformed { .. } => {
            return Refused::Unreachable { step, failure };
        }
        Failure::Status { status, .. } => *status,
    };
    match (status, step) {
        // The same key found the member a moment ago: a 403 now is the write it may not make.
        (403, Step::AddCard) => Refused::MayNotWriteCards(failure),
        (401 | 403, _) => Refused::KeyRefused(failure),
        (404, Step::FindMember) => Refused::NoSuchMember {
            member: member.to_string(),
        },
        (404, Step::ListCards | Step::AddCard) => Refused::AccountGone,
        (408 | 429 | 500..=599, _) => Refused::Unreachable { step, failure },
        _ => Refused::Egym { step, failure },
    }
}

/// A card number as staff give it (`0x0a0b0c0d0e`), as EGYM keeps it: `0x` and uppercase hex of
/// whole bytes (pure).
pub fn card_number(text: &str) -> Result<String, Refused> {
    let trimmed = text.trim();
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"));
    match hex {
        Some(hex)
            if !hex.is_empty()
                && hex.len() % 2 == 0
                && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(format!("0x{}", hex.to_ascii_uppercase()))
        }
        _ => Err(Refused::NotACard {
            given: text.to_string(),
        }),
    }
}

/// How the running service's delivery hears of a card enrolled: its tag.
pub type EnrolledCards = mpsc::UnboundedSender<String>;

/// Where the key comes from: read anew for each enrolment (it may have been replaced), else
/// the one the service started with.
#[derive(Clone, Debug)]
struct Key {
    source: ApiKeySource,
    started_with: ApiKey,
}

impl Key {
    fn now(&self) -> ApiKey {
        self.source
            .read()
            .unwrap_or_else(|_| self.started_with.clone())
    }
}

/// Enrols cards: cheap to clone.
#[derive(Clone, Debug)]
pub struct Enroller {
    client: egym::Client,
    key: Key,
    /// Each configured reader, with the `egym-tag-format` its lookups send.
    readers: Arc<Vec<(String, Option<TagFormat>)>>,
    store: Option<Store>,
    /// The running service's delivery, told of each card enrolled.
    delivery: Option<EnrolledCards>,
    listeners: Listeners,
}

impl Enroller {
    /// An enroller for `readers` (each name with its `egym-tag-format`), making its requests
    /// through `client`.
    pub fn new(
        client: egym::Client,
        key_source: ApiKeySource,
        key: ApiKey,
        readers: Vec<(String, Option<TagFormat>)>,
        listeners: Listeners,
    ) -> Enroller {
        Enroller {
            client,
            key: Key {
                source: key_source,
                started_with: key,
            },
            readers: Arc::new(readers),
            store: None,
            delivery: None,
            listeners,
        }
    }

    /// Reads what waits on a card from `store`, and (with no delivery to tell) makes it due
    /// there.
    pub fn with_store(self, store: Store) -> Enroller {
        Enroller {
            store: Some(store),
            ..self
        }
    }

    /// Tells the running service's delivery of each card enrolled.
    pub fn with_delivery(self, delivery: EnrolledCards) -> Enroller {
        Enroller {
            delivery: Some(delivery),
            ..self
        }
    }

    /// Who hears of what the enrolments do.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The configured readers' names.
    pub fn reader_names(&self) -> Vec<String> {
        self.readers.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Finds the member by e-mail (`member` holds `@`) or membership id, and the cards enrolled
    /// for them: two requests.
    pub async fn find_member(&self, member: &str) -> Result<MemberFound, Refused> {
        let key = self.key.now();
        let member = member.trim();
        let account = self.search(&key, member).await?;
        let cards = self
            .client
            .enrolled_rfids(&key, &account.account_id)
            .await
            .map_err(|failure| refusal(Step::ListCards, member, failure))?;
        Ok(MemberFound {
            account_id: account.account_id,
            first_name: account.first_name,
            membership: account.membership,
            cards,
        })
    }

    async fn search(&self, key: &ApiKey, member: &str) -> Result<egym::Account, Refused> {
        if member.is_empty() {
            return Err(Refused::NoSuchMember {
                member: String::new(),
            });
        }
        if member.contains('@') {
            self.client.account_by_email(key, member).await
        } else {
            self.client.account_by_membership(key, member).await
        }
        .map_err(|failure| refusal(Step::FindMember, member, failure))
    }

    /// The card to enrol for `rfid` seen on `reader`: the number as the reader sends it, with
    /// the `tagFormat` the lookups of its waiting taps sent (a TWN4 sends its card's own), or
    /// else the reader's `egym-tag-format`.
    pub async fn card(&self, reader: &str, rfid: &str) -> Result<Card, Refused> {
        let configured = self
            .readers
            .iter()
            .find(|(name, _)| name == reader)
            .ok_or_else(|| Refused::NoSuchReader {
                reader: reader.to_string(),
                configured: self.reader_names(),
            })?
            .1;
        let rfid = card_number(rfid)?;
        let waiting = match &self.store {
            Some(store) => store
                .open_events_of(rfid.clone())
                .await
                .map_err(|e| Refused::Database(e.to_string()))?,
            None => Vec::new(),
        };
        let tag_format = waiting
            .iter()
            .find(|e| e.reader == reader)
            .map_or(configured, |e| e.tag_format);
        Ok(Card { rfid, tag_format })
    }

    /// Who holds `card` at EGYM: one lookup, as delivery makes it.
    async fn holder(&self, key: &ApiKey, card: &Card, account_id: &str) -> Result<Holder, Refused> {
        match self.client.lookup(key, &card.rfid, card.tag_format).await {
            Ok(account) if account.account_id == account_id => Ok(Holder::ThisMember),
            Ok(_) => Ok(Holder::Another),
            Err(failure)
                if egym::classify(egym::Call::Lookup, &failure) == egym::Verdict::UnknownTag =>
            {
                Ok(Holder::Nobody)
            }
            Err(failure) => Err(refusal(Step::LookUpCard, "", failure)),
        }
    }

    /// What staff are shown before they confirm: the member, their cards, and who holds the
    /// card. A card another member holds is refused here already.
    pub async fn preview(
        &self,
        reader: &str,
        rfid: &str,
        member: &str,
    ) -> Result<Preview, Refused> {
        let card = self.card(reader, rfid).await?;
        let found = self.find_member(member).await?;
        let holder = self
            .holder(&self.key.now(), &card, &found.account_id)
            .await?;
        if holder == Holder::Another {
            return Err(Refused::HeldByAnother {
                tag: tag::short(&card.rfid),
            });
        }
        Ok(Preview {
            member: found,
            card,
            holder,
        })
    }

    /// Enrols the card `rfid` seen on `reader` for `member`, who was shown to staff as
    /// `account_id`; `by` says who asked (the page's client address, the command's user), for
    /// the log. Every outcome is logged once, as enrolled or refused.
    pub async fn enrol(
        &self,
        reader: &str,
        rfid: &str,
        member: &str,
        account_id: &str,
        by: &str,
    ) -> Result<Enrolled, Refused> {
        let result = self.try_enrol(reader, rfid, member, account_id, by).await;
        if let Err(refused) = &result {
            EnrolmentRefused {
                by: by.to_string(),
                reader: reader.to_string(),
                tag: card_number(rfid).unwrap_or_default(),
                account_id: account_id.to_string(),
                reason: refused.code(),
                detail: refused.for_the_log(),
            }
            .emit(&self.listeners);
        }
        result
    }

    async fn try_enrol(
        &self,
        reader: &str,
        rfid: &str,
        member: &str,
        account_id: &str,
        by: &str,
    ) -> Result<Enrolled, Refused> {
        let card = self.card(reader, rfid).await?;
        let key = self.key.now();
        let account = self.search(&key, member.trim()).await?;
        if account.account_id != account_id {
            return Err(Refused::MemberChanged);
        }
        let holder = self.holder(&key, &card, account_id).await?;
        match holder {
            Holder::Another => {
                return Err(Refused::HeldByAnother {
                    tag: tag::short(&card.rfid),
                });
            }
            Holder::ThisMember => {}
            Holder::Nobody => {
                self.client
                    .add_rfid(&key, account_id, &card.rfid, card.tag_format)
                    .await
                    .map_err(|failure| refusal(Step::AddCard, member, failure))?;
            }
        }
        let (waiting, sent_by, head) = self.send_waiting(&card.rfid).await;
        CardEnrolled {
            by: by.to_string(),
            reader: reader.to_string(),
            tag: card.rfid.clone(),
            tag_format: card.tag_format,
            account_id: account_id.to_string(),
            already: holder == Holder::ThisMember,
            waiting,
            head,
            first_name: account.first_name,
        }
        .emit(&self.listeners);
        Ok(Enrolled {
            card,
            account_id: account_id.to_string(),
            already: holder == Holder::ThisMember,
            waiting,
            sent_by,
        })
    }

    /// Has the taps waiting on the card enrolled looked up again at once: by the running
    /// service's delivery (which does it when no attempt of the card is in flight), or, with no
    /// service, in the database for its next start. Returns how many wait, who sends them, and
    /// the first of them.
    async fn send_waiting(&self, rfid: &str) -> (usize, SentBy, Option<crate::store::OpenEvent>) {
        let waiting = match &self.store {
            Some(store) => store.open_events_of(rfid.to_string()).await.ok(),
            None => None,
        };
        let head = waiting.as_ref().and_then(|w| w.first().cloned());
        let n = waiting.as_ref().map_or(0, Vec::len);
        if let Some(delivery) = &self.delivery
            && delivery.send(rfid.to_string()).is_ok()
        {
            return (n, SentBy::Service, head);
        }
        match &self.store {
            Some(store) => match store.card_enrolled(rfid.to_string()).await {
                Ok(n) => (n, SentBy::NextStart, head),
                Err(_) => (n, SentBy::TheirSchedule, head),
            },
            None => (0, SentBy::TheirSchedule, None),
        }
    }
}

/// Presentations claimed for an enrolment, by reader: the recorder hands the next card
/// presented on such a reader to the enrolment instead of recording a tap. One claim per reader
/// at a time. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Claims(Arc<Mutex<ClaimsInner>>);

#[derive(Debug, Default)]
struct ClaimsInner {
    /// Each reader's open claim: its number and where its card goes.
    open: HashMap<String, (u64, oneshot::Sender<Card>)>,
    made: u64,
}

/// A claim on a reader's next card.
#[derive(Debug)]
pub struct Claim {
    /// Its number, to give up this claim and no other.
    pub number: u64,
    pub card: oneshot::Receiver<Card>,
}

impl Claims {
    /// Claims the next presentation on `reader`, unless an enrolment waiting there already
    /// claims it (`None`).
    pub fn claim(&self, reader: &str) -> Option<Claim> {
        let mut inner = self.lock();
        if inner
            .open
            .get(reader)
            .is_some_and(|(_, sender)| !sender.is_closed())
        {
            return None;
        }
        inner.made += 1;
        let number = inner.made;
        let (sender, card) = oneshot::channel();
        inner.open.insert(reader.to_string(), (number, sender));
        Some(Claim { number, card })
    }

    /// Gives up claim `number` on `reader` (no card came in time, or the enrolment went away),
    /// if it is still open.
    pub fn release(&self, reader: &str, number: u64) {
        let mut inner = self.lock();
        if inner.open.get(reader).is_some_and(|(n, _)| *n == number) {
            inner.open.remove(reader);
        }
    }

    /// For the recorder: whether the presentation of `card` on `reader` was claimed; if it was,
    /// it went to the enrolment and is no tap. A claim whose enrolment went away takes nothing.
    pub fn take(&self, reader: &str, card: impl FnOnce() -> Card) -> bool {
        let mut inner = self.lock();
        if inner.open.is_empty() {
            return false;
        }
        let Some((_, sender)) = inner.open.remove(reader) else {
            return false;
        };
        drop(inner);
        sender.send(card()).is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClaimsInner> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egym::ErrorBody;

    fn status(status: u16, error_code: &str) -> Failure {
        Failure::Status {
            status,
            body: ErrorBody {
                error_code: Some(error_code.into()),
                message: None,
                entity: None,
            },
        }
    }

    #[test]
    fn egym_s_answers_are_refusals_staff_can_act_on() {
        use Step::*;
        let transport = Failure::Transport {
            timeout: true,
            detail: "x".into(),
        };
        let cases: [(Step, Failure, &str); 12] = [
            (FindMember, status(404, "notFound"), "no_such_member"),
            (FindMember, status(401, "unauthorized"), "key_refused"),
            (FindMember, status(403, "missingPermission"), "key_refused"),
            (ListCards, status(404, "notFound"), "account_gone"),
            (LookUpCard, status(403, "missingPermission"), "key_refused"),
            (
                AddCard,
                status(403, "missingPermission"),
                "key_may_not_write_cards",
            ),
            (AddCard, status(401, "unauthorized"), "key_refused"),
            (AddCard, status(404, "notFound"), "account_gone"),
            (AddCard, status(400, "rfidAlreadyAssigned"), "egym_refused"),
            (AddCard, status(503, "unavailable"), "egym_unreachable"),
            (AddCard, transport.clone(), "egym_unreachable"),
            (
                FindMember,
                status(429, "tooManyRequests"),
                "egym_unreachable",
            ),
        ];
        for (step, failure, code) in cases {
            let refused = refusal(step, "pat@example.invalid", failure.clone());
            assert_eq!(refused.code(), code, "{step:?} {failure}");
        }
        let said = refusal(AddCard, "", status(403, "missingPermission")).to_string();
        assert!(
            said.contains("may not write cards") && said.contains("Nothing was changed"),
            "{said}"
        );
        let said = refusal(AddCard, "", transport).to_string();
        assert!(said.contains("may or may not have been added"), "{said}");
        let said = refusal(FindMember, "pat@example.invalid", status(404, "notFound")).to_string();
        assert!(said.contains("no member with the e-mail address"), "{said}");
        let said = refusal(FindMember, "M-1", status(404, "notFound")).to_string();
        assert!(said.contains("membership id \"M-1\""), "{said}");
        let said = Refused::HeldByAnother {
            tag: "0x…21A5".into(),
        }
        .to_string();
        assert!(
            said.contains("another member") && said.contains("0x…21A5"),
            "{said}"
        );
    }

    /// The service hands the enroller a client that shares its bucket with delivery's: the
    /// enrolment's requests leave that bucket short.
    #[tokio::test]
    async fn an_enrolment_s_requests_come_out_of_the_bucket_of_the_client_it_is_given() {
        use crate::egym::fake::{FakeEgym, Member};
        use crate::egym::rate_limit::Priority;
        let fake = FakeEgym::start(
            vec![Member::without_card("acc-pat", "Pat Member").email("pat@example.invalid")],
            "key-0123456789",
        )
        .await
        .unwrap();
        let key = ApiKey::new("key-0123456789".into());
        let url = reqwest::Url::parse(&fake.base_url()).unwrap();
        // Four tokens, and practically none coming back.
        let delivery =
            egym::Client::new(&url, std::time::Duration::from_secs(5), 0.0001, 4).unwrap();
        let enroller = Enroller::new(
            delivery.with_priority(Priority::Member),
            ApiKeySource::Literal(key.clone()),
            key,
            vec![("desk".into(), Some(TagFormat::Hitag1))],
            Listeners::unheard(),
        );
        assert!(delivery.has_spare_requests());
        let preview = enroller
            .preview("desk", "0x0a0b0c0d0e", "pat@example.invalid")
            .await
            .unwrap();
        assert_eq!(preview.holder, Holder::Nobody);
        assert_eq!(
            preview.card,
            Card {
                rfid: "0x0A0B0C0D0E".into(),
                tag_format: Some(TagFormat::Hitag1)
            }
        );
        assert_eq!(fake.received().len(), 3);
        assert!(
            !delivery.has_spare_requests(),
            "the enrolment's three requests were not taken from delivery's bucket"
        );
    }

    #[test]
    fn a_card_number_is_taken_as_egym_keeps_it_and_anything_else_is_refused() {
        assert_eq!(card_number("0x0a0b0C0d0E").unwrap(), "0x0A0B0C0D0E");
        assert_eq!(card_number(" 0X1EA68671 ").unwrap(), "0x1EA68671");
        for text in [
            "",
            "0x",
            "0x0A0",
            "0A0B0C0D0E",
            "1904649758",
            "0x0G",
            "0x0A 0B",
        ] {
            assert_eq!(
                card_number(text).map_err(|r| r.code()),
                Err("not_a_card"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_claimed_presentation_goes_to_the_enrolment_once_and_no_other_reader_s() {
        let claims = Claims::default();
        let card = Card {
            rfid: "0x0A0B0C0D0E".into(),
            tag_format: None,
        };
        let mut claimed = claims.claim("desk").unwrap();
        let given = || card.clone();
        assert!(
            claims.claim("desk").is_none(),
            "one enrolment waits on a reader at a time"
        );
        assert!(
            !claims.take("entrance", given),
            "another reader's tap is a tap"
        );
        assert!(claims.take("desk", given));
        assert_eq!(claimed.card.try_recv().unwrap(), card);
        assert!(!claims.take("desk", given), "the next one is a tap again");
        // A claim given up, or whose enrolment went away: the presentation is a tap.
        let released = claims.claim("desk").unwrap();
        claims.release("desk", released.number);
        assert!(!claims.take("desk", given));
        let gone = claims.claim("desk").unwrap();
        drop(gone);
        assert!(!claims.take("desk", given));
        // Giving up an old claim leaves a newer one be.
        let old = claims.claim("desk").unwrap();
        drop(old.card);
        let newer = claims.claim("desk").unwrap();
        claims.release("desk", old.number);
        assert!(claims.take("desk", given));
        drop(newer);
    }
}
