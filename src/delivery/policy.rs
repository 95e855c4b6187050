//! What an attempt's outcome means (pure; time passed in): the row change, what the worker does
//! next, and what the log says. The worker ([`super::Worker`]) carries it out.
//!
//! Whether to retry is [`crate::egym::classify`]'s business; how long to wait, and what becomes
//! of the row, is decided here, in steady time, so no step of the wall clock moves a schedule.

use std::time::Duration;

use crate::clock::{EARLIEST_PLAUSIBLE_MS, Now};
use crate::egym::{CORPORATE_FITNESS, Failure, Refusal};
use crate::store::{Answer, CachedAccount, OpenEvent};
use crate::tag;
use crate::visit::Kind;

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

/// Settings from `[egym]` and `[wellpass]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `rate-limit-per-second`: sets how many posts may be in flight at once.
    pub rate_per_second: f64,
    pub account_cache_ttl: Duration,
    pub unknown_tag_retry_window: Duration,
    /// `[wellpass] admission-window`: a check-in this fresh is admitted live.
    pub admission_window: Duration,
    pub late_admission: LateAdmission,
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
        membership_type: Option<String>,
    },
    /// EGYM said recently that no member has the tag.
    KnownUnknown,
    /// Ask EGYM.
    LookUp,
}

/// Whether a cached answer, given at steady time `resolved_steady_ms`, is still believed at
/// `now_steady_ms`: a member's account for `account_cache_ttl`, "no member" for ten minutes at
/// most.
pub fn use_cache(
    cached: Option<&CachedAccount>,
    now_steady_ms: i64,
    account_cache_ttl: Duration,
) -> CacheUse {
    let Some(cached) = cached else {
        return CacheUse::LookUp;
    };
    let age = Duration::from_millis((now_steady_ms - cached.resolved_steady_ms).max(0) as u64);
    match &cached.account_id {
        Some(account) if age < account_cache_ttl => CacheUse::Account {
            account_id: account.clone(),
            membership_type: cached.membership_type.clone(),
        },
        None if age < NEGATIVE_CACHE_TTL.min(account_cache_ttl) => CacheUse::KnownUnknown,
        _ => CacheUse::LookUp,
    }
}

