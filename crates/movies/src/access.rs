//! What each viewer may see and watch.
//!
//! Age: films above the viewer's age class are left out of lists and search, and
//! refused (403) on detail and stream. Anonymous viewers and users whose birth date is
//! unknown may see up to 16+; a user sees up to the class in their token; admins see
//! everything. Tiers: `free` films stream for everyone; `subscription` films need the
//! `subscriber` (or `admin`) role.

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

pub fn check_age(viewer: &Viewer, film_age_class: u8) -> Result<(), ApiError> {
    if film_age_class > max_age_class(viewer) {
        return Err(ApiError::Forbidden { code: "age_restricted", detail: "This film is above your age class." });
    }
    Ok(())
}

/// Whether the viewer may stream a film: age first, then the tier.
pub fn check_stream(viewer: &Viewer, film_age_class: u8, tier: &str) -> Result<(), ApiError> {
    check_age(viewer, film_age_class)?;
    if tier != "subscription" {
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
        assert!(matches!(check_stream(&Viewer::Anonymous, 18, "free"), Err(ApiError::Forbidden { code: "age_restricted", .. })));
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
}
