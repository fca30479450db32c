//! SQL for the login history, and its keyset pagination cursor.

use std::net::IpAddr;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::sessions::Client;
use crate::{domain::DeviceClass, error::Result};

/// How a sign-in was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    /// The current password a password change (`PUT /users/me/password`) checks: recorded
    /// when refused (wrong, or too many attempts), so that the owner sees such guesses
    /// and the account-wide limit counts them while the limits' Redis is down.
    PasswordChange,
    Yandex,
    Vk,
    Google,
    Mailru,
}

impl Method {
    /// The ways to sign in, each of which can succeed.
    pub const SIGN_IN: [Self; 5] = [Self::Password, Self::Yandex, Self::Vk, Self::Google, Self::Mailru];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::PasswordChange => "password_change",
            Self::Yandex => "yandex",
            Self::Vk => "vk",
            Self::Google => "google",
            Self::Mailru => "mailru",
        }
    }
}

/// Why a sign-in failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    UnknownAccount,
    WrongPassword,
    /// The account signs in only through a social provider.
    PasswordNotSet,
    /// Too many attempts on the account (docs/rate-limiting.md); the password was not checked.
    RateLimited,
}

impl Failure {
    pub const ALL: [Self; 4] = [Self::UnknownAccount, Self::WrongPassword, Self::PasswordNotSet, Self::RateLimited];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownAccount => "unknown_account",
            Self::WrongPassword => "wrong_password",
            Self::PasswordNotSet => "password_not_set",
            Self::RateLimited => "rate_limited",
        }
    }
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn record(db: impl PgExecutor<'_>, user_id: Option<Uuid>, client: &Client, method: Method, outcome: Result<(), Failure>) -> Result<()> {
    count(method, outcome);
    sqlx::query(
        "INSERT INTO login_history (id, user_id, ip, user_agent, device, method, success, failure_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(client.ip)
    .bind(client.user_agent.as_deref())
    .bind(client.device().as_str())
    .bind(method.as_str())
    .bind(outcome.is_ok())
    .bind(outcome.err().map(Failure::as_str))
    .execute(db)
    .await?;
    Ok(())
}

/// How long until fewer than `burst` of the account's wrong passwords lie within the
/// last `window`; `None` when fewer already do (limits::sign_in, while the limits'
/// Redis is down). Times are the database's, as `attempted_at` is. Reads at most
/// [`WRONG_PASSWORDS_ROWS_READ`] of the account's latest rows: an account flooded
/// with more refused attempts than that within the window is left to the in-process
/// limits, so that a flood makes each check no dearer.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn until_fewer_wrong_passwords(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    window: std::time::Duration,
    burst: u64,
) -> Result<Option<std::time::Duration>> {
    let seconds: Option<f64> = sqlx::query_scalar(WRONG_PASSWORDS_IN_WINDOW)
        .bind(user_id)
        .bind(window.as_secs_f64())
        .bind(Failure::WrongPassword.as_str())
        .bind(WRONG_PASSWORDS_ROWS_READ)
        .bind(i64::try_from(burst.max(1) - 1).unwrap_or(i64::MAX))
        .fetch_optional(db)
        .await?;
    Ok(seconds.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))))
}

/// How many of an account's latest history rows [`until_fewer_wrong_passwords`] reads.
pub const WRONG_PASSWORDS_ROWS_READ: i64 = 1000;

/// [`until_fewer_wrong_passwords`]'s statement: `$1` the account, `$2` the window in
/// seconds, `$3` the failure counted (a wrong password, at sign-in or at a password
/// change), `$4` the rows read, `$5` how many of the latest such failures to skip.
pub const WRONG_PASSWORDS_IN_WINDOW: &str = "SELECT EXTRACT(EPOCH FROM attempted_at + make_interval(secs => $2) - now())::float8
       FROM (SELECT attempted_at, failure_reason FROM login_history
              WHERE user_id = $1 AND attempted_at > now() - make_interval(secs => $2)
              ORDER BY attempted_at DESC LIMIT $4) latest
      WHERE failure_reason = $3
      ORDER BY attempted_at DESC OFFSET $5 LIMIT 1";

