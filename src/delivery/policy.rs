//! What an attempt's outcome means (pure; time passed in): the row change, what the worker does
//! next, and what the log says. The worker ([`super::Worker`]) carries it out.
//!
//! Whether to retry is [`crate::egym::classify`]'s business; how long to wait, and what becomes
//! of the row, is decided here, in steady time, so no step of the wall clock moves a schedule.

use std::time::Duration;

use crate::clock::{EARLIEST_PLAUSIBLE, Now, SteadyMs, WallMs};
use crate::egym::{Failure, Refusal};
pub use crate::events::Report;
use crate::store::{Answer, CachedAccount, OpenEvent};
use crate::tag;
use crate::visit::Membership;
use crate::visit::{self, Kind};

/// Posts in flight are limited to what the rate needs if a request takes this long. Every post
/// in flight when the process dies may reach EGYM twice (it has no idempotency key), so no more
/// are sent at once than keeping to the rate requires: at the default 6 per second, one.
const POST_LATENCY_BUDGET: Duration = Duration::from_millis(100);
/// The first retry waits up to this long; each further one up to twice as long as the last.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
pub const RETRY_CAP: Duration = Duration::from_secs(300);
/// An unknown tag is asked about again after this long, then less and less often.
const UNKNOWN_TAG_FIRST_RETRY: Duration = Duration::from_secs(300);
const UNKNOWN_TAG_RETRY_CAP: Duration = Duration::from_secs(3600);
/// How long EGYM's "no member has this tag" is believed without asking again.
const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(600);

/// What an older tap of a Wellpass member gets (`[wellpass] late`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateAdmission {
    /// Admitted when EGYM is reachable again: the visit is logged late (and paid).
    Admit,
    /// Posted without an admission, counted as skipped for staff to record by hand.
    Skip,
}

/// Settings from `[egym]` and `[wellpass]`, and the greeting the daemon keeps current.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `rate-limit-per-second`: sets how many posts may be in flight at once.
    pub rate_per_second: f64,
    pub account_cache_ttl: Duration,
    pub unknown_tag_retry_window: Duration,
    /// `[wellpass] admission-window`: a check-in this fresh is admitted live.
    pub admission_window: Duration,
    pub late_admission: LateAdmission,
    /// Whether a lookup may skip the account cache to greet a member by name.
    pub greeting: Greeting,
}

/// Whether the member of an event is to be greeted by name: then a lookup is made even when
/// the account is cached, for the first name, which is never written down (the screen keeps it
/// in memory). The daemon sets it from the screen (a member screen shows that tap's answer,
/// without a name yet); without a screen, no name is ever asked for, nor kept.
#[derive(Clone, Default)]
pub struct Greeting(Option<std::sync::Arc<dyn Fn(i64) -> bool + Send + Sync>>);

impl Greeting {
    /// Greets the member of event `id` when `wanted(id)` says so.
    pub fn when(wanted: impl Fn(i64) -> bool + Send + Sync + 'static) -> Greeting {
        Greeting(Some(std::sync::Arc::new(wanted)))
    }

    pub fn wanted(&self, event_id: i64) -> bool {
        self.0.as_ref().is_some_and(|wanted| wanted(event_id))
    }

    /// Whether there is a screen to tell the first names lookups give: without one, a name is
    /// dropped as soon as it is read.
    pub fn keeps_names(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Greeting(by the screen)"
        } else {
            "Greeting(never)"
        })
    }
}

/// How many posts may be in flight at once for a rate: enough to keep up with it if each takes
/// `POST_LATENCY_BUDGET`, and no more.
pub fn posts_in_flight(rate_per_second: f64) -> usize {
    ((rate_per_second * POST_LATENCY_BUDGET.as_secs_f64()).ceil() as usize).clamp(1, 64)
}

