//! SQL for accounts and their roles.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    domain::{BirthDate, Country, Email, Login, Region, password::Stored},
    error::{ApiError, Result, ResultExt},
};

/// An account as clients see it: never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct User {
    pub id: Uuid,
    #[schema(example = "viewer@example.com")]
    pub email: String,
    pub login: Option<String>,
    pub birth_date: Option<NaiveDate>,
    #[schema(example = "RU")]
    pub country: Option<String>,
    pub region: Option<String>,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewUser {
    pub email: Email,
    /// A provider vouched for the address ([`confirm_email`]).
    pub email_verified: bool,
    pub login: Option<Login>,
    pub password_hash: Option<String>,
    pub birth_date: Option<BirthDate>,
    pub country: Option<Country>,
    pub region: Option<Region>,
}

/// What sign-in needs to know about an account.
#[derive(sqlx::FromRow)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: Option<String>,
    /// The hash may predate normalised passwords (`users.password_unnormalised`).
    pub password_unnormalised: bool,
}

impl Credentials {
    pub fn stored(&self) -> Stored {
        if self.password_unnormalised { Stored::MaybeUnnormalised } else { Stored::Normalised }
    }
}

/// A profile change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Default)]
pub struct ProfileChange {
    pub email: Option<Email>,
    pub login: Option<Option<Login>>,
    pub birth_date: Option<Option<BirthDate>>,
    pub country: Option<Option<Country>>,
    pub region: Option<Option<Region>>,
}

/// `SELECT` of a [`User`] with its role names, followed by the given clause.
macro_rules! select_user {
    ($clause:literal) => {
        concat!(
            "SELECT u.id, u.email, u.login, u.birth_date, u.country, u.region, u.created_at, u.updated_at, ",
            role_names!("u.id"),
            " AS roles FROM users u ",
            $clause
        )
    };
}

/// Another account holds the value: what [`insert`] returns for it, to be matched by
/// callers that expect it (a concurrent social sign-in of the same person,
/// `oauth::linking`) and turned into the API's 409 by the others (`?`, through `From`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Email,
    Login,
}

/// The one place that says how a taken email or login is answered.
impl From<Taken> for ApiError {
    fn from(taken: Taken) -> Self {
        match taken {
            Taken::Email => ApiError::Conflict { code: "email_taken", detail: "An account with this email already exists." },
            Taken::Login => ApiError::Conflict { code: "login_taken", detail: "This login is already taken." },
        }
    }
}

/// Emails and logins are unique through their lookup tables, written by a trigger on
/// `users` (migrations/20261125000020_partitioning.sql, docs/partitioning.md).
const UNIQUE_ACCOUNT: [(&str, Taken); 2] = [("user_emails_pkey", Taken::Email), ("user_logins_pkey", Taken::Login)];

/// The value another account holds, when that is why `e` was refused.
fn taken(e: &sqlx::Error) -> Option<Taken> {
    let constraint = e.as_database_error()?.constraint()?;
    UNIQUE_ACCOUNT.iter().find(|(name, _)| *name == constraint).map(|(_, taken)| *taken)
}

/// `e` as the API answers it: 409 for a value another account holds.
fn on_unique_account(e: sqlx::Error) -> ApiError {
    taken(&e).map_or_else(|| e.into(), ApiError::from)
}

// The lookups of an account. Each reads one partition of `users` (and one of a lookup
// table): `users` is split by a hash of the id, so a lookup by email or login goes
// through the lookup table that maps it to the id, and `users` is then pruned while the
// statement runs (docs/partitioning.md). Public so tests can check the plans.

/// A [`User`] by id: `$1` the id.
pub const SELECT_BY_ID: &str = select_user!("WHERE u.id = $1");
/// A [`User`] by email: `$1` the normalised email.
pub const SELECT_BY_EMAIL: &str = select_user!("WHERE u.id = (SELECT user_id FROM user_emails WHERE email = $1)");
/// Sign-in [`Credentials`] by email: `$1` the normalised email.
pub const CREDENTIALS_BY_EMAIL: &str =
    "SELECT id, password_hash, password_unnormalised FROM users WHERE id = (SELECT user_id FROM user_emails WHERE email = $1)";
/// Sign-in [`Credentials`] by login, whatever its case: `$1` the login.
pub const CREDENTIALS_BY_LOGIN: &str =
    "SELECT id, password_hash, password_unnormalised FROM users WHERE id = (SELECT user_id FROM user_logins WHERE login = lower($1))";

/// Creates the account with the built-in `user` role, in the caller's transaction; or
/// says which of its values another account holds (an outer `?` then answers 409).
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn insert(tx: &mut sqlx::PgConnection, new: NewUser) -> Result<Result<Uuid, Taken>> {
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, email_verified, login, password_hash, birth_date, country, region)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(new.email.as_ref())
    .bind(new.email_verified)
    .bind(new.login.as_ref().map(AsRef::as_ref))
    .bind(new.password_hash)
    .bind(new.birth_date.map(NaiveDate::from))
    .bind(new.country.as_ref().map(AsRef::as_ref))
    .bind(new.region.as_ref().map(AsRef::as_ref))
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        return match taken(&e) {
            Some(taken) => Ok(Err(taken)),
            None => Err(e.into()),
        };
    }
    grant_built_in_role(&mut *tx, id, "user").await?;
    Ok(Ok(id))
}