/// Lists `auth_sign_ins_total` at zero for every method and outcome it can take, so an
/// alert on failures or on a provider's sign-ins can tell zero from missing: every
/// sign-in method's successes, the password's failures (a provider's refusals happen at
/// the provider, before an attempt is recorded) and a password change's refused checks.
pub fn register_metrics() {
    metrics::describe_counter!(
        "auth_sign_ins_total",
        "Sign-in attempts by method (password, provider, or a password change's check of the current password) and outcome (success or why not)."
    );
    for method in Method::SIGN_IN {
        metrics::counter!("auth_sign_ins_total", "method" => method.as_str(), "outcome" => "success").increment(0);
    }
    for failure in Failure::ALL {
        metrics::counter!("auth_sign_ins_total", "method" => Method::Password.as_str(), "outcome" => failure.as_str()).increment(0);
    }
    for failure in [Failure::WrongPassword, Failure::RateLimited] {
        metrics::counter!("auth_sign_ins_total", "method" => Method::PasswordChange.as_str(), "outcome" => failure.as_str()).increment(0);
    }
}

/// Counts a sign-in attempt in the `auth_sign_ins_total` metric.
pub fn count(method: Method, outcome: Result<(), Failure>) {
    let result = outcome.map_or_else(Failure::as_str, |()| "success");
    metrics::counter!("auth_sign_ins_total", "method" => method.as_str(), "outcome" => result).increment(1);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAttempt {
    pub id: Uuid,
    pub attempted_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub device: DeviceClass,
    #[schema(example = "password")]
    pub method: String,
    pub success: bool,
    /// Why it failed: `wrong_password`, `password_not_set`, …; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// The earliest time PostgreSQL's `timestamptz` holds (4714-11-24 BC, its
/// `MIN_TIMESTAMP`), in Unix microseconds. chrono reaches further back; PostgreSQL
/// refuses to bind such a time ("timestamp out of range"). Its latest (294276 AD) is
/// past chrono's, so needs no bound.
const POSTGRES_EARLIEST_MICROS: i64 = -210_866_803_200_000_000;

/// Position after the last row of a page: its time and id, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub attempted_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&self.attempted_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 32 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let (micros, id) = bytes.split_at_checked(8)?;
        let micros = i64::from_be_bytes(micros.try_into().ok()?);
        // No row is older; binding it would fail the page query (a 500).
        if micros < POSTGRES_EARLIEST_MICROS {
            return None;
        }
        Some(Self { attempted_at: DateTime::from_timestamp_micros(micros)?, id: Uuid::from_slice(id).ok()? })
    }
}

/// The first page of a user's history: `$1` the user, `$2` the number of rows.
pub const PAGE: &str = "SELECT id, attempted_at, ip, user_agent, device, method, success, failure_reason
   FROM login_history
  WHERE user_id = $1
  ORDER BY attempted_at DESC, id DESC
  LIMIT $2";

/// A later page: `$1` the user, `$2`/`$3` the cursor's time and id, `$4` the number of
/// rows. A statement of its own, not [`PAGE`] with an optional cursor: planned for any
/// value (the connections force generic plans), `$2 IS NULL OR …` left the cursor a
/// filter applied after the index, so a page far back read every newer row of the user
/// in every month. `attempted_at <= $2` is what lets the executor skip the newer months
/// (PostgreSQL prunes partitions on plain comparisons of the key, not on a row
/// comparison), and the row comparison then starts each remaining index scan at the
/// cursor.
pub const PAGE_AFTER: &str = "SELECT id, attempted_at, ip, user_agent, device, method, success, failure_reason
   FROM login_history
  WHERE user_id = $1 AND attempted_at <= $2 AND (attempted_at, id) < ($2, $3)
  ORDER BY attempted_at DESC, id DESC
  LIMIT $4";

