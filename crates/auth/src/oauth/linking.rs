//! The linking rules: which account a social identity signs in to, when an identity
//! may be linked or unlinked. Each decision and its writes run in one transaction.
//!
//! - An identity already linked signs in to its account.
//! - Otherwise, an email the provider *verifies* that belongs to an account whose
//!   address was itself proven by a provider links to it. Nothing else does: anyone can
//!   put someone else's address on a social account, or sign up with it and a password,
//!   and linking by it would hand the address's owner's sign-in to them (or theirs to
//!   the owner's).
//! - Otherwise a new account (no password) is created with the provider's email,
//!   proven if the provider verifies it.
//! - A verified identity of the account's own address proves it, when it is linked or
//!   signs in.
//! - An account keeps at least one way to sign in: a password or an identity that can
//!   still sign in (its provider enabled, and its rows looked up).

use axum::http::StatusCode;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Identity, Provider};
use crate::{
    error::{ApiError, Result},
    store::{
        social::{self, InsertConflict, SocialAccount},
        users::{self, NewUser, Taken},
    },
};

/// How a sign-in found its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// The identity was linked already.
    Linked(Uuid),
    /// Linked now to the account with the provider's verified email.
    LinkedByEmail(Uuid),
    /// A new account was created for the identity.
    Created(Uuid),
}

impl SignIn {
    pub fn user_id(self) -> Uuid {
        match self {
            Self::Linked(id) | Self::LinkedByEmail(id) | Self::Created(id) => id,
        }
    }
}

enum Attempt {
    Done(SignIn),
    /// A concurrent sign-in of the same person wrote first; try again.
    Raced,
}

pub async fn sign_in(db: &PgPool, identity: &Identity) -> Result<SignIn> {
    for _ in 0..2 {
        if let Attempt::Done(outcome) = try_sign_in(db, identity).await? {
            return Ok(outcome);
        }
    }
    Err(anyhow::anyhow!("social sign-in kept racing with another").into())
}

async fn try_sign_in(db: &PgPool, identity: &Identity) -> Result<Attempt> {
    let mut tx = db.begin().await?;
    if let Some(user_id) = social::owner_for_update(&mut tx, identity.provider, &identity.subject).await? {
        social::touch(&mut *tx, identity, true).await?;
        confirm_if_verified(&mut tx, user_id, identity).await?;
        tx.commit().await?;
        return Ok(Attempt::Done(SignIn::Linked(user_id)));
    }
    let Some(email) = &identity.email else { return Err(email_required()) };
    if let Some((holder, proven)) = users::email_holder(&mut *tx, email).await? {
        if !identity.email_verified || !proven {
            return Err(unproven_email_taken());
        }
        return match social::insert(&mut tx, holder, identity, true).await? {
            Ok(_) => {
                tx.commit().await?;
                Ok(Attempt::Done(SignIn::LinkedByEmail(holder)))
            }
            Err(InsertConflict::IdentityTaken) => Ok(Attempt::Raced),
            Err(InsertConflict::ProviderTaken) => Err(ApiError::Conflict {
                code: "provider_already_linked",
                detail: "The account with this email is linked to another account of this provider; sign in with that one.",
            }),
        };
    }
    let new = NewUser {
        email: email.clone(),
        email_verified: identity.email_verified,
        login: None,
        password_hash: None,
        birth_date: identity.birth_date,
        country: None,
        region: None,
    };
    let user_id = match users::insert(&mut tx, new).await? {
        Ok(id) => id,
        // Not there when looked up above: a concurrent sign-in of the same person has
        // created the account since (tests/api/social/flows.rs,
        // `a_first_sign_in_that_loses_the_race_to_create_the_account_signs_in_to_the_winners`).
        Err(Taken::Email) => return Ok(Attempt::Raced),
        Err(taken @ Taken::Login) => return Err(taken.into()),
    };
    match social::insert(&mut tx, user_id, identity, true).await? {
        Ok(_) => {
            tx.commit().await?;
            Ok(Attempt::Done(SignIn::Created(user_id)))
        }
        Err(_) => Ok(Attempt::Raced),
    }
}

/// Links an identity to a signed-in user's account; linking it again is a no-op.
pub async fn link(db: &PgPool, user_id: Uuid, identity: &Identity) -> Result<SocialAccount> {
    let mut tx = db.begin().await?;
    let account = match social::owner_for_update(&mut tx, identity.provider, &identity.subject).await? {
        Some(owner) if owner == user_id => social::touch(&mut *tx, identity, false).await?,
        Some(_) => return Err(identity_taken()),
        None => match social::insert(&mut tx, user_id, identity, false).await? {
            Ok(account) => account,
            Err(InsertConflict::IdentityTaken) => return Err(identity_taken()),
            Err(InsertConflict::ProviderTaken) => {
                return Err(ApiError::Conflict {
                    code: "provider_already_linked",
                    detail: "Another account of this provider is linked to yours; unlink it first.",
                });
            }
        },
    };
    confirm_if_verified(&mut tx, user_id, identity).await?;
    tx.commit().await?;
    Ok(account)
}

/// A provider's verified email proves the account's address when it is that address.
async fn confirm_if_verified(tx: &mut sqlx::PgConnection, user_id: Uuid, identity: &Identity) -> Result<()> {
    match &identity.email {
        Some(email) if identity.email_verified => users::confirm_email(tx, user_id, email).await,
        _ => Ok(()),
    }
}

/// Unlinks the caller's identity of a provider, unless the account would be left
/// without a way to sign in: no password, and no other identity that `signs_in` (one of
/// a disabled provider, or one Auth no longer looks up, is not a way in).
pub async fn unlink(db: &PgPool, user_id: Uuid, provider: Provider, signs_in: impl Fn(Provider) -> bool) -> Result<()> {
    let mut tx = db.begin().await?;
    // The account row stays locked until commit: two concurrent unlinks of the last
    // two identities cannot both see "another one remains".
    let has_password = social::has_password_for_update(&mut tx, user_id).await?.ok_or_else(ApiError::invalid_token)?;
    let linked = social::list(&mut *tx, user_id).await?;
    if !linked.iter().any(|a| a.provider == provider) {
        return Err(social::not_linked());
    }
    let another_way_in = linked.iter().any(|a| a.provider != provider && signs_in(a.provider));
    if !has_password && !another_way_in {
        return Err(ApiError::Conflict {
            code: "last_sign_in_method",
            detail: "This is your only way to sign in. Set a password or link another account first.",
        });
    }
    social::delete(&mut *tx, user_id, provider).await?;
    tx.commit().await?;
    Ok(())
}

fn identity_taken() -> ApiError {
    ApiError::Conflict { code: "social_account_taken", detail: "This social account is linked to another user." }
}

fn email_required() -> ApiError {
    ApiError::Refused {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "provider_email_required",
        detail: "The provider shared no email, and a new account needs one. Allow access to your email at the provider, or sign up with a password.",
    }
}

/// The email belongs to an account, and either the provider does not vouch for the
/// address or no provider has vouched for it on that account.
fn unproven_email_taken() -> ApiError {
    ApiError::Conflict {
        code: "email_taken",
        detail: "An account with this email exists, and its owner has not proven the address through a provider yet. If it is yours, sign in to it and link the provider from your profile.",
    }
}