/// How long the `attempts`-th retry waits: a random time up to `RETRY_BASE · 2^attempts`,
/// capped at `RETRY_CAP` ("full jitter"). `random` is in `[0, 1)`.
pub fn retry_delay(attempts: u32, random: f64) -> Duration {
    let ceiling = RETRY_BASE
        .saturating_mul(1u32 << attempts.min(20))
        .min(RETRY_CAP);
    ceiling.mul_f64(random.clamp(0.0, 1.0))
}

/// How long an event for an unknown tag waits before its tag is asked about again, after
/// `unknown_answers` such answers before this one.
pub fn unknown_tag_delay(unknown_answers: u32) -> Duration {
    UNKNOWN_TAG_FIRST_RETRY
        .saturating_mul(1u32 << unknown_answers.min(10))
        .min(UNKNOWN_TAG_RETRY_CAP)
}

/// What the tag cache says for an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// Post for this account, of this membership type.
    Account {
        account_id: String,
        membership: Membership,
    },
    /// EGYM said recently that no member has the tag.
    KnownUnknown,
    /// Ask EGYM.
    LookUp,
}

/// Whether a cached answer, given at steady time `resolved`, is still believed at `now`: a
/// member's account for `account_cache_ttl`, "no member" for ten minutes at most.
pub fn use_cache(
    cached: Option<&CachedAccount>,
    now: SteadyMs,
    account_cache_ttl: Duration,
) -> CacheUse {
    let Some(cached) = cached else {
        return CacheUse::LookUp;
    };
    let age = now.since(cached.resolved);
    match &cached.account_id {
        Some(account) if age < account_cache_ttl => CacheUse::Account {
            account_id: account.clone(),
            membership: cached.membership,
        },
        None if age < NEGATIVE_CACHE_TTL.min(account_cache_ttl) => CacheUse::KnownUnknown,
        _ => CacheUse::LookUp,
    }
}

/// The timestamp EGYM is sent for an event stamped `tapped_at`, at steady time
/// `tapped_steady`: never before 2020, and never after the present when the present is known.
/// A stamp later than the present (the clock was stepped back since the tap, and is trusted
/// now) is counted back from the present by the steady time since the tap.
pub fn egym_timestamp(tapped_at: WallMs, tapped_steady: SteadyMs, now: &Now) -> WallMs {
    let stamped = tapped_at.max(EARLIEST_PLAUSIBLE);
    if now.wall_known() && stamped > now.wall {
        let ago = now.steady.since(tapped_steady);
        (now.wall - ago).max(EARLIEST_PLAUSIBLE)
    } else {
        stamped
    }
}

/// Whether a check-in needs a Wellpass admission first, and of which kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionPlan {
    /// Not a Wellpass member's check-in, or admitted (or skipped) already.
    NotNeeded,
    /// Ask EGYM; `late` when the tap is older than `admission-window`.
    Admit { late: bool },
    /// Too old, and `late = "skip"`: post without an admission.
    Skip,
}

/// Whether `event`, a tap of a member with `membership`, is admitted before its check-in.
/// The admission is live: EGYM logs it when it arrives, so a tap is fresh only within
/// `admission-window` of steady time since it was made.
pub fn admission_plan(
    event: &OpenEvent,
    membership: Membership,
    now: SteadyMs,
    settings: &Settings,
) -> AdmissionPlan {
    if event.kind != Kind::CheckIn
        || membership != Membership::Wellpass
        || event.admission.is_some()
    {
        return AdmissionPlan::NotNeeded;
    }
    if now.since(event.tapped_steady) <= settings.admission_window {
        return AdmissionPlan::Admit { late: false };
    }
    match settings.late_admission {
        LateAdmission::Admit => AdmissionPlan::Admit { late: true },
        LateAdmission::Skip => AdmissionPlan::Skip,
    }
}

/// Whether a Wellpass refusal answered at `now` still finds the member at the door, to be
/// turned away: only on the event's first attempt, within [`visit::AT_THE_DOOR`] of the tap.
/// Later, the member screen has said "Checked in, will sync" (or nothing), and the member is in.
pub fn member_at_the_door(event: &OpenEvent, now: SteadyMs) -> bool {
    event.attempts == 0 && now.since(event.tapped_steady) <= visit::AT_THE_DOOR
}