/// Run before [`PAGE`] or [`PAGE_AFTER`] in its transaction. The table has one partition per month, each
/// with its copy of the `(user_id, attempted_at DESC, id DESC)` index; the page must
/// merge those ordered scans and stop after `$4` rows. A plan made for any user
/// (PostgreSQL's generic plan of a prepared statement) can instead judge sorting "a
/// few rows" cheaper, which for an account with millions of attempts (a target of
/// password guessing) would sort them all on every page. docs/partitioning.md.
pub const PAGE_PLANNER_SETTING: &str = "SET LOCAL enable_sort = off";

/// One page of a user's history, newest first, after `cursor`. Fetches one row more
/// than asked to know whether another page follows.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn page(db: &PgPool, user_id: Uuid, cursor: Option<Cursor>, limit: u16) -> Result<(Vec<LoginAttempt>, Option<Cursor>)> {
    let mut tx = db.begin().await?;
    sqlx::query(PAGE_PLANNER_SETTING).execute(&mut *tx).await?;
    /// id, attempted_at, ip, user_agent, device, method, success, failure_reason
    type Row = (Uuid, DateTime<Utc>, Option<IpAddr>, Option<String>, String, String, bool, Option<String>);
    let rows: Vec<Row> = match cursor {
        None => sqlx::query_as(PAGE).bind(user_id).bind(i64::from(limit) + 1).fetch_all(&mut *tx).await?,
        Some(cursor) => {
            sqlx::query_as(PAGE_AFTER).bind(user_id).bind(cursor.attempted_at).bind(cursor.id).bind(i64::from(limit) + 1).fetch_all(&mut *tx).await?
        }
    };
    tx.commit().await?;
    let mut items: Vec<LoginAttempt> = rows
        .into_iter()
        .map(|(id, attempted_at, ip, user_agent, device, method, success, failure_reason)| LoginAttempt {
            id,
            attempted_at,
            ip,
            user_agent,
            device: DeviceClass::from_db(&device),
            method,
            success,
            failure_reason,
        })
        .collect();
    let next = if items.len() > usize::from(limit) {
        items.truncate(usize::from(limit));
        items.last().map(|last| Cursor { attempted_at: last.attempted_at, id: last.id })
    } else {
        None
    };
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let cursor = Cursor { attempted_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(), id: Uuid::now_v7() };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        for junk in ["", "abc", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", &"A".repeat(32), &"A".repeat(33)] {
            let parsed = Cursor::parse(junk);
            assert!(parsed.is_none() || junk == "A".repeat(32), "{junk:?}");
        }
        // Out-of-range times are refused, not panicked on.
        let mut bytes = i64::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(Cursor::parse(&URL_SAFE_NO_PAD.encode(bytes)), None);
    }

    /// Found by `fuzz/history_cursor`: a well-formed cursor of a time chrono holds but
    /// PostgreSQL does not (before 4714-11-24 BC) was accepted, and the page query then
    /// failed to bind it: a 500 for `GET /api/v1/users/me/login-history?cursor=…`.
    #[test]
    fn fuzz_history_cursor_before_postgres_earliest_time_is_refused() {
        // The fuzzer's input (-124046-02-01), the last microsecond out of range, and the year -251,500.
        for refused in ["yNAAQDUQAAAAAAIDUQAAAAAAAAAAAAAA", "_RLZwnxXf_8AAAAAAAAAAAAAAAAAAAAA", "kPpKYsTgAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(Cursor::parse(refused), None, "{refused}");
        }
        // The earliest time PostgreSQL holds is still a cursor.
        let earliest = Cursor::parse("_RLZwnxXgAAAAAAAAAAAAAAAAAAAAAAA").expect("4714-11-24 BC is in range");
        assert_eq!(earliest.attempted_at.timestamp_micros(), POSTGRES_EARLIEST_MICROS);
        assert_eq!(earliest.attempted_at.to_rfc3339(), "-4713-11-24T00:00:00+00:00", "astronomical year -4713 is 4714 BC");
    }
}
