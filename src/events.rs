//! What happens, each said once.
//!
//! Each thing that happens in the service is one type here, as vector's internal events are: a
//! tap recorded, ignored or lost, an automatic check-out, a held tap placed, a reader connected
//! or lost, a delivery outcome, an admission, a member's name learnt, EGYM reachable again, a
//! card enrolled (or its enrolment refused), a presentation taken for an enrolment.
//! Its `emit` writes its log line (with a stable `event` field, and the same fields every time),
//! counts its metric with enum labels, and tells the screen, all in one place. The recorder and
//! delivery emit them, after the database has answered; nothing else writes these log lines,
//! counts these metrics or tells the screen these things.
//!
//! Tests hear of them through a [`Sink`] the [`Listeners`] can hold, or, end to end, through
//! the log's `event` field: never through the wording of a message.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::clock::placement::Placed;
use crate::clock::{SteadyMs, WallMs, rfc3339_ms};
use crate::egym::Refusal;
use crate::metrics::{DeliveryOutcome, Metrics, TapOutcome};
use crate::store::{Admission, Holdings, TimeQuality};
use crate::tag;
use crate::visit::{AutoReason, Kind};

/// What the screen hears of what happens. The screen implements it; the parts that emit
/// events know only this.
pub trait Observer: Send + Sync + fmt::Debug {
    /// Something a member screen may answer.
    fn happened(&self, happening: Happening);
    /// Something the staff page shows has changed.
    fn changed(&self);
    /// Everything about these cards was erased (`gym-checkin forget`): what the screen holds
    /// of them goes too.
    fn forget(&self, _cards: &[String]) {}
}

/// No screen: for commands and tests that have none.
#[derive(Debug, Default)]
pub struct Nobody;

impl Observer for Nobody {
    fn happened(&self, _: Happening) {}
    fn changed(&self) {}
}

/// What the service knew of a tag when its tap was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// A member (cached account).
    Member,
    /// A Wellpass member: EGYM admits the check-in first.
    WellpassMember,
    /// EGYM said recently that no member has the tag.
    Nobody,
    /// Not asked yet, or too long ago.
    NotYet,
}

/// What happened, as the screen hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// A tap's event was committed.
    Recorded {
        event_id: i64,
        reader: String,
        /// Kept in memory only, with the answer on screen, to know the same card tapped again.
        tag: String,
        kind: Kind,
        known: Known,
    },
    /// A tap within the repeat window: `inside` is whether the member is in.
    Repeated {
        reader: String,
        tag: String,
        inside: bool,
    },
    /// Delivery looked the tag up: the member's first name (kept in memory only), for the tap
    /// of `event_id`, a `kind`.
    Named {
        event_id: i64,
        tag: String,
        kind: Kind,
        first_name: String,
    },
    /// EGYM admitted a Wellpass member's check-in; `first_visit`: for the first time.
    Admitted { event_id: i64, first_visit: bool },
    /// A visit left open was checked out by itself.
    AutoCheckedOut { tag: String },
    /// The check-in or check-out reached EGYM.
    Delivered { event_id: i64 },
    /// EGYM knows no member with the tag.
    Unknown { event_id: i64 },
    /// EGYM refused a Wellpass member's admission: the member of `tag` is not let in.
    Refused {
        event_id: i64,
        tag: String,
        refusal: Refusal,
    },
    /// A delivery attempt failed and will be retried (EGYM out of reach or failing).
    Failing { event_id: i64 },
    /// Staff enrolled the card whose tap `event_id` (the oldest waiting on it) was: it is
    /// delivered next. The member may still be at the desk if the tap is recent.
    Enrolled {
        event_id: i64,
        reader: String,
        kind: Kind,
        /// When the tap was made, in steady time.
        tapped: SteadyMs,
        first_name: Option<String>,
    },
}

/// Who hears of what happens besides the log: the screen (an [`Observer`]), the counters, and
/// a test's sink.
#[derive(Clone, Debug)]
pub struct Listeners {
    observer: Arc<dyn Observer>,
    metrics: Arc<Metrics>,
    sink: Option<Sink>,
    /// `[log] full-tags`: log lines carry whole tags, and an unknown card's renderings.
    full_tags: bool,
}