/// What granting a role did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Granted,
    AlreadyHeld,
    NoSuchRole,
    /// The user holds [`MAX_ROLES_PER_USER`] roles already.
    TooManyRoles,
}

/// Roles one user may hold at most, granted by an admin. Every role goes into the
/// access token, which both services accept up to 4,096 characters: 32 names of 50
/// characters make a token of about 2,900 (`tokens::access`'s test), and more would
/// make tokens that Auth issues and then refuses.
pub const MAX_ROLES_PER_USER: i64 = 32;

/// [`grant_role`], unless the user already holds [`MAX_ROLES_PER_USER`] other roles.
/// The account's row is locked first, so two grants at once cannot both pass the count.
pub async fn grant_role_within_limit(db: &PgPool, user_id: Uuid, role: &str) -> Result<Option<Grant>> {
    let mut tx = db.begin().await?;
    let exists = sqlx::query_scalar::<_, i32>("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE").bind(user_id).fetch_optional(&mut *tx).await?;
    if exists.is_none() {
        return Ok(None);
    }
    let (held, has_it, exists): (i64, bool, bool) = sqlx::query_as(
        "SELECT count(*), COALESCE(bool_or(r.name = $2), false), EXISTS (SELECT 1 FROM roles WHERE name = $2)
           FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1",
    )
    .bind(user_id)
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    // A role that does not exist is that, whatever the count (`grant_role` decides it
    // again, under its lock on the role).
    if !exists {
        return Ok(Some(Grant::NoSuchRole));
    }
    if held >= MAX_ROLES_PER_USER && !has_it {
        return Ok(Some(Grant::TooManyRoles));
    }
    let grant = grant_role(&mut *tx, user_id, role).await?;
    tx.commit().await?;
    Ok(Some(grant))
}

/// Grants a role by name, in one statement: the role is looked up and key-share locked
/// where it is granted, so a deletion that commits first leaves `NoSuchRole` (it used
/// to leave nothing granted and look like `AlreadyHeld`), and one that comes later
/// waits for the grant and then takes it away with the role.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn grant_role(db: impl PgExecutor<'_>, user_id: Uuid, role: &str) -> Result<Grant> {
    let (found, granted): (bool, bool) = sqlx::query_as(
        "WITH role AS (SELECT id FROM roles WHERE name = $2 FOR KEY SHARE),
              granted AS (INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM role ON CONFLICT DO NOTHING RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM role), EXISTS (SELECT 1 FROM granted)",
    )
    .bind(user_id)
    .bind(role)
    .fetch_one(db)
    .await
    // The user deleted by a concurrent transaction after this one read it (the role's
    // lock rules the same out for the role; mapped all the same).
    .on_constraints(&[
        ("user_roles_role_id_fkey", || ApiError::field("role", "no role has this name")),
        ("user_roles_user_id_fkey", || ApiError::NotFound("No user with this id.")),
    ])?;
    Ok(match (found, granted) {
        (false, _) => Grant::NoSuchRole,
        (true, true) => Grant::Granted,
        (true, false) => Grant::AlreadyHeld,
    })
}

