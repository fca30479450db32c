//! What each viewer may see and watch.
//!
//! Age: films above the viewer's age class are left out of lists and search, and
//! refused on detail and stream: 403 to a signed-in viewer, 401 (sign in) to an
//! anonymous one. Anonymous viewers and users whose birth date is
//! unknown may see up to 16+; a user sees up to the class in their token; admins see
//! everything. Tiers: `free` films stream for everyone; `subscription` films need the
//! `subscriber` (or `admin`) role. A tier or age class not listed here is refused to
//! everyone (fail closed), whatever the database's constraints admit.

use auth_client::Viewer;

use crate::error::ApiError;

/// The default for viewers whose age is unknown.
pub const UNKNOWN_AGE_CLASS: u8 = 16;
pub const ADULT: u8 = 18;

/// The highest age class the viewer may see.
pub fn max_age_class(viewer: &Viewer) -> u8 {
    match viewer {
        Viewer::Anonymous => UNKNOWN_AGE_CLASS,
        Viewer::User(user) if user.has_role("admin") => ADULT,
        Viewer::User(user) => user.age_class.unwrap_or(UNKNOWN_AGE_CLASS),
    }
}

/// A film's access tier. The database holds it as text; a value not listed here is
/// refused ([`Tier::parse`]), never taken for `free`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Free,
    Subscription,
}

impl Tier {
    /// The tier stored as `stored`; an unknown one is an error (the request fails, and
    /// the film is served to no one), so a tier added to the data before the code
    /// never streams as free.
    pub fn parse(stored: &str) -> Result<Self, ApiError> {
        match stored {
            "free" => Ok(Self::Free),
            "subscription" => Ok(Self::Subscription),
            other => Err(ApiError::Internal(anyhow::anyhow!("a film has the unknown access tier {other:?}"))),
        }
    }
}

/// The age classes a film may have.
pub const AGE_CLASSES: [u8; 5] = [0, 6, 12, 16, 18];

/// A film's age class as stored (`smallint`): one of [`AGE_CLASSES`], else an error
/// (served to no one), never truncated to another class.
pub fn film_age_class(stored: i16) -> Result<u8, ApiError> {
    u8::try_from(stored)
        .ok()
        .filter(|class| AGE_CLASSES.contains(class))
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a film has the unknown age class {stored}")))
}

/// Whether the viewer may see a film of this stored age class. Above it, an anonymous
/// viewer is asked to sign in (401 `sign_in_required`: signed in with an old enough
/// birth date they may see it), a signed-in one is refused (403 `age_restricted`).
pub fn check_age(viewer: &Viewer, film_age_class: i16) -> Result<(), ApiError> {
    let class = self::film_age_class(film_age_class)?;
    if class <= max_age_class(viewer) {
        return Ok(());
    }
    match viewer {
        Viewer::Anonymous => Err(ApiError::SignInRequired("Sign in to see this film: it is above the age class of viewers not signed in.")),
        Viewer::User(_) => Err(ApiError::Forbidden { code: "age_restricted", detail: "This film is above your age class." }),
    }
}

/// Whether the viewer may stream a film: age first, then the tier.
pub fn check_stream(viewer: &Viewer, film_age_class: i16, tier: &str) -> Result<(), ApiError> {
    check_age(viewer, film_age_class)?;
    if Tier::parse(tier)? == Tier::Free {
        return Ok(());
    }
    match viewer {
        Viewer::Anonymous => Err(ApiError::SignInRequired("Sign in with a subscription to watch this film.")),
        Viewer::User(user) if user.has_role("subscriber") || user.has_role("admin") => Ok(()),
        Viewer::User(_) => Err(ApiError::Forbidden { code: "subscription_required", detail: "This film needs a subscription." }),
    }
}

#[cfg(test)]
mod tests {
    use auth_client::User;
    use uuid::Uuid;

    use super::*;

    fn user(roles: &[&str], age: Option<u8>) -> Viewer {
        Viewer::User(User {
            id: Uuid::nil(),
            session_id: Uuid::nil(),
            token_id: Uuid::nil(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            age_class: age,
        })
    }

    #[test]
    fn age_limits_by_viewer() {
        assert_eq!(max_age_class(&Viewer::Anonymous), 16);
        assert_eq!(max_age_class(&user(&["user"], None)), 16);
        assert_eq!(max_age_class(&user(&["user"], Some(12))), 12);
        assert_eq!(max_age_class(&user(&["user"], Some(18))), 18);
        assert_eq!(max_age_class(&user(&["admin", "user"], Some(6))), 18);
    }

    #[test]
    fn streaming_rules() {
        assert!(check_stream(&Viewer::Anonymous, 12, "free").is_ok());
        assert!(matches!(check_stream(&Viewer::Anonymous, 12, "subscription"), Err(ApiError::SignInRequired(_))));
        // Above the anonymous class: signing in may allow it, so 401, not 403.
        assert!(matches!(check_stream(&Viewer::Anonymous, 18, "free"), Err(ApiError::SignInRequired(_))));
        assert!(matches!(check_stream(&Viewer::Anonymous, 18, "subscription"), Err(ApiError::SignInRequired(_))));
        assert!(matches!(check_age(&Viewer::Anonymous, 18), Err(ApiError::SignInRequired(_))));
        assert!(check_age(&Viewer::Anonymous, 16).is_ok());
        assert!(matches!(check_age(&user(&["user"], None), 18), Err(ApiError::Forbidden { code: "age_restricted", .. })));
        assert!(matches!(
            check_stream(&user(&["user"], Some(18)), 0, "subscription"),
            Err(ApiError::Forbidden { code: "subscription_required", .. })
        ));
        assert!(check_stream(&user(&["subscriber", "user"], Some(18)), 18, "subscription").is_ok());
        assert!(matches!(
            check_stream(&user(&["subscriber", "user"], Some(12)), 16, "subscription"),
            Err(ApiError::Forbidden { code: "age_restricted", .. })
        ));
        assert!(check_stream(&user(&["admin"], None), 18, "subscription").is_ok());
    }

    /// Safe before only through the database's CHECK constraints: a tier other than
    /// `subscription` streamed as free, and an age class was cast to `u8` (300 became
    /// 44). Unknown values are refused to everyone, admins included.
    #[test]
    fn unknown_tiers_and_age_classes_are_refused_not_taken_as_free() {
        let viewers = [Viewer::Anonymous, user(&["user"], Some(18)), user(&["subscriber"], Some(18)), user(&["admin"], None)];
        for viewer in &viewers {
            for tier in ["premium", "Free", "", "free "] {
                assert!(matches!(check_stream(viewer, 0, tier), Err(ApiError::Internal(_))), "{tier:?} for {viewer:?}");
            }
            for class in [-1, 1, 17, 21, 256, 262, i16::MAX] {
                assert!(matches!(check_age(viewer, class), Err(ApiError::Internal(_))), "{class} for {viewer:?}");
                assert!(matches!(check_stream(viewer, class, "free"), Err(ApiError::Internal(_))), "{class} for {viewer:?}");
            }
        }
        assert_eq!(AGE_CLASSES.map(|class| film_age_class(i16::from(class)).unwrap()), AGE_CLASSES);
        assert_eq!(Tier::parse("free").unwrap(), Tier::Free);
        assert_eq!(Tier::parse("subscription").unwrap(), Tier::Subscription);
    }
}
