//! SQL for sessions and their rotating refresh tokens.
//!
//! A session is one signed-in device. Its refresh tokens form a family: each refresh
//! marks the presented token rotated and issues its successor in one statement.
//! Presenting a rotated token again is reuse (RFC 9700 §4.14.2): the whole session ends.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::history::{self, Method};
use crate::{domain::DeviceClass, error::Result, tokens::access::Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    LogoutAll,
    Revoked,
    PasswordChanged,
    RefreshReuse,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::Revoked => "revoked",
            Self::PasswordChanged => "password_changed",
            Self::RefreshReuse => "refresh_reuse",
        }
    }
}

pub struct Client {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn device(&self) -> DeviceClass {
        DeviceClass::from_user_agent(self.user_agent.as_deref().unwrap_or_default())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub device: DeviceClass,
    /// True for the session of the token that made this request.
    pub current: bool,
}

/// Opens a session with its first refresh token for a signed-in account, records the
/// successful sign-in, and reads what the first access token states about the account.
/// One statement: atomic without a transaction, and one round trip instead of six.
/// `None` if the account no longer exists, or, for a password sign-in, if
/// `verified_hash` (the hash the password was checked against) is no longer the
/// account's: then nothing is written.
///
/// The account's row is share-locked, so a password change (which updates the row, then
/// ends every session in the same transaction) and a sign-in with the old password are
/// ordered: either the session is written first and the change ends it, or this
/// statement waits for the change, sees the new hash and opens nothing. The foreign
/// key's check takes a lock on the same row anyway.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn open(
    db: &PgPool,
    user_id: Uuid,
    verified_hash: Option<&str>,
    client: &Client,
    method: Method,
    refresh_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<Option<(Uuid, Subject)>> {
    let id = Uuid::now_v7();
    let opened: Option<(Vec<String>, Option<chrono::NaiveDate>)> = sqlx::query_as(concat!(
        "WITH account AS (
             SELECT u.id, u.birth_date, ",
        role_names!("u.id"),
        " AS roles
               FROM users u WHERE u.id = $2 AND ($10::text IS NULL OR u.password_hash = $10)
                FOR SHARE OF u
         ), session AS (
             INSERT INTO sessions (id, user_id, expires_at, ip, user_agent, device)
             SELECT $1, id, $3, $4, $5, $6 FROM account RETURNING id
         ), first_token AS (
             INSERT INTO refresh_tokens (token_hash, session_id, expires_at) SELECT $7, id, $3 FROM session
         ), attempt AS (
             INSERT INTO login_history (id, user_id, ip, user_agent, device, method, success)
             SELECT $8, id, $4, $5, $6, $9, true FROM account
         )
         SELECT roles, birth_date FROM account"
    ))
    .bind(id)
    .bind(user_id)
    .bind(expires_at)
    .bind(client.ip)
    .bind(client.user_agent.as_deref())
    .bind(client.device().as_str())
    .bind(refresh_hash)
    .bind(Uuid::now_v7())
    .bind(method.as_str())
    .bind(verified_hash)
    .fetch_optional(db)
    .await?;
    let Some((roles, birth_date)) = opened else { return Ok(None) };
    history::count(method, Ok(()));
    Ok(Some((id, Subject { user_id, roles, birth_date })))
}

pub enum Rotation {
    Rotated {
        session_id: Uuid,
        subject: Subject,
    },
    /// An already-rotated token was presented: the session has been ended.
    Reused {
        session_id: Uuid,
    },
    Invalid,
}

/// A refresh: the token presented, its successor, and how far the session may live.
pub struct Rotating<'a> {
    pub presented_hash: &'a [u8],
    pub next_hash: &'a [u8],
    /// When the successor expires unused; never past the session's sign-in plus `lifetime`.
    pub expires_at: DateTime<Utc>,
    pub lifetime: std::time::Duration,
}

