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
    domain::{Email, NewPassword, PasswordHasher},
    startup::connect_and_migrate,
    store::users::{self, NewUser},
};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Promoted,
    AlreadyAdmin,
}

pub async fn run(settings: &Settings, email: &str, stdin: &mut dyn BufRead) -> anyhow::Result<Outcome> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let db = connect_and_migrate(settings).await?;
    if let Some(user) = users::find_by_email(&db, &email).await? {
        if user.roles.iter().any(|r| r == "admin") {
            return Ok(Outcome::AlreadyAdmin);
        }
        let password = read_password(stdin)?;
        let hash = users::password_hash(&db, user.id).await?;
        if !PasswordHasher::new(1)?.verify(&password, hash.as_deref()).await? {
            bail!(
                "{email} already has an account, and the password given is not its password: only an account you can sign in to is promoted (sign-up does not verify addresses)"
            );
        }
        users::grant_built_in_role(&db, user.id, "admin").await?;
        return Ok(Outcome::Promoted);
    }
    let password = read_password(stdin)?;
    let password = NewPassword::parse(&password, &email).map_err(|m| anyhow::anyhow!("the password {m}"))?;
    let hash = PasswordHasher::new(1)?.hash(password.secret()).await?;
    let mut tx = db.begin().await?;
    let new = NewUser { email, email_verified: false, login: None, password_hash: Some(hash), birth_date: None, country: None, region: None };
    let id = users::insert(&mut tx, new).await.map_err(|e| anyhow::anyhow!("creating the account: {e}"))?;
    users::grant_built_in_role(&mut *tx, id, "admin").await?;
    tx.commit().await?;
    Ok(Outcome::Created)
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