impl Listeners {
    pub fn new(observer: Arc<dyn Observer>, metrics: Arc<Metrics>) -> Listeners {
        Listeners {
            observer,
            metrics,
            sink: None,
            full_tags: false,
        }
    }

    /// The same listeners, logging whole tags (`[log] full-tags = true`, for a setup session).
    pub fn with_full_tags(self, full_tags: bool) -> Listeners {
        Listeners { full_tags, ..self }
    }

    /// A tag as the log shows it: shortened (`0x…21A5`), or whole with `[log] full-tags`.
    fn tag(&self, rfid: &str) -> String {
        if self.full_tags {
            rfid.to_string()
        } else {
            tag::short(rfid)
        }
    }

    /// Listeners with no screen and counters of their own (commands, tests).
    pub fn unheard() -> Listeners {
        Listeners::new(Arc::new(Nobody), Arc::default())
    }

    /// The same listeners, and `sink` too.
    pub fn with_sink(self, sink: Sink) -> Listeners {
        Listeners {
            sink: Some(sink),
            ..self
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn heard(&self, event: Event) {
        if let Some(sink) = &self.sink {
            sink.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        }
    }
}

/// Every event emitted, kept for a test to look at.
#[derive(Clone, Debug, Default)]
pub struct Sink(Arc<Mutex<Vec<Event>>>);

impl Sink {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Any event, as a sink keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    TapRecorded(TapRecorded),
    TapIgnored(TapIgnored),
    TapLost(TapLost),
    AutoCheckedOut(AutoCheckedOut),
    TapPlaced(TapPlaced),
    ReaderChanged(ReaderChanged),
    Delivery(Delivery),
    AdmissionMade(AdmissionMade),
    NameKnown(NameKnown),
    EgymRecovered(EgymRecovered),
    DeliveryResumed(DeliveryResumed),
    Pruned(Pruned),
    Erased(Erased),
    CardEnrolled(CardEnrolled),
    EnrolmentRefused(EnrolmentRefused),
    PresentationClaimed(PresentationClaimed),
    CardAwaited(CardAwaited),
}

/// A tap's event committed to the outbox (or an automatic check-out's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRecorded {
    pub event_id: i64,
    pub reader: String,
    pub tag: String,
    pub kind: Kind,
    pub tapped_at: WallMs,
    pub time: TimeQuality,
    pub automatic: bool,
    /// What the tag cache knew of the tag, for the screen's first answer.
    pub known: Known,
}

impl TapRecorded {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "tap_recorded",
            outcome = "recorded",
            automatic = self.automatic,
            event_id = self.event_id,
            reader = %self.reader,
            tag = %to.tag(&self.tag),
            kind = %self.kind.as_str(),
            tapped_at_ms = self.tapped_at.as_millis(),
            clock = self.time.as_str(),
            "tap recorded"
        );
        if !self.automatic {
            to.metrics.tap(&self.reader, TapOutcome::Recorded);
            to.observer.happened(Happening::Recorded {
                event_id: self.event_id,
                reader: self.reader.clone(),
                tag: self.tag.clone(),
                kind: self.kind,
                known: self.known,
            });
        }
        to.observer.changed();
        to.heard(Event::TapRecorded(self));
    }
}

/// A tap within the repeat window of its tag's last one: nothing is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapIgnored {
    pub reader: String,
    pub tag: String,
    pub since_last_ms: i64,
    /// Whether the member is inside.
    pub inside: bool,
}

impl TapIgnored {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "tap_ignored",
            outcome = "ignored",
            reader = %self.reader,
            tag = %to.tag(&self.tag),
            since_last_s = self.since_last_ms / 1000,
            "tap ignored: same tag within repeat-window"
        );
        to.metrics.tap(&self.reader, TapOutcome::Ignored);
        to.observer.happened(Happening::Repeated {
            reader: self.reader.clone(),
            tag: self.tag.clone(),
            inside: self.inside,
        });
        to.heard(Event::TapIgnored(self));
    }
}

