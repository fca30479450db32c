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

/// An email address, trimmed, in Unicode NFC and lower-cased, its domain in ASCII
/// (Punycode, by UTS-46, so `ann@пример.рф` and `ann@xn--e1afmkfd.xn--p1ai` are one
/// address). The check is otherwise deliberately shallow (one `@`, a dotted domain of
/// valid DNS labels, RFC 5321 lengths, nothing invisible): only a message that arrives
/// proves an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    /// An address read back from the database, as it was stored: the rules above
    /// have grown stricter over time, and an account made before a rule keeps its
    /// address (it can still change it, to one the rules accept).
    pub fn stored(email: String) -> Self {
        Self(email)
    }

    /// A new address (sign-up, a change, an admin made by command): normalised, and
    /// held to every rule above.
    pub fn parse(raw: &str) -> Result<Self, String> {
        use unicode_normalization::UnicodeNormalization as _;
        let normal = Normalised::of(raw)?;
        let (local, domain) = (normal.local.as_str(), normal.unicode_domain.as_str());
        // Invisible characters would make distinct accounts of addresses that look the same.
        if normal.local.chars().chain(domain.chars()).any(|c| c.is_whitespace() || c.is_control() || is_invisible(c)) {
            return Err(INVALID.into());
        }
        // RFC 5322 makes `"ann"@example.com` the mailbox `ann@example.com`: a quoted
        // local part would make a second account of one mailbox. No mail provider
        // hands such addresses out.
        if local.contains(['"', '\\']) {
            return Err("must not quote its local part: write name@example.com".into());
        }
        // Compatibility forms (fullwidth `ｃ`, ligatures such as `ﬁ`, superscripts) look
        // like the plain letters, or nearly, yet make another address: `ｃarol@…` beside
        // `carol@…`. The domain needs no such rule: IDNA maps them (UTS #46). Refused
        // rather than folded, so a stored address is always the one typed.
        if !local.nfkc().eq(local.chars()) {
            return Err("must not use compatibility forms such as fullwidth letters or ligatures: write name@example.com".into());
        }
        // Letters of one script per part (UTS #39): a Cyrillic `о` among Latin letters
        // would make a second account that looks like the first. The domain's labels are
        // read as they show, from the stored ASCII form: typed in Punycode (`xn--…`)
        // they would pass as ASCII, and typed in fullwidth letters they are the plain
        // ones (UTS-46 maps them).
        let (shown_domain, _) = idna::domain_to_unicode(&normal.ascii_domain);
        use unicode_security::MixedScript as _;
        if !local.is_single_script() || !shown_domain.split('.').all(|label| label.is_single_script()) {
            return Err("must not mix letters of different scripts (such as Latin and Cyrillic) in one part".into());
        }
        // A whole-script confusable (UTS #39 §4): a part written wholly in letters of
        // another script that each look like a Latin one (Cyrillic `рор` beside `pop`).
        // One script, so the rule above lets it by.
        if looks_latin(local) || shown_domain.split('.').any(looks_latin) {
            return Err("must not be written in letters of another script that look like Latin ones (such as Cyrillic р and о)".into());
        }
        // A dot above an `i` or `j` does not show: they carry one already. Lower-casing
        // the Turkish `İ` gives `i` + U+0307, so `İnfo@…` would make a second account
        // that shows as `info@…`. Neither UTS #39 rule above sees it: one script, and
        // the combining dot is not ASCII.
        if has_invisible_dot(local) || has_invisible_dot(&shown_domain) {
            return Err("must not put a dot above i or j (as lower-casing İ does): write name@example.com".into());
        }
        Ok(normal.into_email())
    }

    /// An address to look an account up by (sign-in, the admin search): normalised as
    /// [`Email::parse`] normalises, without the rules for new addresses, which have
    /// grown stricter over time: an account made before a rule still signs in with the
    /// address it has. An address no rule would accept matches no account anyway.
    pub fn lookup(raw: &str) -> Result<Self, String> {
        Ok(Normalised::of(raw)?.into_email())
    }
}

const INVALID: &str = "must be an email address such as name@example.com";

/// Whether `part` holds letters outside ASCII, yet its UTS #39 skeleton (each character
/// replaced by the one it is confused with) is all ASCII: it would show as a Latin part.
/// `анна` keeps `н` (its prototype is `ʜ`), so real Cyrillic names pass.
fn looks_latin(part: &str) -> bool {
    !part.is_ascii() && unicode_security::skeleton(part).all(|c| c.is_ascii())
}

