//! Stored OAuth2 grants: a mailbox user's consent, kept as the refresh token that
//! renews it, sealed by the caller (the database never sees one in clear), under the
//! name of the sign-in profile it was given to and the account it is for.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::StoreError;
use crate::db::{Db, now};

/// A grant as listed: everything but the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub profile: String,
    pub account: String,
    /// The scopes the provider granted, as it said them.
    pub scope: Option<String>,
    pub created_at: i64,
    /// When the refresh token was last replaced (a new sign-in or a rotation).
    pub updated_at: i64,
}

const GRANT_COLUMNS: &str = "profile, account, scope, created_at, updated_at";

impl Db {
    /// Keeps the sealed refresh token of `account` under `profile`, replacing the one
    /// kept before (a new sign-in, or the provider rotated it).
    pub async fn save_grant(
        &self,
        profile: &str,
        account: &str,
        sealed_refresh_token: &[u8],
        scope: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now();
        sqlx::query(
            "INSERT INTO oauth_grants \
                 (profile, account, refresh_token, scope, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (profile, account) DO UPDATE SET \
                 refresh_token = excluded.refresh_token, \
                 scope = COALESCE(excluded.scope, oauth_grants.scope), \
                 updated_at = excluded.updated_at",
        )
        .bind(profile)
        .bind(account)
        .bind(sealed_refresh_token)
        .bind(scope)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sealed refresh token of `account` under `profile`, if one is kept.
    pub async fn grant_token(
        &self,
        profile: &str,
        account: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT refresh_token FROM oauth_grants WHERE profile = $1 AND account = $2",
        )
        .bind(profile)
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    /// Every kept grant, by profile then account.
    pub async fn grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants ORDER BY profile, account"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_record).collect()
    }

    /// Forgets a grant; false if none was kept.
    pub async fn delete_grant(&self, profile: &str, account: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM oauth_grants WHERE profile = $1 AND account = $2")
            .bind(profile)
            .bind(account)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }
}

fn grant_record(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    Ok(GrantRecord {
        profile: row.try_get(0)?,
        account: row.try_get(1)?,
        scope: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}