/// A tap that could not be kept: the database could not be written and the memory buffer was
/// full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapLost {
    pub reader: String,
    pub tag: String,
    pub kind: Kind,
    pub tapped_at: WallMs,
}

impl TapLost {
    pub fn emit(self, to: &Listeners) {
        error!(
            event = "tap_lost",
            outcome = "lost",
            reader = %self.reader,
            tag = %to.tag(&self.tag),
            kind = %self.kind.as_str(),
            tapped_at = %rfc3339_ms(self.tapped_at),
            "tap LOST: the database cannot be written and the in-memory buffer is full"
        );
        to.metrics.tap(&self.reader, TapOutcome::Lost);
        to.heard(Event::TapLost(self));
    }
}

/// A visit left open checked out by itself (its event is recorded like a tap's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoCheckedOut {
    pub tag: String,
    pub reason: AutoReason,
    pub stamped_at: WallMs,
    /// How long after its stamp it was made.
    pub late: Duration,
}

impl AutoCheckedOut {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "auto_checkout",
            outcome = "auto_checkout",
            tag = %to.tag(&self.tag),
            reason = self.reason.as_str(),
            stamped_at = %rfc3339_ms(self.stamped_at),
            late_s = self.late.as_secs(),
            "automatic check-out"
        );
        to.observer.happened(Happening::AutoCheckedOut {
            tag: self.tag.clone(),
        });
        to.heard(Event::AutoCheckedOut(self));
    }
}

/// A tap held for the clock got its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapPlaced {
    pub event_id: i64,
    pub reader: String,
    pub tag: String,
    pub kind: Kind,
    pub placed: Placed,
}

impl TapPlaced {
    pub fn emit(self, to: &Listeners) {
        let (id, reader, tag, kind) = (
            self.event_id,
            &self.reader,
            to.tag(&self.tag),
            self.kind.as_str(),
        );
        match self.placed {
            Placed::Exact(at) => info!(
                event = "tap_placed",
                outcome = "placed",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                tapped_at = %rfc3339_ms(at),
                clock = "restamped",
                "tap time placed: counted back from the now trusted clock"
            ),
            Placed::Approximate {
                at,
                not_before,
                not_after,
            } => warn!(
                event = "tap_placed",
                outcome = "placed",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                tapped_at = %rfc3339_ms(at),
                not_before = %rfc3339_ms(not_before),
                not_after = %rfc3339_ms(not_after),
                clock = "approximate",
                "tap time APPROXIMATE: the tap was made in a boot that ended before the clock was trusted; it is sent with a time between these bounds"
            ),
        }
        to.observer.changed();
        to.heard(Event::TapPlaced(self));
    }
}

/// A reader's device opened, lost, or closed at a stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderChanged {
    pub reader: String,
    pub device: String,
    pub connected: bool,
    /// Why it was lost, when it was (not at a stop).
    pub lost: Option<String>,
}

impl ReaderChanged {
    pub fn emit(self, to: &Listeners) {
        match (self.connected, &self.lost) {
            (true, _) => info!(
                event = "reader_connected",
                reader = %self.reader,
                device = %self.device,
                "reader connected"
            ),
            (false, Some(reason)) => warn!(
                event = "reader_disconnected",
                reader = %self.reader,
                device = %self.device,
                reason = %reason,
                "reader disconnected; reopening it when it is back"
            ),
            (false, None) => info!(
                event = "reader_closed",
                reader = %self.reader,
                device = %self.device,
                "reader closed"
            ),
        }
        to.observer.changed();
        to.heard(Event::ReaderChanged(self));
    }
}

