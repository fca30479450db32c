//! SQL for social identities linked to accounts (`social_accounts`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    error::{ApiError, Result},
    oauth::{Identity, Provider},
};

/// A linked social account, as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SocialAccount {
    pub provider: Provider,
    /// The person's id at the provider.
    #[schema(example = "1130000012345678")]
    pub provider_user_id: String,
    /// The email the provider last asserted, if any.
    pub email: Option<String>,
    pub linked_at: DateTime<Utc>,
}

type Row = (String, String, Option<String>, DateTime<Utc>);

fn account((provider, subject, email, linked_at): Row) -> Result<SocialAccount> {
    let provider = Provider::parse(&provider).ok_or_else(|| anyhow::anyhow!("unknown provider {provider:?} in social_accounts"))?;
    Ok(SocialAccount { provider, provider_user_id: subject, email, linked_at })
}

/// Why an insert was refused.
pub enum InsertConflict {
    /// The identity is already linked (to anyone): the primary key.
    IdentityTaken,
    /// The account already has an identity of this provider.
    ProviderTaken,
}

/// The account an identity is linked to, locking the link until the transaction ends.
pub async fn owner_for_update(tx: &mut PgConnection, provider: Provider, subject: &str) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT user_id FROM social_accounts WHERE provider = $1 AND subject = $2 FOR UPDATE")
        .bind(provider.as_str())
        .bind(subject)
        .fetch_optional(tx)
        .await?)
}

/// Refreshes what the provider last said about a linked identity.
pub async fn touch(db: impl PgExecutor<'_>, identity: &Identity, signed_in: bool) -> Result<SocialAccount> {
    let row: Row = sqlx::query_as(
        "UPDATE social_accounts
            SET email = COALESCE($3, email), display_name = COALESCE($4, display_name),
                last_sign_in_at = CASE WHEN $5 THEN now() ELSE last_sign_in_at END
          WHERE provider = $1 AND subject = $2
      RETURNING provider, subject, email, linked_at",
    )
    .bind(identity.provider.as_str())
    .bind(&identity.subject)
    .bind(identity.email.as_ref().map(AsRef::as_ref))
    .bind(identity.display_name.as_deref())
    .bind(signed_in)
    .fetch_one(db)
    .await?;
    account(row)
}

/// Links an identity to an account inside the caller's transaction. On a conflict the
/// transaction is aborted and must be rolled back.
pub async fn insert(
    tx: &mut PgConnection,
    user_id: Uuid,
    identity: &Identity,
    signed_in: bool,
) -> Result<std::result::Result<SocialAccount, InsertConflict>> {
    let inserted = sqlx::query_as::<_, Row>(
        "INSERT INTO social_accounts (provider, subject, user_id, email, display_name, last_sign_in_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
      RETURNING provider, subject, email, linked_at",
    )
    .bind(identity.provider.as_str())
    .bind(&identity.subject)
    .bind(user_id)
    .bind(identity.email.as_ref().map(AsRef::as_ref))
    .bind(identity.display_name.as_deref())
    .bind(signed_in)
    .fetch_one(tx)
    .await;
    match inserted {
        Ok(row) => Ok(Ok(account(row)?)),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("social_accounts_pkey") => Ok(Err(InsertConflict::IdentityTaken)),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("social_accounts_user_provider_key") => Ok(Err(InsertConflict::ProviderTaken)),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<SocialAccount>> {
    let rows: Vec<Row> =
        sqlx::query_as("SELECT provider, subject, email, linked_at FROM social_accounts WHERE user_id = $1 ORDER BY linked_at, provider")
            .bind(user_id)
            .fetch_all(db)
            .await?;
    rows.into_iter().map(account).collect()
}

/// Whether the account has a password, locking the account row so that concurrent
/// unlinks of its last identities are serialised. `None` when there is no such account.
pub async fn has_password_for_update(tx: &mut PgConnection, user_id: Uuid) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar("SELECT password_hash IS NOT NULL FROM users WHERE id = $1 FOR UPDATE").bind(user_id).fetch_optional(tx).await?)
}

pub async fn delete(db: impl PgExecutor<'_>, user_id: Uuid, provider: Provider) -> Result<bool> {
    let deleted =
        sqlx::query("DELETE FROM social_accounts WHERE user_id = $1 AND provider = $2").bind(user_id).bind(provider.as_str()).execute(db).await?;
    Ok(deleted.rows_affected() > 0)
}

pub fn not_linked() -> ApiError {
    ApiError::NotFound("No account of this provider is linked to yours.")
}
