//! One delivery attempt: resolve the tag (the cache, or a lookup), then post the check-in or
//! check-out with the tap's time.

use crate::config::ApiKey;
use crate::egym::{self, Call, Failure, Verdict};
use crate::store::{OpenEvent, StoreError};

use super::Context;
use super::policy::{self, CacheUse, Outcome};

/// Makes one attempt for `event`; the outcome is decided by [`policy::decide`].
pub(super) async fn attempt(
    ctx: &Context,
    key: &ApiKey,
    event: &OpenEvent,
) -> Result<Outcome, StoreError> {
    let tag_format = event.tag_format.as_deref();
    let cached = ctx
        .store
        .cached_account(event.tag.clone(), event.tag_format.clone())
        .await?;
    let mut account_id = match policy::use_cache(
        cached.as_ref(),
        ctx.clock.steady_ms(),
        ctx.settings.account_cache_ttl,
    ) {
        CacheUse::Account(account) => Some(account),
        CacheUse::KnownUnknown => {
            tracing::debug!(event_id = event.id, "tag known to be unknown (cached)");
            return Ok(Outcome::UnknownTag { failure: None });
        }
        CacheUse::LookUp => None,
    };
    let mut looked_up = false;
    loop {
        let account = match account_id.take() {
            Some(account) => account,
            None => {
                looked_up = true;
                let found = ctx.client.lookup(key, &event.tag, tag_format).await;
                let known = match &found {
                    Ok(account) => Some(Some(account.clone())),
                    Err(failure)
                        if egym::classify(Call::Lookup, failure) == Verdict::UnknownTag =>
                    {
                        Some(None)
                    }
                    Err(_) => None,
                };
                if let Some(account) = known {
                    ctx.store
                        .cache_account(
                            event.tag.clone(),
                            event.tag_format.clone(),
                            account,
                            ctx.clock.steady_ms(),
                        )
                        .await?;
                }
                match found {
                    Ok(account) => account,
                    Err(failure) => {
                        let verdict = egym::classify(Call::Lookup, &failure);
                        return Ok(outcome_of(verdict, failure));
                    }
                }
            }
        };
        let posted = {
            let _permit = ctx
                .posts
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let timestamp = policy::egym_timestamp(
                event.tapped_at_ms,
                event.tapped_steady_ms,
                &ctx.clock.now(),
            );
            ctx.client
                .post_visit(key, &account, event.kind, timestamp)
                .await
        };
        match posted {
            Ok(status) => {
                return Ok(Outcome::Delivered {
                    account_id: account,
                    status,
                });
            }
            Err(failure) => match egym::classify(Call::Post, &failure) {
                // The cached account is gone: drop it and look the tag up once more.
                Verdict::AccountGone if !looked_up => {
                    ctx.store
                        .forget_account(event.tag.clone(), event.tag_format.clone())
                        .await?;
                    continue;
                }
                verdict => return Ok(outcome_of(verdict, failure)),
            },
        }
    }
}

fn outcome_of(verdict: Verdict, failure: Failure) -> Outcome {
    match verdict {
        Verdict::Retry => Outcome::Retry { failure },
        Verdict::Pause => Outcome::Paused { failure },
        Verdict::UnknownTag => Outcome::UnknownTag {
            failure: Some(failure),
        },
        Verdict::AccountGone | Verdict::Reject => Outcome::Rejected { failure },
    }
}