/// What one delivery attempt's outcome means, as the log says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Delivered {
        /// Seconds from the tap to its delivery, when both times are known.
        delay_s: Option<i64>,
    },
    Retry {
        attempt: u32,
        retry_in: Duration,
        error: String,
    },
    /// EGYM's answer could not be read; tried again later.
    Unreadable {
        attempt: u32,
        retry_in: Duration,
        error: String,
    },
    Paused {
        status: u16,
        error_code: String,
        error: String,
    },
    UnknownTag {
        retry_in: Duration,
        renderings: String,
    },
    UnknownTagGivenUp {
        renderings: String,
    },
    Rejected {
        error: String,
    },
    AdmissionRefused {
        refusal: Refusal,
    },
}

/// The outcome of one delivery attempt of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: i64,
    pub reader: String,
    pub tag: String,
    pub kind: Kind,
    pub report: Report,
    /// Whether the log says it: a refused key is said at most every few minutes.
    pub said: bool,
}

impl Delivery {
    pub fn emit(self, to: &Listeners) {
        if self.said {
            self.log(to);
        }
        let event_id = self.event_id;
        let (counted, happening) = match &self.report {
            Report::Delivered { .. } => (
                DeliveryOutcome::Delivered,
                Some(Happening::Delivered { event_id }),
            ),
            Report::Retry { .. } => (
                DeliveryOutcome::Retry,
                Some(Happening::Failing { event_id }),
            ),
            Report::Unreadable { .. } => (
                DeliveryOutcome::Unreadable,
                Some(Happening::Failing { event_id }),
            ),
            Report::Paused { .. } => (
                DeliveryOutcome::Paused,
                Some(Happening::Failing { event_id }),
            ),
            Report::UnknownTag { .. } => (
                DeliveryOutcome::UnknownTag,
                Some(Happening::Unknown { event_id }),
            ),
            Report::UnknownTagGivenUp { .. } => (
                DeliveryOutcome::Rejected,
                Some(Happening::Unknown { event_id }),
            ),
            Report::Rejected { .. } => (DeliveryOutcome::Rejected, None),
            Report::AdmissionRefused { refusal } => {
                to.metrics.admission_refused(refusal.counted_as());
                (
                    DeliveryOutcome::AdmissionRefused,
                    Some(Happening::Refused {
                        event_id,
                        tag: self.tag.clone(),
                        refusal: *refusal,
                    }),
                )
            }
        };
        to.metrics.delivery(counted);
        if let Some(happening) = happening {
            to.observer.happened(happening);
        }
        to.observer.changed();
        to.heard(Event::Delivery(self));
    }

