//! One delivery attempt: resolve the tag (the cache, or a lookup), admit a Wellpass member's
//! check-in, then post the check-in or check-out with the tap's time.

use crate::egym::ApiKey;
use crate::egym::rate_limit::Priority;
use crate::egym::{self, Call, Failure, Verdict};
use crate::events::{AdmissionMade, NameKnown};
use crate::store::{Admission, OpenEvent, StoreError};

use super::Context;
use super::policy::{self, AdmissionPlan, CacheUse, Outcome};

/// Makes one attempt for `event`, its requests made with `priority`; the outcome is decided by
/// [`policy::decide`].
pub(super) async fn attempt(
    ctx: &Context,
    key: &ApiKey,
    event: &OpenEvent,
    priority: Priority,
) -> Result<Outcome, StoreError> {
    let client = ctx.client.with_priority(priority);
    let tag_format = event.tag_format;
    let cached = ctx
        .store
        .cached_account(event.tag.clone(), event.tag_format)
        .await?;
    let mut account = match policy::use_cache(
        cached.as_ref(),
        ctx.clock.steady(),
        ctx.settings.account_cache_ttl,
    ) {
        // A member at the door now is greeted by name: the name is asked for, never kept; and
        // only while the rate limit has requests to spare, so a greeting never slows a
        // backlog or another box sharing the key.
        CacheUse::Account { .. }
            if ctx.settings.greeting.wanted(event.id) && client.has_spare_requests() =>
        {
            None
        }
        CacheUse::Account {
            account_id,
            membership,
        } => Some((account_id, membership)),
        CacheUse::KnownUnknown => {
            tracing::debug!(event_id = event.id, "tag known to be unknown (cached)");
            return Ok(Outcome::UnknownTag { failure: None });
        }
        CacheUse::LookUp => None,
    };
    let mut looked_up = false;
    let mut admission = event.admission;
    loop {
        let (account_id, membership) = match account.take() {
            Some(account) => account,
            None => {
                looked_up = true;
                let found = client.lookup(key, &event.tag, tag_format).await;
                let known = match &found {
                    Ok(account) => Some(Some((account.account_id.clone(), account.membership))),
                    Err(failure)
                        if egym::classify(Call::Lookup, failure) == Verdict::UnknownTag =>
                    {
                        Some(None)
                    }
                    Err(_) => None,
                };
                if let Some(account) = known {
                    ctx.store
                        .cache_account_for(
                            event.id,
                            event.tag.clone(),
                            event.tag_format,
                            account,
                            ctx.clock.steady(),
                        )
                        .await?;
                }
                match found {
                    Ok(account) => {
                        // Told to the screen whenever a lookup gives it (no request is made for
                        // it alone, but for a member at the door): the member screen greets by
                        // it, the staff page says who is in.
                        if let Some(first_name) = account.first_name
                            && ctx.settings.greeting.keeps_names()
                        {
                            NameKnown {
                                event_id: event.id,
                                tag: event.tag.clone(),
                                kind: event.kind,
                                first_name,
                            }
                            .emit(&ctx.listeners);
                        }
                        (account.account_id, account.membership)
                    }
                    Err(failure) => {
                        let verdict = egym::classify(Call::Lookup, &failure);
                        return Ok(outcome_of(verdict, failure));
                    }
                }
            }
        };
        match admit_and_post(
            ctx,
            &client,
            key,
            event,
            &account_id,
            membership,
            &mut admission,
        )
        .await?
        {
            Step::Done(outcome) => return Ok(outcome),
            // The cached account is gone: drop it and look the tag up once more.
            Step::AccountGone(_) if !looked_up => {
                ctx.store
                    .forget_account(event.tag.clone(), event.tag_format)
                    .await?;
            }
            Step::AccountGone(failure) => return Ok(outcome_of(Verdict::AccountGone, failure)),
        }
    }
}

/// How far an attempt got with an account.
enum Step {
    Done(Outcome),
    /// EGYM no longer has the account (the admission's or the post's answer).
    AccountGone(Failure),
}

