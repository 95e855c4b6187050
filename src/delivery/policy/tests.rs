use super::*;
use crate::clock::WallTime;

fn steady(ms: i64) -> SteadyMs {
    SteadyMs::from_millis(ms)
}

fn wall(ms: i64) -> WallMs {
    WallMs::from_millis(ms)
}
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

fn event(attempts: u32, unknown_since: Option<i64>) -> OpenEvent {
    OpenEvent {
        id: 7,
        reader: "entrance".into(),
        raw_id: "0C000621A5".into(),
        tag: "0x0C000621A5".into(),
        tag_format: None,
        kind: Kind::CheckIn,
        tapped_at: wall(T - 90_000),
        tapped_steady: steady(0),
        attempts,
        unknown_since: unknown_since.map(steady),
        admission: None,
    }
}

fn now(steady_ms: i64, wall_is: WallTime) -> Now {
    Now {
        wall: wall(T),
        wall_is,
        steady: steady(steady_ms),
    }
}

fn settings() -> Settings {
    Settings {
        rate_per_second: 6.0,
        account_cache_ttl: Duration::from_secs(12 * 3600),
        unknown_tag_retry_window: Duration::from_secs(24 * 3600),
        admission_window: Duration::from_secs(15 * 60),
        late_admission: LateAdmission::Admit,
        greeting: Greeting::default(),
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
            next_attempt: steady(s + 2_000),
            answer: answer_of(&unreachable()),
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
            next_attempt: steady(s + 500),
            answer: answer_of(&status(503, "unavailable")),
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
            next_attempt: steady(s),
            answer: answer_of(&status(429, "tooManyRequests")),
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
            answer: answer_of(&status(422, "invalid")),
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
            next_attempt: steady(s + 5 * MIN),
            since: steady(s),
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
            next_attempt: steady(s + 20 * MIN),
            since: steady(s - 15 * MIN),
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
    let wellpass = Membership::Wellpass;
    let fresh = 15 * MIN;
    let check_in = event(0, None);
    let plan = |event: &OpenEvent, membership, now, late| {
        let settings = Settings {
            late_admission: late,
            ..settings()
        };
        admission_plan(event, membership, steady(now), &settings)
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
    assert_eq!(plan(&check_in, Membership::Other, 0, admit), NotNeeded);
    assert_eq!(plan(&check_in, Membership::Other, 0, admit), NotNeeded);
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
    let at = tapped.tapped_steady;
    assert!(member_at_the_door(&tapped, at.shifted(200)));
    assert!(member_at_the_door(&tapped, at + visit::AT_THE_DOOR));
    // The screen has said "will sync" by now.
    assert!(!member_at_the_door(
        &tapped,
        (at + visit::AT_THE_DOOR).shifted(1)
    ));
    // An earlier attempt failed: the screen said "will sync" then.
    let retried = OpenEvent {
        attempts: 1,
        ..event(0, None)
    };
    assert!(!member_at_the_door(&retried, at.shifted(200)));
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
            answer: answer_of(&failure),
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
        membership: Membership::Wellpass,
        resolved: steady(at),
    };
    let s = 1_000 * MIN;
    let use_cache = |cached: Option<&CachedAccount>, now| use_cache(cached, steady(now), ttl);
    assert_eq!(use_cache(None, s), CacheUse::LookUp);
    assert_eq!(
        use_cache(Some(&cached(Some("acc"), s - 59 * MIN)), s),
        CacheUse::Account {
            account_id: "acc".into(),
            membership: Membership::Wellpass
        }
    );
    assert_eq!(
        use_cache(Some(&cached(Some("acc"), s - 60 * MIN)), s),
        CacheUse::LookUp
    );
    assert_eq!(
        use_cache(Some(&cached(None, s - 9 * MIN)), s),
        CacheUse::KnownUnknown
    );
    assert_eq!(
        use_cache(Some(&cached(None, s - 10 * MIN)), s),
        CacheUse::LookUp
    );
}

#[test]
fn egym_is_never_sent_a_time_before_2020_or_in_the_future() {
    let known = now(50_000, WallTime::Trusted);
    let stamp = |at, at_steady, now: &Now| egym_timestamp(wall(at), steady(at_steady), now);
    assert_eq!(stamp(T - 1_000, 49_000, &known), wall(T - 1_000));
    assert_eq!(stamp(0, 49_000, &known), EARLIEST_PLAUSIBLE);
    // The clock was stepped an hour back since a tap 12 s ago: 12 s before now.
    assert_eq!(stamp(T + 3_600_000, 38_000, &known), wall(T - 12_000));
    // With the present unknown, only the floor applies.
    let unknown = now(50_000, WallTime::Untrusted);
    assert_eq!(stamp(T + 5_000, 38_000, &unknown), wall(T + 5_000));
}