    fn log(&self, to: &Listeners) {
        let tag = to.tag(&self.tag);
        let kind = self.kind.as_str();
        let reader = &self.reader;
        let id = self.event_id;
        match &self.report {
            Report::Delivered { delay_s } => info!(
                event = "delivered",
                outcome = "delivered",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                delay_s,
                "delivered"
            ),
            Report::Retry {
                attempt,
                retry_in,
                error,
            } => warn!(
                event = "delivery_failed",
                outcome = "retry",
                event_id = id,
                tag = %tag,
                kind = %kind,
                attempt,
                retry_in_s = %format_args!("{:.1}", retry_in.as_secs_f64()),
                error = %error,
                "delivery failed, will retry"
            ),
            Report::Unreadable {
                attempt,
                retry_in,
                error,
            } => warn!(
                event = "answer_unreadable",
                outcome = "unreadable",
                event_id = id,
                tag = %tag,
                kind = %kind,
                attempt,
                retry_in_s = %format_args!("{:.1}", retry_in.as_secs_f64()),
                error = %error,
                "EGYM's answer cannot be read; the event is tried again later"
            ),
            Report::Paused {
                status,
                error_code,
                error,
            } => error!(
                event = "delivery_paused",
                outcome = "paused",
                status,
                error_code = %error_code,
                error = %error,
                "delivery paused: EGYM refused the API key. Nothing is dropped; taps are still \
                 recorded. Check the key (egym.api-key-file) and its permissions; delivery \
                 resumes by itself once EGYM accepts it"
            ),
            // The renderings are the card's whole id: the staff page and `status` show them;
            // the log only for a setup session.
            Report::UnknownTag {
                retry_in,
                renderings,
            } if to.full_tags => warn!(
                event = "unknown_tag",
                outcome = "unknown_tag",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                retry_in_s = retry_in.as_secs(),
                renderings = %renderings,
                "unknown tag: EGYM has no member with this rfid. Compare these renderings of \
                 the card with the one enrolled in EGYM; the reader's id-format, id-bytes or \
                 byte-order may need changing"
            ),
            Report::UnknownTag { retry_in, .. } => warn!(
                event = "unknown_tag",
                outcome = "unknown_tag",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                retry_in_s = retry_in.as_secs(),
                "unknown tag: EGYM has no member with this rfid. Compare the card's renderings \
                 (on the staff page and in `gym-checkin status`) with the one enrolled in EGYM; \
                 the reader's id-format, id-bytes or byte-order may need changing"
            ),
            Report::UnknownTagGivenUp { renderings } if to.full_tags => warn!(
                event = "rejected",
                outcome = "rejected",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                renderings = %renderings,
                "rejected: EGYM still knows no member with this tag after \
                 unknown-tag-retry-window"
            ),
            Report::UnknownTagGivenUp { .. } => warn!(
                event = "rejected",
                outcome = "rejected",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                "rejected: EGYM still knows no member with this tag after \
                 unknown-tag-retry-window"
            ),
            Report::AdmissionRefused { refusal } => warn!(
                event = "admission_refused",
                outcome = "admission_refused",
                event_id = id,
                reader = %reader,
                tag = %tag,
                reason = refusal.error_code(),
                "Wellpass admission refused: {}. The member may not enter; no check-in is sent",
                refusal.says()
            ),
            Report::Rejected { error } => warn!(
                event = "rejected",
                outcome = "rejected",
                event_id = id,
                reader = %reader,
                tag = %tag,
                kind = %kind,
                error = %error,
                "rejected by EGYM; the event will not be sent again"
            ),
        }
    }
}

/// A Wellpass check-in's admission, made (or skipped) before its check-in is posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionMade {
    pub event_id: i64,
    pub reader: String,
    pub tag: String,
    pub admission: Admission,
    /// EGYM's `firstAdmission`, when it admitted the member.
    pub first_admission: Option<bool>,
    /// Why EGYM refused, when it refused a member who had come in already.
    pub refusal: Option<Refusal>,
}

impl AdmissionMade {
    pub fn emit(self, to: &Listeners) {
        let (id, reader, tag) = (self.event_id, &self.reader, to.tag(&self.tag));
        match (self.admission, self.refusal) {
            (Admission::Skipped, _) => warn!(
                event = "admission_skipped",
                outcome = "admission_skipped",
                event_id = id,
                reader = %reader,
                tag = %tag,
                "Wellpass admission skipped: the tap is older than admission-window \
                 (late = \"skip\"); the check-in is sent without one. Record this visit in the \
                 Wellpass partner portal"
            ),
            (Admission::RefusedLate, Some(refusal)) => {
                to.metrics.admission_refused(refusal.counted_as());
                warn!(
                    event = "admission_refused_late",
                    outcome = "admission_refused_late",
                    event_id = id,
                    reader = %reader,
                    tag = %tag,
                    reason = refusal.error_code(),
                    "Wellpass admission refused after the member came in: {}. The check-in is \
                     still sent; the gym is not paid for this visit",
                    refusal.says()
                );
            }
            (admission, _) => {
                to.observer.happened(Happening::Admitted {
                    event_id: id,
                    first_visit: self.first_admission == Some(true),
                });
                info!(
                    event = "admitted",
                    outcome = "admitted",
                    event_id = id,
                    reader = %reader,
                    tag = %tag,
                    first_admission = self.first_admission,
                    late = admission == Admission::AdmittedLate,
                    "Wellpass member admitted{}",
                    if self.first_admission.is_none() {
                        " (EGYM's answer could not be read; it admitted the member all the same, \
                         and is not asked again)"
                    } else {
                        ""
                    }
                );
            }
        }
        to.observer.changed();
        to.heard(Event::AdmissionMade(self));
    }
}