/// Exchanges a refresh token for its successor. The happy path is one round trip.
///
/// The session's row is locked first (`live`), so a refresh racing the end of its
/// session (sign-out, password change, a deleted session) waits for that transaction
/// and then sees the session ended: it rotates nothing and is refused, rather than
/// renewing an ended session with a pair that is dead on arrival. Sessions are locked
/// before their refresh tokens, the order deleting a session takes too.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
/// A session past its lifetime is not renewed: its token is invalid, as if expired.
pub async fn rotate(db: &PgPool, rotating: &Rotating<'_>, client: &Client) -> Result<Rotation> {
    let rotated: Option<(Uuid, Uuid, Vec<String>, Option<chrono::NaiveDate>)> = sqlx::query_as(concat!(
        "WITH live AS (
             SELECT s.id, s.user_id, s.created_at
               FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
              WHERE rt.token_hash = $1 AND rt.rotated_at IS NULL AND rt.expires_at > now()
                AND s.ended_at IS NULL AND s.created_at + make_interval(secs => $6) > now()
                FOR NO KEY UPDATE OF s
         ), old AS (
             UPDATE refresh_tokens rt SET rotated_at = now()
               FROM live s
              WHERE rt.token_hash = $1 AND rt.rotated_at IS NULL AND rt.expires_at > now() AND rt.session_id = s.id
          RETURNING rt.session_id, s.user_id, LEAST($3, s.created_at + make_interval(secs => $6)) AS expires_at
         ), successor AS (
             INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
             SELECT $2, session_id, expires_at FROM old
         ), touched AS (
             UPDATE sessions SET last_used_at = now(), expires_at = (SELECT expires_at FROM old),
                    ip = COALESCE($4, ip), user_agent = COALESCE($5, user_agent)
              WHERE id = (SELECT session_id FROM old)
         )
         SELECT old.session_id, old.user_id, ",
        role_names!("old.user_id"),
        ", (SELECT birth_date FROM users WHERE id = old.user_id)
           FROM old"
    ))
    .bind(rotating.presented_hash)
    .bind(rotating.next_hash)
    .bind(rotating.expires_at)
    .bind(client.ip)
    .bind(client.user_agent.as_deref())
    .bind(rotating.lifetime.as_secs_f64())
    .fetch_optional(db)
    .await?;
    if let Some((session_id, user_id, roles, birth_date)) = rotated {
        return Ok(Rotation::Rotated { session_id, subject: Subject { user_id, roles, birth_date } });
    }
    // Not rotatable: find out whether it was a replay of a rotated token.
    let reused: Option<Uuid> = sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1 AND rotated_at IS NOT NULL")
        .bind(rotating.presented_hash)
        .fetch_optional(db)
        .await?;
    match reused {
        Some(session_id) => {
            end(db, session_id, EndReason::RefreshReuse).await?;
            Ok(Rotation::Reused { session_id })
        }
        None => Ok(Rotation::Invalid),
    }
}

/// Ends one session; returns its user when it was live.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn end(db: impl PgExecutor<'_>, session_id: Uuid, reason: EndReason) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("UPDATE sessions SET ended_at = now(), end_reason = $2 WHERE id = $1 AND ended_at IS NULL RETURNING user_id")
        .bind(session_id)
        .bind(reason.as_str())
        .fetch_optional(db)
        .await?)
}

/// Ends one live session of `user_id` (so a user cannot end another's); returns
/// whether it was live. An expired session is not live, as in [`list_live`]: ending it
/// is 404 like ending an unknown one.
///
/// Like [`end_all`], it share-locks the account first: see [`hold_live`].
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn end_own(db: impl PgExecutor<'_>, user_id: Uuid, session_id: Uuid, reason: EndReason) -> Result<bool> {
    let ended = sqlx::query(
        "WITH account AS (SELECT id FROM users WHERE id = $2 FOR SHARE)
         UPDATE sessions SET ended_at = now(), end_reason = $3
          WHERE id = $1 AND user_id = (SELECT id FROM account) AND ended_at IS NULL AND expires_at > now()",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(reason.as_str())
    .execute(db)
    .await?;
    Ok(ended.rows_affected() > 0)
}

/// Ends every live session of a user except `keep`; returns the ended ids.
///
/// It share-locks the account first: see [`hold_live`].
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn end_all(db: impl PgExecutor<'_>, user_id: Uuid, keep: Option<Uuid>, reason: EndReason) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "WITH account AS (SELECT id FROM users WHERE id = $1 FOR SHARE)
         UPDATE sessions SET ended_at = now(), end_reason = $3
          WHERE user_id = (SELECT id FROM account) AND ended_at IS NULL AND ($2::uuid IS NULL OR id <> $2)
      RETURNING id",
    )
    .bind(user_id)
    .bind(keep)
    .bind(reason.as_str())
    .fetch_all(db)
    .await?)
}

