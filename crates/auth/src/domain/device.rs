//! Device class of a client, parsed from its User-Agent.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    Web,
    Mobile,
    Tablet,
    SmartTv,
    Other,
}

impl DeviceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::SmartTv => "smart_tv",
            Self::Other => "other",
        }
    }

    pub fn from_db(value: &str) -> Self {
        match value {
            "web" => Self::Web,
            "mobile" => Self::Mobile,
            "tablet" => Self::Tablet,
            "smart_tv" => Self::SmartTv,
            _ => Self::Other,
        }
    }

    /// Classifies a User-Agent. woothee knows browsers and phones; it has no notion of
    /// tablets or TVs, which are told apart by the markers their vendors use.
    pub fn from_user_agent(user_agent: &str) -> Self {
        #[rustfmt::skip]
        const TV_MARKERS: &[&str] =
            &["smart-tv", "smarttv", "smart tv", "tizen", "web0s", "webos", "hbbtv", "appletv", "apple tv", "googletv", "android tv", "crkey", "bravia", "netcast", "roku", "aftt", "aftm"];
        let lower = user_agent.to_ascii_lowercase();
        if lower.is_empty() {
            return Self::Other;
        }
        if TV_MARKERS.iter().any(|m| lower.contains(m)) {
            return Self::SmartTv;
        }
        if lower.contains("ipad") || lower.contains("tablet") || (lower.contains("android") && !lower.contains("mobile")) {
            return Self::Tablet;
        }
        match woothee::parser::Parser::new().parse(user_agent).map(|r| r.category) {
            Some("smartphone" | "mobilephone") => Self::Mobile,
            Some("pc") => Self::Web,
            _ if lower.contains("mobile") => Self::Mobile,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceClass::{self, *};

    #[test]
    fn user_agents_are_classified() {
        #[rustfmt::skip]
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", Web),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", Web),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", Mobile),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36", Mobile),
            ("Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", Tablet),
            ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", Tablet),
            ("Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/5.0 TV Safari/537.36", SmartTv),
            ("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0 Safari/537.36 WebAppManager", SmartTv),
            ("curl/8.5.0", Other),
            ("", Other),
        ];
        for (ua, expected) in cases {
            assert_eq!(DeviceClass::from_user_agent(ua), expected, "{ua}");
        }
    }
}
