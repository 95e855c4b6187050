//! The tag → account cache: EGYM's answers to lookups, positive and negative.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::clock::SteadyMs;
use crate::tag::TagFormat;
use crate::visit::Membership;

/// How the `membership_type` column holds a membership: EGYM's own name for a Wellpass
/// membership, NULL for any other (nothing else of a member's membership is kept).
const WELLPASS: &str = "CORPORATE_FITNESS";

fn membership_from_column(value: Option<String>) -> Membership {
    match value.as_deref() {
        Some(WELLPASS) => Membership::Wellpass,
        _ => Membership::Other,
    }
}

fn membership_to_column(membership: Option<Membership>) -> Option<&'static str> {
    match membership? {
        Membership::Wellpass => Some(WELLPASS),
        Membership::Other => None,
    }
}

/// A cached lookup: `account_id` is `None` when EGYM said no member has the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedAccount {
    pub account_id: Option<String>,
    /// Whether the member is a Wellpass member (its `membershipType` is kept only for them).
    pub membership: Membership,
    /// Steady time of the answer: the cache's age counts real elapsed time.
    pub resolved: SteadyMs,
}

/// The cached answer for a tag, if any.
pub(super) fn cached(
    conn: &rusqlite::Connection,
    tag: &str,
    tag_format: Option<TagFormat>,
) -> rusqlite::Result<Option<CachedAccount>> {
    conn.prepare_cached(
        "SELECT account_id, resolved_steady_ms, membership_type FROM accounts
         WHERE tag = ?1 AND tag_format = ?2",
    )?
    .query_row(
        params![tag, tag_format.map_or("", TagFormat::as_str)],
        |row| {
            Ok(CachedAccount {
                account_id: row.get(0)?,
                membership: membership_from_column(row.get(2)?),
                resolved: row.get(1)?,
            })
        },
    )
    .optional()
}

impl Store {
    pub async fn cached_account(
        &self,
        tag: String,
        tag_format: Option<TagFormat>,
    ) -> Result<Option<CachedAccount>, StoreError> {
        self.call(move |conn| cached(conn, &tag, tag_format)).await
    }

    /// Caches EGYM's answer for the tag, given at steady time `now`: the member's
    /// account and membership type, or (`None`) that no member has it. Nothing else of the
    /// member is written down.
    pub async fn cache_account(
        &self,
        tag: String,
        tag_format: Option<TagFormat>,
        account: Option<(String, Membership)>,
        now: SteadyMs,
    ) -> Result<(), StoreError> {
        self.cache(None, tag, tag_format, account, now).await
    }

    /// As [`Store::cache_account`], for a lookup made to deliver the event `event_id`: cached
    /// only while that event is still open. A lookup whose event was erased while it was asked
    /// (`gym-checkin forget`) leaves nothing of the card behind.
    pub async fn cache_account_for(
        &self,
        event_id: i64,
        tag: String,
        tag_format: Option<TagFormat>,
        account: Option<(String, Membership)>,
        now: SteadyMs,
    ) -> Result<(), StoreError> {
        self.cache(Some(event_id), tag, tag_format, account, now)
            .await
    }

    async fn cache(
        &self,
        event_id: Option<i64>,
        tag: String,
        tag_format: Option<TagFormat>,
        account: Option<(String, Membership)>,
        now: SteadyMs,
    ) -> Result<(), StoreError> {
        let (account_id, membership) = account.unzip();
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO accounts (tag, tag_format, account_id, resolved_steady_ms,
                                       membership_type)
                 SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE ?6 IS NULL OR EXISTS (
                     SELECT 1 FROM events WHERE id = ?6 AND state IN ('pending', 'unknown_tag'))
                 ON CONFLICT (tag, tag_format) DO UPDATE
                 SET account_id = ?3, resolved_steady_ms = ?4, membership_type = ?5",
            )?
            .execute(params![
                tag,
                tag_format.map_or("", TagFormat::as_str),
                account_id,
                now,
                membership_to_column(membership),
                event_id
            ])?;
            Ok(())
        })
        .await
    }

    pub async fn forget_account(
        &self,
        tag: String,
        tag_format: Option<TagFormat>,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM accounts WHERE tag = ?1 AND tag_format = ?2")?
                .execute(params![tag, tag_format.map_or("", TagFormat::as_str)])?;
            Ok(())
        })
        .await
    }
}