/// What became of one delivery attempt.
#[derive(Debug)]
pub enum Outcome {
    Delivered {
        account_id: String,
        status: u16,
    },
    /// EGYM refused a fresh tap's admission: the member is turned away, no check-in is posted.
    AdmissionRefused {
        refusal: Refusal,
        failure: Failure,
    },
    Retry {
        failure: Failure,
    },
    /// EGYM answered, but what it said cannot be read.
    Unreadable {
        failure: Failure,
    },
    Paused {
        failure: Failure,
    },
    /// No member has the tag; `None` when the cache said so.
    UnknownTag {
        failure: Option<Failure>,
    },
    Rejected {
        failure: Failure,
    },
}

/// Why the worker holds back all claims for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldCause {
    /// No answer (connection refused, DNS, timeout): a new tap may probe sooner.
    Unreachable,
    /// EGYM answered 408 or 5xx: it is left alone for the whole delay.
    Overloaded,
    /// EGYM answered 429: no outage, and no delay of its own: the emptied token bucket paces
    /// the next requests. The taps waiting meanwhile are not a backlog, and a member's new tap
    /// still goes ahead of retries.
    RateLimited,
    Database,
}

/// The change to the event's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    Delivered {
        account_id: String,
        status: u16,
    },
    Retry {
        next_attempt: SteadyMs,
        answer: Answer,
    },
    UnknownTag {
        next_attempt: SteadyMs,
        since: SteadyMs,
        answer: Answer,
    },
    Rejected {
        answer: Answer,
    },
    /// A refused admission: finished with EGYM's answer and reason (its `errorCode`).
    Refused {
        answer: Answer,
        reason: String,
    },
    /// A refused key changes no row.
    Unchanged,
}

/// What the worker does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerChange {
    /// EGYM accepted a request: it is reachable and the key is good.
    Recovered,
    /// Every claim waits this long: when EGYM is down or overloaded, one event probes, the rest
    /// wait.
    Hold {
        delay: Duration,
        cause: HoldCause,
    },
    /// The key is refused: delivery pauses, with this reason for `status`.
    Pause {
        reason: String,
    },
    Nothing,
}

/// Everything one outcome decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub row: RowChange,
    pub worker: WorkerChange,
    /// The failure to keep as delivery's last error, for `status`.
    pub last_error: Option<String>,
    pub report: Report,
}

/// The row's record of a failure.
pub fn answer_of(failure: &Failure) -> Answer {
    Answer {
        status: failure.status(),
        error_code: failure.error_code().map(str::to_string),
        message: failure.to_string(),
    }
}