/// Whether `part` has a combining dot above (U+0307) on an `i` or `j`, where it cannot
/// be seen: read on the UTS #39 skeleton, which maps the dotless `ı` and `ȷ` (and other
/// look-alikes) to `i` and `j` and decomposes `į` or `ị` into `i` and a mark, and with
/// other marks between the letter and the dot skipped.
fn has_invisible_dot(part: &str) -> bool {
    let mut on_i_or_j = false;
    for c in unicode_security::skeleton(part) {
        if unicode_normalization::char::is_combining_mark(c) {
            if c == '\u{0307}' && on_i_or_j {
                return true;
            }
        } else {
            on_i_or_j = matches!(c, 'i' | 'j');
        }
    }
    false
}

/// An address trimmed, in NFC and lower-cased, split at its `@`, its domain in ASCII.
struct Normalised {
    local: String,
    /// As typed (normalised), for the rules on its letters.
    unicode_domain: String,
    /// By UTS-46 with STD3 rules: letters, digits and inner hyphens, labels of 1 to 63.
    ascii_domain: String,
}

impl Normalised {
    fn of(raw: &str) -> Result<Self, String> {
        use unicode_normalization::UnicodeNormalization as _;
        let email: String = raw.trim().nfc().collect::<String>().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        // No address holds a control character, and PostgreSQL's text cannot hold NUL:
        // a lookup with one would fail in the database, a 500, rather than match nothing.
        if email.chars().any(char::is_control) {
            return Err(INVALID.into());
        }
        let Some((local, domain)) = email.split_once('@') else { return Err(INVALID.into()) };
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(INVALID.into());
        }
        let Ok(ascii_domain) = idna::domain_to_ascii_strict(domain) else { return Err(INVALID.into()) };
        let top = ascii_domain.rsplit('.').next().unwrap_or_default();
        if !ascii_domain.contains('.') || top.is_empty() || top.chars().all(|c| c.is_ascii_digit()) {
            return Err(INVALID.into());
        }
        if local.len() + 1 + ascii_domain.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        Ok(Self { local: local.to_owned(), unicode_domain: domain.to_owned(), ascii_domain })
    }

    fn into_email(self) -> Email {
        Email(format!("{}@{}", self.local, self.ascii_domain))
    }
}