/// The timestamp EGYM is sent for an event stamped `tapped_at_ms`, at steady time
/// `tapped_steady_ms`: never before 2020, and never after the present when the present is known.
/// A stamp later than the present (the clock was stepped back since the tap, and is trusted
/// now) is counted back from the present by the steady time since the tap.
pub fn egym_timestamp(tapped_at_ms: i64, tapped_steady_ms: i64, now: &Now) -> i64 {
    let stamped = tapped_at_ms.max(EARLIEST_PLAUSIBLE_MS);
    if now.wall_known() && stamped > now.wall_ms {
        let ago = (now.steady_ms - tapped_steady_ms).max(0);
        (now.wall_ms - ago).max(EARLIEST_PLAUSIBLE_MS)
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

/// Whether `event`, a tap of a member of `membership_type`, is admitted before its check-in.
/// The admission is live: EGYM logs it when it arrives, so a tap is fresh only within
/// `admission-window` of steady time since it was made.
pub fn admission_plan(
    event: &OpenEvent,
    membership_type: Option<&str>,
    now_steady_ms: i64,
    settings: &Settings,
) -> AdmissionPlan {
    if event.kind != Kind::CheckIn
        || membership_type != Some(CORPORATE_FITNESS)
        || event.admission.is_some()
    {
        return AdmissionPlan::NotNeeded;
    }
    let age_ms = now_steady_ms - event.tapped_steady_ms;
    if age_ms <= settings.admission_window.as_millis() as i64 {
        return AdmissionPlan::Admit { late: false };
    }
    match settings.late_admission {
        LateAdmission::Admit => AdmissionPlan::Admit { late: true },
        LateAdmission::Skip => AdmissionPlan::Skip,
    }
}

/// Whether a Wellpass refusal answered at `now_steady_ms` still finds the member at the door,
/// to be turned away: only on the event's first attempt, within `ANSWER_WITHIN_MS` of the tap.
/// Later, the member screen has said "Checked in, will sync" (or nothing), and the member is in.
pub fn member_at_the_door(event: &OpenEvent, now_steady_ms: i64) -> bool {
    event.attempts == 0 && now_steady_ms - event.tapped_steady_ms <= crate::screen::ANSWER_WITHIN_MS
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
        next_attempt_steady_ms: i64,
        answer: Answer,
    },
    UnknownTag {
        next_attempt_steady_ms: i64,
        since_steady_ms: i64,
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

/// What the log says, beside the event's reader, tag and kind.
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
pub fn answer(failure: &Failure) -> Answer {
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
                    .then(|| (now.wall_ms - event.tapped_at_ms) / 1000),
            },
        },
        Outcome::Retry { failure } => {
            let cause = match failure {
                Failure::Transport { .. } => HoldCause::Unreachable,
                Failure::Status { status: 429, .. } => HoldCause::RateLimited,
                Failure::Status { .. } => HoldCause::Overloaded,
            };
            // A 429 has emptied the client's token bucket and halved its rate: the bucket is
            // the backoff, and the event goes again as soon as it gives a token.
            let delay = match cause {
                HoldCause::RateLimited => Duration::ZERO,
                _ => retry_delay(event.attempts, random),
            };
            Decision {
                row: RowChange::Retry {
                    next_attempt_steady_ms: now.steady_ms + delay.as_millis() as i64,
                    answer: answer(&failure),
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
            let answer = failure.as_ref().map(answer).unwrap_or_else(|| Answer {
                status: Some(404),
                error_code: None,
                message: "no member has this tag (cached answer)".into(),
            });
            let last_error = Some(format!(
                "unknown tag {}: {}",
                tag::short(&event.tag),
                answer.message
            ));
            let since_steady_ms = event.unknown_since_steady_ms.unwrap_or(now.steady_ms);
            let window_ms = settings.unknown_tag_retry_window.as_millis() as i64;
            if now.steady_ms - since_steady_ms >= window_ms {
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
            let unknown_answers = if event.unknown_since_steady_ms.is_some() {
                event.attempts
            } else {
                0
            };
            let delay = unknown_tag_delay(unknown_answers);
            Decision {
                row: RowChange::UnknownTag {
                    next_attempt_steady_ms: now.steady_ms + delay.as_millis() as i64,
                    since_steady_ms,
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
                answer: answer(&failure),
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
                answer: answer(&failure),
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
mod tests {
    use super::*;
    use crate::clock::WallTime;
    use crate::egym::ErrorBody;
    use crate::visit::Kind;

    const T: i64 = 1_796_083_200_000;
    const MIN: i64 = 60_000;

    #[test]
    fn retry_delays_grow_exponentially_with_full_jitter_and_a_cap() {
        assert_eq!(retry_delay(0, 0.0), Duration::ZERO);
        assert_eq!(retry_delay(0, 0.5), Duration::from_millis(500));
        assert_eq!(retry_delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(retry_delay(8, 1.0), Duration::from_secs(256));
        assert_eq!(retry_delay(9, 1.0), RETRY_CAP);
        assert_eq!(retry_delay(u32::MAX, 0.999), RETRY_CAP.mul_f64(0.999));
    }

    #[test]
    fn unknown_tags_are_retried_slowly() {
        assert_eq!(unknown_tag_delay(0), Duration::from_secs(300));
        assert_eq!(unknown_tag_delay(1), Duration::from_secs(600));
        assert_eq!(unknown_tag_delay(5), UNKNOWN_TAG_RETRY_CAP);
    }

    fn event(attempts: u32, unknown_since_steady_ms: Option<i64>) -> OpenEvent {
        OpenEvent {
            id: 7,
            reader: "entrance".into(),
            raw_id: "0C000621A5".into(),
            tag: "0x0C000621A5".into(),
            tag_format: None,
            kind: Kind::CheckIn,
            tapped_at_ms: T - 90_000,
            tapped_steady_ms: 0,
            attempts,
            unknown_since_steady_ms,
            admission: None,
        }
    }

    fn now(steady_ms: i64, wall: WallTime) -> Now {
        Now {
            wall_ms: T,
            wall,
            steady_ms,
        }
    }

    fn settings() -> Settings {
        Settings {
            rate_per_second: 6.0,
            account_cache_ttl: Duration::from_secs(12 * 3600),
            unknown_tag_retry_window: Duration::from_secs(24 * 3600),
            admission_window: Duration::from_secs(15 * 60),
            late_admission: LateAdmission::Admit,
        }
    }

    fn status(status: u16, code: &str) -> Failure {
        Failure::Status {
            status,
            body: ErrorBody {
                error_code: Some(code.into()),
                message: Some("m".into()),
                entity: None,
            },
        }
    }

    fn unreachable() -> Failure {
        Failure::Transport {
            timeout: false,
            detail: "connection refused".into(),
        }
    }

    /// One row of the outcome table: the event, the outcome, the steady time now; the row
    /// change and the worker's change expected, and the report's kind.
    fn check(
        event: OpenEvent,
        outcome: Outcome,
        steady_ms: i64,
        row: RowChange,
        worker: WorkerChange,
        report: fn(&Report) -> bool,
    ) {
        let text = format!("{event:?} {outcome:?} at {steady_ms}");
        let decision = decide(
            &event,
            outcome,
            &now(steady_ms, WallTime::Trusted),
            &settings(),
            0.5,
        );
        assert_eq!(decision.row, row, "{text}");
        assert_eq!(decision.worker, worker, "{text}");
        assert!(report(&decision.report), "{text}: {:?}", decision.report);
    }

    #[test]
    fn each_outcome_changes_the_row_the_worker_and_the_log_as_the_outcome_table_says() {
        let s = 1_000 * MIN;
        check(
            event(0, None),
            Outcome::Delivered {
                account_id: "acc".into(),
                status: 204,
            },
            s,
            RowChange::Delivered {
                account_id: "acc".into(),
                status: 204,
            },
            WorkerChange::Recovered,
            |r| *r == Report::Delivered { delay_s: Some(90) },
        );
        // The third try after two failures waits up to 4 s: at 0.5, 2 s, counted in steady time.
        check(
            event(2, None),
            Outcome::Retry {
                failure: unreachable(),
            },
            s,
            RowChange::Retry {
                next_attempt_steady_ms: s + 2_000,
                answer: answer(&unreachable()),
            },
            WorkerChange::Hold {
                delay: Duration::from_secs(2),
                cause: HoldCause::Unreachable,
            },
            |r| matches!(r, Report::Retry { attempt: 3, .. }),
        );
        check(
            event(0, None),
            Outcome::Retry {
                failure: status(503, "unavailable"),
            },
            s,
            RowChange::Retry {
                next_attempt_steady_ms: s + 500,
                answer: answer(&status(503, "unavailable")),
            },
            WorkerChange::Hold {
                delay: Duration::from_millis(500),
                cause: HoldCause::Overloaded,
            },
            |r| matches!(r, Report::Retry { attempt: 1, .. }),
        );
        // A 429 is no outage, and the event goes again when the rate limiter allows, even
        // after many attempts.
        check(
            event(7, None),
            Outcome::Retry {
                failure: status(429, "tooManyRequests"),
            },
            s,
            RowChange::Retry {
                next_attempt_steady_ms: s,
                answer: answer(&status(429, "tooManyRequests")),
            },
            WorkerChange::Hold {
                delay: Duration::ZERO,
                cause: HoldCause::RateLimited,
            },
            |r| matches!(r, Report::Retry { retry_in, .. } if retry_in.is_zero()),
        );
        check(
            event(0, None),
            Outcome::Paused {
                failure: status(403, "missingPermission"),
            },
            s,
            RowChange::Unchanged,
            WorkerChange::Pause {
                reason: "HTTP 403 missingPermission".into(),
            },
            |r| matches!(r, Report::Paused { status: 403, .. }),
        );
        check(
            event(0, None),
            Outcome::Rejected {
                failure: status(422, "invalid"),
            },
            s,
            RowChange::Rejected {
                answer: answer(&status(422, "invalid")),
            },
            WorkerChange::Nothing,
            |r| matches!(r, Report::Rejected { .. }),
        );
    }

    #[test]
    fn an_unknown_tag_is_asked_about_slowly_for_its_window_counted_in_steady_time() {
        let s = 1_000 * MIN;
        let unknown = || Outcome::UnknownTag { failure: None };
        let cached_answer = || Answer {
            status: Some(404),
            error_code: None,
            message: "no member has this tag (cached answer)".into(),
        };
        // The first "unknown": the window starts now; asked again in 5 minutes.
        check(
            event(1, None),
            unknown(),
            s,
            RowChange::UnknownTag {
                next_attempt_steady_ms: s + 5 * MIN,
                since_steady_ms: s,
                answer: cached_answer(),
            },
            WorkerChange::Nothing,
            |r| matches!(r, Report::UnknownTag { renderings, .. } if renderings.contains("0C000621A5")),
        );
        // Two answers on: 20 minutes.
        check(
            event(2, Some(s - 15 * MIN)),
            unknown(),
            s,
            RowChange::UnknownTag {
                next_attempt_steady_ms: s + 20 * MIN,
                since_steady_ms: s - 15 * MIN,
                answer: cached_answer(),
            },
            WorkerChange::Nothing,
            |r| matches!(r, Report::UnknownTag { .. }),
        );
        // The window is over: rejected. Only steady time counts, so a wall clock stepped days
        // forward (the `now` here reads T whatever happens) ends no window early.
        let day = 24 * 60 * MIN;
        let decision = decide(
            &event(9, Some(s - day + 1)),
            unknown(),
            &now(s, WallTime::Trusted),
            &settings(),
            0.5,
        );
        assert!(
            matches!(decision.row, RowChange::UnknownTag { .. }),
            "{decision:?}"
        );
        let decision = decide(
            &event(9, Some(s - day)),
            unknown(),
            &now(s, WallTime::Trusted),
            &settings(),
            0.5,
        );
        assert!(
            matches!(&decision.row, RowChange::Rejected { answer } if answer.message.contains("unknown-tag-retry-window")),
            "{decision:?}"
        );
        assert!(matches!(decision.report, Report::UnknownTagGivenUp { .. }));
    }

    #[test]
    fn a_wellpass_check_in_is_admitted_live_within_the_window_and_late_as_configured() {
        let wellpass = Some(CORPORATE_FITNESS);
        let fresh = 15 * MIN;
        let check_in = event(0, None);
        let plan = |event: &OpenEvent, membership, now, late| {
            let settings = Settings {
                late_admission: late,
                ..settings()
            };
            admission_plan(event, membership, now, &settings)
        };
        use AdmissionPlan::NotNeeded;
        let admit = LateAdmission::Admit;
        assert_eq!(
            plan(&check_in, wellpass, fresh, admit),
            AdmissionPlan::Admit { late: false }
        );
        assert_eq!(
            plan(&check_in, wellpass, fresh + 1, admit),
            AdmissionPlan::Admit { late: true }
        );
        assert_eq!(
            plan(&check_in, wellpass, fresh + 1, LateAdmission::Skip),
            AdmissionPlan::Skip
        );
        // Other members, check-outs, and a check-in admitted already need none.
        assert_eq!(plan(&check_in, Some("PREMIUM"), 0, admit), NotNeeded);
        assert_eq!(plan(&check_in, None, 0, admit), NotNeeded);
        let check_out = OpenEvent {
            kind: Kind::CheckOut,
            ..event(0, None)
        };
        assert_eq!(plan(&check_out, wellpass, 0, admit), NotNeeded);
        let admitted = OpenEvent {
            admission: Some(crate::store::Admission::Admitted),
            ..event(0, None)
        };
        assert_eq!(plan(&admitted, wellpass, 0, admit), NotNeeded);
    }

    #[test]
    fn a_refusal_turns_away_only_a_member_still_waiting_at_the_door() {
        let tapped = event(0, None);
        let at = tapped.tapped_steady_ms;
        assert!(member_at_the_door(&tapped, at + 200));
        assert!(member_at_the_door(
            &tapped,
            at + crate::screen::ANSWER_WITHIN_MS
        ));
        // The screen has said "will sync" by now.
        assert!(!member_at_the_door(
            &tapped,
            at + crate::screen::ANSWER_WITHIN_MS + 1
        ));
        // An earlier attempt failed: the screen said "will sync" then.
        let retried = OpenEvent {
            attempts: 1,
            ..event(0, None)
        };
        assert!(!member_at_the_door(&retried, at + 200));
    }

    #[test]
    fn a_refused_admission_finishes_the_event_with_its_reason() {
        let failure = status(403, "corporateFitnessMembershipExpired");
        check(
            event(0, None),
            Outcome::AdmissionRefused {
                refusal: Refusal::MembershipExpired,
                failure: failure.clone(),
            },
            1_000,
            RowChange::Refused {
                answer: answer(&failure),
                reason: "corporateFitnessMembershipExpired".into(),
            },
            WorkerChange::Nothing,
            |r| {
                *r == Report::AdmissionRefused {
                    refusal: Refusal::MembershipExpired,
                }
            },
        );
    }

    #[test]
    fn the_cache_counts_its_age_in_steady_time() {
        let ttl = Duration::from_secs(3600);
        let cached = |account: Option<&str>, at| CachedAccount {
            account_id: account.map(str::to_string),
            membership_type: Some("CORPORATE_FITNESS".into()),
            resolved_steady_ms: at,
        };
        let s = 1_000 * MIN;
        assert_eq!(use_cache(None, s, ttl), CacheUse::LookUp);
        assert_eq!(
            use_cache(Some(&cached(Some("acc"), s - 59 * MIN)), s, ttl),
            CacheUse::Account {
                account_id: "acc".into(),
                membership_type: Some("CORPORATE_FITNESS".into())
            }
        );
        assert_eq!(
            use_cache(Some(&cached(Some("acc"), s - 60 * MIN)), s, ttl),
            CacheUse::LookUp
        );
        assert_eq!(
            use_cache(Some(&cached(None, s - 9 * MIN)), s, ttl),
            CacheUse::KnownUnknown
        );
        assert_eq!(
            use_cache(Some(&cached(None, s - 10 * MIN)), s, ttl),
            CacheUse::LookUp
        );
    }

    #[test]
    fn egym_is_never_sent_a_time_before_2020_or_in_the_future() {
        let known = now(50_000, WallTime::Trusted);
        assert_eq!(egym_timestamp(T - 1_000, 49_000, &known), T - 1_000);
        assert_eq!(egym_timestamp(0, 49_000, &known), EARLIEST_PLAUSIBLE_MS);
        // The clock was stepped an hour back since a tap 12 s ago: 12 s before now.
        assert_eq!(egym_timestamp(T + 3_600_000, 38_000, &known), T - 12_000);
        // With the present unknown, only the floor applies.
        let unknown = now(50_000, WallTime::Untrusted);
        assert_eq!(egym_timestamp(T + 5_000, 38_000, &unknown), T + 5_000);
    }
}
