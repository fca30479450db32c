//! Role names and permission strings.

use serde::{Deserialize, Serialize};

/// A role name: 2–50 of lower-case latin letters, digits, `_`, `-`, `.`, starting
/// with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if !(2..=50).contains(&name.len()) {
            return Err("must be 2 to 50 characters".into());
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase())
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
        {
            return Err("must start with a lower-case letter and contain only a-z, 0-9, '_', '-', '.'".into());
        }
        Ok(Self(name.to_owned()))
    }
}

/// A permission: dot-separated lower-case segments, for example `films.watch.subscription`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Permission(String);

impl Permission {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let permission = raw.trim();
        let valid_segment = |s: &str| {
            !s.is_empty()
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if permission.len() > 100 || !permission.split('.').all(valid_segment) {
            return Err(format!(
                "{permission:?} is not a permission such as films.watch.subscription (dot-separated a-z, 0-9, '_', at most 100 characters)"
            ));
        }
        Ok(Self(permission.to_owned()))
    }
}

macro_rules! string_impls {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_impls!(RoleName, Permission);

/// The rules of [`RoleName::parse`] as a JSON Schema (surrounding spaces are trimmed).
pub const ROLE_NAME_PATTERN: &str = r"^[a-z][a-z0-9_.\-]{1,49}$";
/// The rules of [`Permission::parse`] as a JSON Schema, with a length of at most 100.
pub const PERMISSION_PATTERN: &str = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$";

macro_rules! string_schema {
    ($name:ident, $pattern:expr, $max:expr, $example:expr, $description:expr) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some($pattern))
                    .max_length(Some($max))
                    .description(Some($description))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}
string_schema!(RoleName, ROLE_NAME_PATTERN, 50, "subscriber", "2 to 50 of a-z, 0-9, `_`, `-`, `.`, starting with a letter.");
string_schema!(
    Permission,
    PERMISSION_PATTERN,
    100,
    "films.watch.subscription",
    "Dot-separated segments of a-z, 0-9 and `_`, each starting with a letter; at most 100 characters."
);

/// A permission set as stored: validated, sorted, without duplicates, at most 100.
pub fn permission_set(permissions: Vec<Permission>) -> Result<Vec<String>, String> {
    if permissions.len() > 100 {
        return Err("at most 100 permissions".into());
    }
    let mut set: Vec<String> = permissions.into_iter().map(String::from).collect();
    set.sort();
    set.dedup();
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_and_permissions_follow_their_rules() {
        assert!(RoleName::parse("moderator").is_ok());
        assert!(RoleName::parse("kids-profile.v2").is_ok());
        for bad in ["a", "Admin", "1role", "role name", &"r".repeat(51)] {
            assert!(RoleName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Permission::parse("films.watch.subscription").is_ok());
        for bad in ["", "films..watch", "Films.watch", "films.watch.", "films watch", ".films"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn permission_sets_are_sorted_and_deduplicated() {
        let set =
            permission_set(vec![Permission::parse("b.x").unwrap(), Permission::parse("a.y").unwrap(), Permission::parse("b.x").unwrap()]).unwrap();
        assert_eq!(set, ["a.y", "b.x"]);
    }
}