/// A lookup gave the member's first name: the member screen greets them, and the staff page
/// says who is in. The name is never logged nor written down; the screen keeps it in memory
/// only (see `screen::names`).
#[derive(Clone, PartialEq, Eq)]
pub struct NameKnown {
    pub event_id: i64,
    pub tag: String,
    pub kind: Kind,
    pub first_name: String,
}

impl fmt::Debug for NameKnown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameKnown")
            .field("event_id", &self.event_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl NameKnown {
    pub fn emit(self, to: &Listeners) {
        to.observer.happened(Happening::Named {
            event_id: self.event_id,
            tag: self.tag.clone(),
            kind: self.kind,
            first_name: self.first_name.clone(),
        });
        to.heard(Event::NameKnown(self));
    }
}

/// EGYM answers again after requests failed for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgymRecovered {
    pub failing_for: Duration,
}

impl EgymRecovered {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "egym_recovered",
            failing_for_s = self.failing_for.as_secs(),
            "EGYM is accepting requests again"
        );
        to.observer.changed();
        to.heard(Event::EgymRecovered(self));
    }
}

/// EGYM accepts the API key again: delivery, paused, goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryResumed;

impl DeliveryResumed {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "delivery_resumed",
            "delivery resumed: the API key is accepted"
        );
        to.observer.changed();
        to.heard(Event::DeliveryResumed(self));
    }
}

/// What a prune round deleted because it was kept longer than its retention.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Delivered events past `keep-delivered`.
    pub delivered: u64,
    /// Rejected events past `keep-rejected`.
    pub rejected: u64,
    /// Events of cards EGYM never knew, past `keep-unknown`.
    pub unknown: u64,
    /// Cached lookups older than `account-cache-ttl`.
    pub accounts: u64,
    /// Visit state of members outside since longer than `keep-closed`.
    pub visits: u64,
    /// Whether the write-ahead log was emptied at once (else once no reader holds it).
    pub log_emptied: bool,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.delivered + self.rejected + self.unknown + self.accounts + self.visits
    }

    pub fn emit(self, to: &Listeners) {
        info!(
            event = "pruned",
            delivered = self.delivered,
            rejected = self.rejected,
            unknown = self.unknown,
            accounts = self.accounts,
            visits = self.visits,
            log_emptied = self.log_emptied,
            "pruned what was kept longer than its retention"
        );
        to.observer.changed();
        to.heard(Event::Pruned(self));
    }
}

/// Everything the box held about a card or member, erased on request (`gym-checkin forget`).
/// The log says how much, never whose.
#[derive(Clone, PartialEq, Eq)]
pub struct Erased {
    pub erased: Holdings,
    /// Who asked, when known (the control socket's peer, or the user running `forget`).
    pub by_uid: Option<u32>,
}

impl fmt::Debug for Erased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Erased")
            .field("cards", &self.erased.cards.len())
            .field("events", &self.erased.events)
            .field("open", &self.erased.open)
            .field("visits", &self.erased.visits)
            .field("accounts", &self.erased.accounts)
            .field("by_uid", &self.by_uid)
            .finish()
    }
}

impl Erased {
    pub fn emit(self, to: &Listeners) {
        let e = &self.erased;
        // Taps erased before they reached EGYM are visits EGYM never hears of: said louder.
        if e.open > 0 {
            warn!(
                event = "erased",
                cards = e.cards.len(),
                events = e.events,
                not_delivered = e.open,
                visits = e.visits,
                accounts = e.accounts,
                by_uid = self.by_uid,
                "erased on request: everything the box held about a card or member, taps not yet delivered to EGYM included"
            );
        } else {
            info!(
                event = "erased",
                cards = e.cards.len(),
                events = e.events,
                not_delivered = e.open,
                visits = e.visits,
                accounts = e.accounts,
                by_uid = self.by_uid,
                "erased on request: everything the box held about a card or member"
            );
        }
        to.observer.forget(&e.cards);
        to.observer.changed();
        to.heard(Event::Erased(self));
    }
}