/// Admits a Wellpass member's check-in if it needs one, then posts the check-in or check-out.
/// `admission` is the event's, kept current as it is recorded.
async fn admit_and_post(
    ctx: &Context,
    client: &egym::Client,
    key: &ApiKey,
    event: &OpenEvent,
    account_id: &str,
    membership: crate::visit::Membership,
    admission: &mut Option<Admission>,
) -> Result<Step, StoreError> {
    let plan = policy::admission_plan(
        &OpenEvent {
            admission: *admission,
            ..event.clone()
        },
        membership,
        ctx.clock.steady(),
        &ctx.settings,
    );
    match plan {
        AdmissionPlan::NotNeeded => {}
        AdmissionPlan::Skip => {
            ctx.store
                .mark_admission(event.id, Admission::Skipped, None, false)
                .await?;
            *admission = Some(Admission::Skipped);
            admission_made(ctx, event, Admission::Skipped, None, None);
        }
        AdmissionPlan::Admit { late } => match client.admit(key, account_id).await {
            Ok(first_admission) => {
                let admitted = if late {
                    Admission::AdmittedLate
                } else {
                    Admission::Admitted
                };
                ctx.store
                    .mark_admission(event.id, admitted, None, first_admission == Some(true))
                    .await?;
                *admission = Some(admitted);
                admission_made(ctx, event, admitted, first_admission, None);
            }
            Err(failure) => match egym::classify(Call::Admission, &failure) {
                Verdict::AdmissionRefused(refusal)
                    if !late && policy::member_at_the_door(event, ctx.clock.steady()) =>
                {
                    return Ok(Step::Done(Outcome::AdmissionRefused { refusal, failure }));
                }
                Verdict::AdmissionRefused(refusal) => {
                    // The member came in while EGYM could not be asked, or was told "will
                    // sync" at the door: the visit happened, and is posted; staff follow the
                    // refusal up.
                    ctx.store
                        .mark_admission(
                            event.id,
                            Admission::RefusedLate,
                            Some(refusal.error_code().into()),
                            false,
                        )
                        .await?;
                    *admission = Some(Admission::RefusedLate);
                    admission_made(ctx, event, Admission::RefusedLate, None, Some(refusal));
                }
                Verdict::AccountGone => return Ok(Step::AccountGone(failure)),
                verdict => return Ok(Step::Done(outcome_of(verdict, failure))),
            },
        },
    }
    let posted = {
        let _permit = ctx
            .posts
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let timestamp =
            policy::egym_timestamp(event.tapped_at, event.tapped_steady, &ctx.clock.now());
        client
            .post_visit(key, account_id, event.kind, timestamp)
            .await
    };
    Ok(match posted {
        Ok(status) => Step::Done(Outcome::Delivered {
            account_id: account_id.to_string(),
            status,
        }),
        Err(failure) => match egym::classify(Call::Post, &failure) {
            Verdict::AccountGone => Step::AccountGone(failure),
            verdict => Step::Done(outcome_of(verdict, failure)),
        },
    })
}

fn admission_made(
    ctx: &Context,
    event: &OpenEvent,
    admission: Admission,
    first_admission: Option<bool>,
    refusal: Option<egym::Refusal>,
) {
    AdmissionMade {
        event_id: event.id,
        reader: event.reader.clone(),
        tag: event.tag.clone(),
        admission,
        first_admission,
        refusal,
    }
    .emit(&ctx.listeners);
}

fn outcome_of(verdict: Verdict, failure: Failure) -> Outcome {
    match verdict {
        Verdict::Retry => Outcome::Retry { failure },
        Verdict::Unreadable => Outcome::Unreadable { failure },
        Verdict::Pause => Outcome::Paused { failure },
        Verdict::UnknownTag => Outcome::UnknownTag {
            failure: Some(failure),
        },
        // Only an admission's answer is a refusal, and the admission handles it.
        Verdict::AccountGone | Verdict::Reject | Verdict::AdmissionRefused(_) => {
            Outcome::Rejected { failure }
        }
    }
}
