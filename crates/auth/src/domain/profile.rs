//! Account profile fields: email, login, birth date, country and region.

use std::fmt;

use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

macro_rules! string_newtype {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// An email address, trimmed and lower-cased. The check is deliberately shallow
/// (one `@`, a dotted domain, no spaces, RFC 5321 length): only a message that
/// arrives proves an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let invalid = || Err("must be an email address such as name@example.com".to_owned());
        if email.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let Some((local, domain)) = email.split_once('@') else { return invalid() };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain_ok {
            return invalid();
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid();
        }
        Ok(Self(email))
    }
}

/// A login name: 3–32 of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
/// It never contains `@`, so a sign-in identifier is unambiguously an email or a login.
/// Unique regardless of case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Login(String);
string_newtype!(Login);

impl Login {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let login = raw.trim();
        let len = login.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters".into());
        }
        if !login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err("may contain only latin letters, digits, '.', '_' and '-'".into());
        }
        if !login.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("must start with a letter or a digit".into());
        }
        Ok(Self(login.to_owned()))
    }
}

/// ISO 3166-1 alpha-2 country code, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country(String);
string_newtype!(Country);

impl Country {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() != 2 || !code.chars().all(|c| c.is_ascii_uppercase()) {
            return Err("must be an ISO 3166-1 alpha-2 code such as RU".into());
        }
        Ok(Self(code))
    }
}

/// A region (subdivision) name or ISO 3166-2 code, 1–100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);
string_newtype!(Region);

impl Region {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let region = raw.trim();
        let len = region.chars().count();
        if !(1..=100).contains(&len) {
            return Err("must be 1 to 100 characters".into());
        }
        if region.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(region.to_owned()))
    }
}

/// A birth date: not in the future and not before 1900.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NaiveDate", into = "NaiveDate")]
pub struct BirthDate(NaiveDate);

impl TryFrom<NaiveDate> for BirthDate {
    type Error = String;
    fn try_from(date: NaiveDate) -> Result<Self, Self::Error> {
        if date > Utc::now().date_naive() {
            return Err("must not be in the future".into());
        }
        if date.year() < 1900 {
            return Err("must not be before 1900".into());
        }
        Ok(Self(date))
    }
}

impl From<BirthDate> for NaiveDate {
    fn from(value: BirthDate) -> NaiveDate {
        value.0
    }
}

/// The Russian age classification (0+, 6+, 12+, 16+, 18+) a person of this birth date
/// may watch on `today`: the highest class not above their age.
pub fn age_class(birth: NaiveDate, today: NaiveDate) -> u8 {
    let age = today.years_since(birth).unwrap_or(0);
    [18, 16, 12, 6].into_iter().find(|&class| age >= u32::from(class)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_class_is_the_highest_class_not_above_the_age() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let today = d(2026, 11, 25);
        assert_eq!(age_class(d(2008, 11, 25), today), 18, "18 today");
        assert_eq!(age_class(d(2008, 11, 26), today), 16, "18 tomorrow");
        assert_eq!(age_class(d(2014, 1, 1), today), 12);
        assert_eq!(age_class(d(2019, 1, 1), today), 6);
        assert_eq!(age_class(d(2024, 1, 1), today), 0);
        assert_eq!(age_class(d(1950, 1, 1), today), 18);
    }

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Ann.Lee@Example.COM ").unwrap().as_ref(), "ann.lee@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in ["", "plain", "@example.com", "a@", "a@b", "a@@b.com", "a b@c.com", "a@.com", "a@b..com", "a@b.com."] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn logins_follow_the_rule() {
        assert!(Login::parse("ann_lee-1.x").is_ok());
        for bad in ["ab", "ann@lee", "_ann", "анна", &"a".repeat(33), "a b c"] {
            assert!(Login::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn country_codes_are_two_latin_letters() {
        assert_eq!(Country::parse("ru").unwrap().as_ref(), "RU");
        assert!(Country::parse("RUS").is_err());
        assert!(Country::parse("1A").is_err());
    }

    #[test]
    fn birth_dates_are_bounded() {
        assert!(BirthDate::try_from(NaiveDate::from_ymd_opt(1990, 5, 1).unwrap()).is_ok());
        assert!(BirthDate::try_from(NaiveDate::from_ymd_opt(1899, 12, 31).unwrap()).is_err());
        assert!(BirthDate::try_from(Utc::now().date_naive() + chrono::Days::new(1)).is_err());
    }
}
