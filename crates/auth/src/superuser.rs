//! `auth create-superuser`: creates an admin, or promotes an existing account.
//!
//! The password is never taken from the command line (it would land in shell history
//! and `ps`): it is read from standard input when that is not a terminal, or prompted
//! for without echo when it is. Running the command twice is harmless.
//!
//! An existing account is promoted only with its own password: sign-up verifies no
//! email address, so whoever registered the address first (perhaps not the operator)
//! holds that account, and promoting it blindly would make them an admin.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::{
    config::Settings,
    domain::{Email, NewPassword, PasswordHasher, password::Stored},
    error::ApiError,
    startup::connect_existing,
    store::users::{self, NewUser},
};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Promoted,
    AlreadyAdmin,
}

/// Creates or promotes the admin of `email`; returns what it did and the address as
/// stored (trimmed, lower-cased: what the operator signs in with).
pub async fn run(settings: &Settings, email: &str, stdin: &mut dyn BufRead) -> anyhow::Result<(Outcome, Email)> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let db = connect_existing(settings).await?;
    let mut password = None;
    // Twice at most: a second run creating the same account at the same moment makes
    // this one's insert conflict, and then the account is there to find.
    for _ in 0..2 {
        if let Some(user) = users::find_by_email(&db, &email).await? {
            if user.roles.iter().any(|r| r == "admin") {
                return Ok((Outcome::AlreadyAdmin, email));
            }
            let password = given(&mut password, stdin)?;
            let (hash, stored) = users::password_hash(&db, user.id).await?.unzip();
            let stored = stored.unwrap_or(Stored::Normalised);
            if !PasswordHasher::new(1)?.verify_stored(password, hash.as_deref(), stored).await?.found() {
                bail!(
                    "{email} already has an account, and the password given is not its password: only an account you can sign in to is promoted (sign-up does not verify addresses)"
                );
            }
            users::grant_built_in_role(&db, user.id, "admin").await?;
            return Ok((Outcome::Promoted, email));
        }
        let password = NewPassword::parse(given(&mut password, stdin)?, &email).map_err(|m| anyhow::anyhow!("the password {m}"))?;
        let hash = PasswordHasher::new(1)?.hash(password.secret()).await?;
        let mut tx = db.begin().await?;
        let new = NewUser {
            email: email.clone(),
            email_verified: false,
            login: None,
            password_hash: Some(hash),
            birth_date: None,
            country: None,
            region: None,
        };
        let id = match users::insert(&mut tx, new).await {
            Ok(Ok(id)) => id,
            // Created since it was looked up (or a concurrent change got in the way):
            // the next round finds it.
            Ok(Err(_)) | Err(ApiError::Conflict { .. }) => continue,
            Err(e) => bail!("creating the account: {e}"),
        };
        users::grant_built_in_role(&mut *tx, id, "admin").await?;
        tx.commit().await?;
        return Ok((Outcome::Created, email));
    }
    bail!("{email}: the account was created and removed again while this ran; run the command again")
}

/// The password, read on first use only: a second attempt must not wait for input
/// that was consumed by the first.
fn given<'a>(password: &'a mut Option<SecretString>, stdin: &mut dyn BufRead) -> anyhow::Result<&'a SecretString> {
    if password.is_none() {
        *password = Some(read_password(stdin)?);
    }
    Ok(password.as_ref().expect("just read"))
}

fn read_password(stdin: &mut dyn BufRead) -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let second = rpassword::prompt_password("Password (again): ").context("reading the password")?;
        if first != second {
            bail!("the passwords differ");
        }
        return Ok(first.into());
    }
    let mut line = String::new();
    stdin.read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("no password on standard input (pipe it in, or run in a terminal to be prompted)");
    }
    Ok(password.to_owned().into())
}