/// Staff enrolled a card at EGYM for a member (or found it was theirs already): the taps
/// waiting on it are looked up again at once. Logged with who asked, the account id and the
/// tag, shortened; the member's name is for the screen alone.
#[derive(Clone, PartialEq, Eq)]
pub struct CardEnrolled {
    /// Who asked: the staff page's client address, or the command's user.
    pub by: String,
    pub reader: String,
    pub tag: String,
    pub tag_format: Option<tag::TagFormat>,
    pub account_id: String,
    /// The card was the member's already: nothing was written to EGYM.
    pub already: bool,
    /// Taps that waited on the card.
    pub waiting: usize,
    /// The oldest of them.
    pub head: Option<crate::store::OpenEvent>,
    pub first_name: Option<String>,
}

impl fmt::Debug for CardEnrolled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardEnrolled")
            .field("by", &self.by)
            .field("reader", &self.reader)
            .field("tag", &tag::short(&self.tag))
            .field("account_id", &self.account_id)
            .field("already", &self.already)
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

impl CardEnrolled {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "card_enrolled",
            outcome = "enrolled",
            client = %self.by,
            reader = %self.reader,
            tag = %tag::short(&self.tag),
            tag_format = self.tag_format.map_or("none", |f| f.as_str()),
            account_id = %self.account_id,
            already_enrolled = self.already,
            waiting_taps = self.waiting,
            "card enrolled at EGYM; the taps waiting on it are looked up again now"
        );
        if let Some(head) = &self.head {
            to.observer.happened(Happening::Enrolled {
                event_id: head.id,
                reader: head.reader.clone(),
                kind: head.kind,
                tapped: head.tapped_steady,
                first_name: self.first_name.clone(),
            });
        }
        to.observer.changed();
        to.heard(Event::CardEnrolled(self));
    }
}

/// An enrolment that was not done, and why (a stable `reason`, and the words staff were given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentRefused {
    pub by: String,
    pub reader: String,
    /// The card number asked for (empty when it was none).
    pub tag: String,
    pub account_id: String,
    pub reason: &'static str,
    pub detail: String,
}

impl EnrolmentRefused {
    pub fn emit(self, to: &Listeners) {
        warn!(
            event = "enrolment_refused",
            outcome = "refused",
            client = %self.by,
            reader = %self.reader,
            tag = %tag::short(&self.tag),
            account_id = %self.account_id,
            reason = self.reason,
            "card not enrolled: {}",
            self.detail
        );
        to.heard(Event::EnrolmentRefused(self));
    }
}

/// A card presented on a reader was taken for an enrolment (`gym-checkin enrol` asked the
/// service for it): it is no tap, and nothing is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentationClaimed {
    pub reader: String,
    pub tag: String,
}

impl PresentationClaimed {
    pub fn emit(self, to: &Listeners) {
        info!(
            event = "presentation_claimed",
            outcome = "claimed",
            reader = %self.reader,
            tag = %tag::short(&self.tag),
            "card presented for an enrolment: handed to it, not recorded as a tap"
        );
        to.heard(Event::PresentationClaimed(self));
    }
}

/// An enrolment (`gym-checkin enrol`) waits for the next card presented on a reader the service
/// reads (`waiting`), or no longer does, no card having come (the time is over, or the command
/// went away): the reader's next card is a tap again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardAwaited {
    pub reader: String,
    pub waiting: bool,
    pub within_s: u64,
}

impl CardAwaited {
    pub fn emit(self, to: &Listeners) {
        if self.waiting {
            info!(
                event = "enrolment_awaits_card",
                reader = %self.reader,
                within_s = self.within_s,
                "waiting for a card on reader {} for an enrolment: the next card presented there \
                 is handed to it, not recorded as a tap",
                self.reader
            );
        } else {
            info!(
                event = "enrolment_stopped_waiting",
                reader = %self.reader,
                "no longer waiting for a card on reader {} for an enrolment: its cards are taps \
                 again",
                self.reader
            );
        }
        to.heard(Event::CardAwaited(self));
    }
}