/// Grants a built-in role (`user`, `admin`), which a migration made and nothing deletes.
pub async fn grant_built_in_role(db: impl PgExecutor<'_>, user_id: Uuid, role: &str) -> Result<()> {
    match grant_role(db, user_id, role).await? {
        Grant::NoSuchRole => Err(anyhow::anyhow!("the built-in role {role:?} is missing").into()),
        Grant::Granted | Grant::AlreadyHeld | Grant::TooManyRoles => Ok(()),
    }
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<User>> {
    Ok(sqlx::query_as::<_, User>(SELECT_BY_ID).bind(id).fetch_optional(db).await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn find_by_email(db: impl PgExecutor<'_>, email: &Email) -> Result<Option<User>> {
    Ok(sqlx::query_as::<_, User>(SELECT_BY_EMAIL).bind(email.as_ref()).fetch_optional(db).await?)
}

/// Finds sign-in credentials by email or (case-insensitively) by login.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn credentials(db: &PgPool, identifier: &SignInIdentifier) -> Result<Option<Credentials>> {
    let query = match identifier {
        SignInIdentifier::Email(email) => sqlx::query_as(CREDENTIALS_BY_EMAIL).bind(email.as_ref().to_owned()),
        SignInIdentifier::Login(login) => sqlx::query_as(CREDENTIALS_BY_LOGIN).bind(login.as_ref().to_owned()),
    };
    Ok(query.fetch_optional(db).await?)
}

pub enum SignInIdentifier {
    Email(Email),
    Login(Login),
}

/// The account holding an email, and whether a provider proved the address is its
/// owner's (docs/oauth.md, "Linking rules").
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn email_holder(db: impl PgExecutor<'_>, email: &Email) -> Result<Option<(Uuid, bool)>> {
    Ok(sqlx::query_as("SELECT id, email_verified FROM users WHERE id = (SELECT user_id FROM user_emails WHERE email = $1)")
        .bind(email.as_ref())
        .fetch_optional(db)
        .await?)
}

/// Records that a provider proved the account's owner holds `email`, if that is still
/// the account's email.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn confirm_email(db: impl PgExecutor<'_>, id: Uuid, email: &Email) -> Result<()> {
    sqlx::query("UPDATE users SET email_verified = true WHERE id = $1 AND email = $2 AND NOT email_verified")
        .bind(id)
        .bind(email.as_ref())
        .execute(db)
        .await?;
    Ok(())
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn password_hash(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<(String, Stored)>> {
    let row: Option<(Option<String>, bool)> =
        sqlx::query_as("SELECT password_hash, password_unnormalised FROM users WHERE id = $1").bind(id).fetch_optional(db).await?;
    Ok(row.and_then(|(hash, unnormalised)| Some((hash?, if unnormalised { Stored::MaybeUnnormalised } else { Stored::Normalised }))))
}

/// Tells the hasher whether any account still holds a hash that may predate
/// normalised passwords. Asked once at start, for at most a second of the server's
/// time (`statement_timeout`, so that PostgreSQL stops the scan too): on a large table
/// where none remain the scan may take longer, and the hasher then keeps assuming some
/// do (every password not in NFC costs two runs: slower, never telling).
pub async fn note_unnormalised_hashes(db: &PgPool, hasher: &crate::domain::PasswordHasher) {
    let asked = async {
        let mut tx = db.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 1000").execute(&mut *tx).await?;
        let remain: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE password_unnormalised AND password_hash IS NOT NULL)")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(remain)
    };
    match asked.await {
        Ok(remain) => hasher.unnormalised_hashes_remain(remain),
        Err(e) => tracing::info!(error = %e, "could not tell within 1 s whether password hashes from before normalisation remain; assuming they do"),
    }
}

/// After a sign-in matched a hash that may predate normalised passwords: the hash is
/// replaced by `nfc_hash`, a hash of the password in NFC, when given (it matched the
/// password as sent), and marked normalised, unless the password changed meanwhile.
/// Not a change of the profile: `updated_at` stays.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn mark_password_normalised(db: impl PgExecutor<'_>, id: Uuid, checked: &str, nfc_hash: Option<&str>) -> Result<()> {
    sqlx::query("UPDATE users SET password_hash = COALESCE($3, password_hash), password_unnormalised = false WHERE id = $1 AND password_hash = $2")
        .bind(id)
        .bind(checked)
        .bind(nfc_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Sets the password hash of an account whose hash is still `checked`, the one the
/// caller's password was verified against (`None`: the account had no password);
/// `false` when another change came first.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn set_password_hash(db: impl PgExecutor<'_>, id: Uuid, checked: Option<&str>, hash: &str) -> Result<bool> {
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $3, password_unnormalised = false, updated_at = now()
          WHERE id = $1 AND password_hash IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(checked)
    .bind(hash)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() > 0)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn update_profile(db: &mut sqlx::PgConnection, id: Uuid, change: ProfileChange) -> Result<Option<User>> {
    fn set<T: AsRef<str>>(field: &Option<Option<T>>) -> (bool, Option<String>) {
        (field.is_some(), field.as_ref().and_then(|v| v.as_ref().map(|v| v.as_ref().to_owned())))
    }
    let (set_login, login) = set(&change.login);
    let (set_country, country) = set(&change.country);
    let (set_region, region) = set(&change.region);
    let set_birth = change.birth_date.is_some();
    let birth: Option<NaiveDate> = change.birth_date.flatten().map(NaiveDate::from);
    let updated = sqlx::query(
        "UPDATE users SET
            email = COALESCE($2, email),
            -- A new address is not proven by a provider's proof of the old one.
            email_verified = email_verified AND ($2 IS NULL OR $2 = email),
            login = CASE WHEN $3 THEN $4 ELSE login END,
            birth_date = CASE WHEN $5 THEN $6 ELSE birth_date END,
            country = CASE WHEN $7 THEN $8 ELSE country END,
            region = CASE WHEN $9 THEN $10 ELSE region END,
            updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(change.email.as_ref().map(AsRef::as_ref))
    .bind(set_login)
    .bind(login)
    .bind(set_birth)
    .bind(birth)
    .bind(set_country)
    .bind(country)
    .bind(set_region)
    .bind(region)
    .execute(&mut *db)
    .await
    .map_err(on_unique_account)?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    get(db, id).await
}

/// Current role names of a user, sorted.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn role_names(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1 ORDER BY r.name")
        .bind(user_id)
        .fetch_all(db)
        .await?)
}