/// Whether a session is live, keeping it so until the caller's transaction ends: an
/// account change that a session authorises (the password, the profile) holds its
/// session this way.
///
/// The account's row orders such a change against the endings of its sessions. The
/// change updates that row first, then holds its session, then ends the others;
/// [`end_all`] and [`end_own`] share-lock the row before they touch any session. So an
/// ending already under way makes the change wait for it and then find its session
/// ended, and one that comes later waits for the change: neither can hold sessions the
/// other needs, so they never deadlock.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn hold_live(tx: &mut sqlx::PgConnection, session_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i32>("SELECT 1 FROM sessions WHERE id = $1 AND ended_at IS NULL AND expires_at > now() FOR SHARE")
        .bind(session_id)
        .fetch_optional(tx)
        .await?
        .is_some())
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn is_live(db: impl PgExecutor<'_>, session_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND ended_at IS NULL AND expires_at > now())")
        .bind(session_id)
        .fetch_one(db)
        .await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list_live(db: impl PgExecutor<'_>, user_id: Uuid, current: Uuid) -> Result<Vec<SessionView>> {
    type Row = (Uuid, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>, Option<IpAddr>, Option<String>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, created_at, last_used_at, expires_at, ip, user_agent, device FROM sessions
          WHERE user_id = $1 AND ended_at IS NULL AND expires_at > now()
          ORDER BY last_used_at DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, created_at, last_used_at, expires_at, ip, user_agent, device)| SessionView {
            id,
            created_at,
            last_used_at,
            expires_at,
            ip,
            user_agent,
            device: DeviceClass::from_db(&device),
            current: id == current,
        })
        .collect())
}

/// What introspection reports of a live session's user, read now: roles and birth date
/// may have changed since the token was issued.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveUser {
    pub roles: Vec<String>,
    pub birth_date: Option<chrono::NaiveDate>,
}

/// The user's current roles and birth date if the session is live, else `None`: the
/// database side of introspection, one round trip.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn live_user(db: impl PgExecutor<'_>, session_id: Uuid, user_id: Uuid) -> Result<Option<LiveUser>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        role_names!("s.user_id"),
        " AS roles, u.birth_date
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.id = $1 AND s.user_id = $2 AND s.ended_at IS NULL AND s.expires_at > now()"
    ))
    .bind(session_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?)
}

/// What one [`purge`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub refresh_tokens: u64,
}

/// Rows deleted per statement: each batch is a short transaction, so a large backlog
/// never holds locks or bloats the WAL of one statement.
const PURGE_BATCH: i64 = 10_000;

/// Deletes what no request can use any more: refresh tokens past their expiry (a
/// rotated one included: replaying it is then refused as unknown, not as reuse, and
/// its session, if live, goes on), and sessions that ended or expired more than `keep`
/// ago, with their refresh tokens (`ON DELETE CASCADE`). Their IP and user agent go
/// with them, as the login history's go with its months. Without this both tables grew
/// by a row per sign-in and one per refresh for good.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn purge(db: &PgPool, keep: std::time::Duration) -> Result<Purged> {
    let keep_seconds = keep.as_secs_f64();
    // A session dead `keep` ago was created at least `keep` ago: the BRIN index on
    // `created_at` skips the rest of the table.
    let sessions = in_batches(|| {
        sqlx::query(
            "DELETE FROM sessions WHERE id IN (
                 SELECT id FROM sessions
                  WHERE created_at < now() - make_interval(secs => $2)
                    AND (ended_at < now() - make_interval(secs => $2) OR expires_at < now() - make_interval(secs => $2))
                  LIMIT $1)",
        )
        .bind(PURGE_BATCH)
        .bind(keep_seconds)
        .execute(db)
    })
    .await?;
    let refresh_tokens = in_batches(|| {
        sqlx::query("DELETE FROM refresh_tokens WHERE token_hash IN (SELECT token_hash FROM refresh_tokens WHERE expires_at < now() LIMIT $1)")
            .bind(PURGE_BATCH)
            .execute(db)
    })
    .await?;
    Ok(Purged { sessions, refresh_tokens })
}

/// Runs `delete` (at most [`PURGE_BATCH`] rows a time) until a run deletes fewer;
/// returns the rows deleted in all.
async fn in_batches<F>(delete: impl Fn() -> F) -> Result<u64>
where
    F: Future<Output = std::result::Result<sqlx::postgres::PgQueryResult, sqlx::Error>>,
{
    let mut deleted = 0;
    loop {
        let batch = delete().await?.rows_affected();
        deleted += batch;
        if batch < PURGE_BATCH as u64 {
            return Ok(deleted);
        }
    }
}