/// Decides what `outcome` means for `event`, at `now`. `random` in `[0, 1)` draws the retry's
/// jitter.
pub fn decide(
    event: &OpenEvent,
    outcome: Outcome,
    now: &Now,
    settings: &Settings,
    random: f64,
) -> Decision {
    let renderings = || {
        tag::RawId::from_hex(&event.raw_id)
            .map(|raw| tag::renderings_line(&raw))
            .unwrap_or_default()
    };
    match outcome {
        Outcome::Delivered { account_id, status } => Decision {
            row: RowChange::Delivered { account_id, status },
            worker: WorkerChange::Recovered,
            last_error: None,
            report: Report::Delivered {
                delay_s: now
                    .wall_known()
                    .then(|| now.wall.millis_since(event.tapped_at) / 1000),
            },
        },
        Outcome::Retry { failure } => {
            let cause = match failure {
                Failure::Transport { .. } => HoldCause::Unreachable,
                Failure::Status { status: 429, .. } => HoldCause::RateLimited,
                // (An unreadable answer is an `Outcome::Unreadable`, never a retry of this kind.)
                Failure::Status { .. } | Failure::Malformed { .. } => HoldCause::Overloaded,
            };
            // A 429 has emptied the client's token bucket and halved its rate: the bucket is
            // the backoff, and the event goes again as soon as it gives a token.
            let delay = match cause {
                HoldCause::RateLimited => Duration::ZERO,
                _ => retry_delay(event.attempts, random),
            };
            Decision {
                row: RowChange::Retry {
                    next_attempt: now.steady + delay,
                    answer: answer_of(&failure),
                },
                worker: WorkerChange::Hold { delay, cause },
                last_error: Some(failure.to_string()),
                report: Report::Retry {
                    attempt: event.attempts + 1,
                    retry_in: delay,
                    error: failure.to_string(),
                },
            }
        }
        // EGYM is reachable and answered: only this event waits, on its own backoff, and the
        // answer is said for what it is, not as EGYM out of reach.
        Outcome::Unreadable { failure } => {
            let delay = retry_delay(event.attempts, random);
            Decision {
                row: RowChange::Retry {
                    next_attempt: now.steady + delay,
                    answer: answer_of(&failure),
                },
                worker: WorkerChange::Nothing,
                last_error: Some(failure.to_string()),
                report: Report::Unreadable {
                    attempt: event.attempts + 1,
                    retry_in: delay,
                    error: failure.to_string(),
                },
            }
        }
        Outcome::Paused { failure } => {
            let status = failure.status().unwrap_or_default();
            let error_code = failure.error_code().unwrap_or("none").to_string();
            Decision {
                row: RowChange::Unchanged,
                worker: WorkerChange::Pause {
                    reason: format!("HTTP {status} {error_code}"),
                },
                last_error: Some(failure.to_string()),
                report: Report::Paused {
                    status,
                    error_code,
                    error: failure.to_string(),
                },
            }
        }
        Outcome::UnknownTag { failure } => {
            let answer = failure.as_ref().map(answer_of).unwrap_or_else(|| Answer {
                status: Some(404),
                error_code: None,
                message: "no member has this tag (cached answer)".into(),
            });
            let last_error = Some(format!(
                "unknown tag {}: {}",
                tag::short(&event.tag),
                answer.message
            ));
            let since = event.unknown_since.unwrap_or(now.steady);
            if now.steady.since(since) >= settings.unknown_tag_retry_window {
                return Decision {
                    row: RowChange::Rejected {
                        answer: Answer {
                            message: format!(
                                "unknown tag for the whole unknown-tag-retry-window: {}",
                                answer.message
                            ),
                            ..answer
                        },
                    },
                    worker: WorkerChange::Nothing,
                    last_error,
                    report: Report::UnknownTagGivenUp {
                        renderings: renderings(),
                    },
                };
            }
            // Attempts before the first "unknown" were other failures; after it, every attempt
            // was an unknown answer.
            let unknown_answers = if event.unknown_since.is_some() {
                event.attempts
            } else {
                0
            };
            let delay = unknown_tag_delay(unknown_answers);
            Decision {
                row: RowChange::UnknownTag {
                    next_attempt: now.steady + delay,
                    since,
                    answer,
                },
                worker: WorkerChange::Nothing,
                last_error,
                report: Report::UnknownTag {
                    retry_in: delay,
                    renderings: renderings(),
                },
            }
        }
        Outcome::AdmissionRefused { refusal, failure } => Decision {
            row: RowChange::Refused {
                answer: answer_of(&failure),
                reason: refusal.error_code().to_string(),
            },
            worker: WorkerChange::Nothing,
            last_error: Some(format!(
                "admission refused for {}: {}",
                tag::short(&event.tag),
                refusal.says()
            )),
            report: Report::AdmissionRefused { refusal },
        },
        Outcome::Rejected { failure } => Decision {
            row: RowChange::Rejected {
                answer: answer_of(&failure),
            },
            worker: WorkerChange::Nothing,
            last_error: Some(failure.to_string()),
            report: Report::Rejected {
                error: failure.to_string(),
            },
        },
    }
}

#[cfg(test)]
mod tests;