/// Characters that show nothing: format characters (zero-width spaces and joiners, the
/// soft hyphen, bidirectional controls, the BOM) and other default-ignorable ones.
///
/// Unicode's `Default_Ignorable_Code_Point` ranges, written out: `unicode-security`
/// (already a dependency) gives each character one UTS #39 identifier type, under which
/// some of these count as another type (the tag characters as `Deprecated`), so its
/// `Default_Ignorable` type alone would let them through.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
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
        if code.len() != 2 || COUNTRY_CODES.binary_search(&code.as_str()).is_err() {
            return Err("must be an assigned ISO 3166-1 alpha-2 code such as RU".into());
        }
        Ok(Self(code))
    }
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted (as of 2026; the
/// standard changes rarely: the last addition was SS, in 2011).
#[rustfmt::skip]
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB",
    "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY",
    "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX",
    "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK",
    "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
    "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR",
    "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA",
    "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE",
    "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
    "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG",
    "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF",
    "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY",
    "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW"
];

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
        if region.chars().any(|c| c.is_control() || is_invisible(c)) {
            return Err("must not contain control or invisible characters".into());
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
        // Domains that are no DNS name: a label over 63, leading or trailing hyphens, a
        // numeric top label.
        for bad in [&format!("x@{}.com", "a".repeat(76)), "x@-bad-.com", "x@example.123", "x@exa_mple.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Addresses that look alike or name one mailbox are one address; invisible
    /// characters are refused rather than kept as a different address.
    #[test]
    fn emails_are_normalised_so_one_mailbox_is_one_address() {
        let plain = |raw: &str| Email::parse(raw).unwrap().as_ref().to_owned();
        assert_eq!(plain("jos\u{00e9}@example.com"), plain("jose\u{0301}@example.com"), "NFC");
        assert_eq!(plain("ann@\u{043f}\u{0440}\u{0438}\u{043c}\u{0435}\u{0440}.\u{0440}\u{0444}"), "ann@xn--e1afmkfd.xn--p1ai");
        assert_eq!(plain("ann@xn--e1afmkfd.xn--p1ai"), "ann@xn--e1afmkfd.xn--p1ai");
        for invisible in ["bob\u{200b}@example.com", "bob\u{00ad}@example.com", "bob\u{202e}@example.com", "bob@exa\u{200d}mple.com"] {
            assert!(Email::parse(invisible).is_err(), "{invisible:?} accepted");
        }
        // Look-alikes: a Cyrillic letter among Latin ones, in the local part or a label.
        for look_alike in ["b\u{043e}b@example.com", "bob@\u{0435}xample.com", "bob@xn--bb-fmc.com"] {
            assert!(Email::parse(look_alike).unwrap_err().contains("scripts"), "{look_alike:?} accepted");
        }
        // A quoted local part is the unquoted mailbox (RFC 5322 §3.2.4): refused.
        for quoted in ["\"dave\"@example.com", "\"da\\ve\"@example.com"] {
            assert!(Email::parse(quoted).unwrap_err().contains("quote"), "{quoted:?} accepted");
        }
        // Compatibility forms of Latin letters: fullwidth, a ligature, a superscript.
        for compatibility in ["\u{ff43}arol@example.com", "\u{fb01}n@example.com", "x\u{00b2}@example.com"] {
            assert!(Email::parse(compatibility).unwrap_err().contains("compatibility"), "{compatibility:?} accepted");
        }
        assert_eq!(plain("carol@\u{ff45}xample.com"), "carol@example.com", "IDNA maps the domain's");
        // Whole-script look-alikes: every letter Cyrillic, and each like a Latin one;
        // in a domain, typed in Unicode or in Punycode.
        for look_alike in [
            "\u{0440}\u{043e}\u{0440}@example.com",
            "ann@\u{0440}\u{0430}\u{0441}\u{0435}.com",
            "ann@xn--80ak5af.com",
            "\u{0441}\u{0430}\u{0440}\u{0435}@example.com",
        ] {
            assert!(Email::parse(look_alike).unwrap_err().contains("look like Latin"), "{look_alike:?} accepted");
        }
        // A dot above i or j, which does not show: the Turkish capital İ lower-cased, in
        // the local part or the domain, and typed as i + U+0307.
        for dotted in [
            "\u{0130}nfo@example.com",
            "info@\u{0130}nfo.com",
            "ni\u{0307}k@example.com",
            "j\u{0307}o@example.com",
            // The dotless ı and ȷ with a dot above show as i and j.
            "\u{0131}\u{0307}nfo@example.com",
            "\u{0237}\u{0307}o@example.com",
            // Another mark between the letter and the dot (NFC puts a mark below first).
            "i\u{0323}\u{0307}nfo@example.com",
            "\u{012f}\u{0307}nfo@example.com",
        ] {
            assert!(Email::parse(dotted).unwrap_err().contains("dot above"), "{dotted:?} accepted");
        }
        assert!(Email::parse("\u{0117}ma@example.com").is_ok(), "a dot above another letter shows");
        // One script per part is fine, whichever it is: real Cyrillic names, and Latin
        // letters with accents.
        for fine in [
            "\u{0430}\u{043d}\u{043d}\u{0430}@example.com",
            "\u{0438}\u{0432}\u{0430}\u{043d}@\u{043f}\u{043e}\u{0447}\u{0442}\u{0430}.\u{0440}\u{0444}",
            "jos\u{00e9}@example.com",
        ] {
            assert!(Email::parse(fine).is_ok(), "{fine:?} refused");
        }
        assert!(Email::parse("ann.lee-2+tag@example.com").is_ok());
    }

    /// Looking up normalises as `parse` does, without the rules for new addresses.
    #[test]
    fn lookups_normalise_like_parse_but_apply_no_rule_for_new_addresses() {
        for older in ["\u{ff43}arol@example.com", "\"dave\"@example.com", "b\u{043e}b@example.com", "\u{0440}\u{043e}\u{0440}@example.com"] {
            assert!(Email::parse(older).is_err(), "{older:?}");
            assert_eq!(Email::lookup(older).unwrap().as_ref(), older, "{older:?}");
        }
        assert_eq!(
            Email::lookup("  Ann@\u{043f}\u{0440}\u{0438}\u{043c}\u{0435}\u{0440}.\u{0440}\u{0444} ").unwrap().as_ref(),
            "ann@xn--e1afmkfd.xn--p1ai"
        );
        for bad in ["plain", "a@b", "@example.com", "a@b.123", "a\u{0}b@example.com", "a@exa\u{0}mple.com", "a\u{7f}@example.com"] {
            assert!(Email::lookup(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn regions_refuse_invisible_characters() {
        assert_eq!(Region::parse(" Moscow ").unwrap().as_ref(), "Moscow");
        assert!(Region::parse("\u{202e}evil").is_err());
        assert!(Region::parse("Mos\u{200b}cow").is_err());
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
        assert!(Country::parse("ZZ").is_err(), "not assigned");
        assert_eq!(COUNTRY_CODES.len(), 249);
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]), "sorted, for the binary search");
        assert_eq!(Country::parse("kz").unwrap().as_ref(), "KZ");
    }

    #[test]
    fn birth_dates_are_bounded() {
        assert!(BirthDate::try_from(NaiveDate::from_ymd_opt(1990, 5, 1).unwrap()).is_ok());
        assert!(BirthDate::try_from(NaiveDate::from_ymd_opt(1899, 12, 31).unwrap()).is_err());
        assert!(BirthDate::try_from(Utc::now().date_naive() + chrono::Days::new(1)).is_err());
    }
}
