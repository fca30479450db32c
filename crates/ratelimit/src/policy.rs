//! Policies: a named rate with a burst, parsed from settings such as `20/s burst 40`.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use crate::gcra::Params;

/// `count` requests per `window`, with up to `burst` at once.
///
/// Written `<count>/<window>[ burst <n>]`, for example `20/s burst 40`, `30/m`,
/// `5/15m`, `50/h`, `10/500ms`. The sustained rate is `count / window`; the burst
/// defaults to `count`. Under GCRA a `5/15m` limit means "5 at once, then one more
/// every 3 minutes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
    pub burst: u32,
}

impl Rate {
    pub const fn new(count: u32, window: Duration, burst: u32) -> Self {
        Self { count, window, burst }
    }

    pub(crate) fn params(&self) -> Params {
        let interval_us = (self.window.as_micros() / u128::from(self.count.max(1))).max(1);
        Params { interval_us: u64::try_from(interval_us).unwrap_or(u64::MAX / 4), burst: u64::from(self.burst.max(1)) }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let expected = "expected `<count>/<window>[ burst <n>]`, for example `20/s burst 40` or `5/15m`";
        let mut words = raw.split_whitespace();
        let rate = words.next().ok_or_else(|| expected.to_owned())?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => None,
            (Some("burst"), Some(n), None) => Some(n.parse::<u32>().map_err(|_| format!("burst {n:?} is not a whole number"))?),
            _ => return Err(expected.to_owned()),
        };
        let (count, window) = rate.split_once('/').ok_or_else(|| expected.to_owned())?;
        let count: u32 = count.parse().map_err(|_| format!("count {count:?} is not a whole number; {expected}"))?;
        let window = parse_window(window).ok_or_else(|| format!("window {window:?} is not a duration such as s, 1s, 500ms, 15m, 1h; {expected}"))?;
        let burst = burst.unwrap_or(count);
        if count == 0 || burst == 0 || window.is_zero() {
            return Err("count, window and burst must be greater than zero".into());
        }
        let rate = Self { count, window, burst };
        // A full burst takes `burst` intervals to come back; a year is far beyond any
        // sensible policy and keeps the arithmetic of the limiter and of the Redis script
        // (keys' expiry in milliseconds) well within range.
        let params = rate.params();
        if params.interval_us.checked_mul(params.burst).is_none_or(|window_us| window_us > MAX_RECOVERY_US) {
            return Err(format!("a full burst of {burst} at {count} per {window:?} takes more than a year to come back"));
        }
        Ok(rate)
    }
}

/// The longest a policy may take to give a full burst back: a year, in microseconds.
const MAX_RECOVERY_US: u64 = 366 * 86_400 * 1_000_000;

fn parse_window(raw: &str) -> Option<Duration> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = if number.is_empty() { 1 } else { number.parse().ok()? };
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.window.as_millis();
        let (n, unit) = match ms {
            ms if ms % 86_400_000 == 0 => (ms / 86_400_000, "d"),
            ms if ms % 3_600_000 == 0 => (ms / 3_600_000, "h"),
            ms if ms % 60_000 == 0 => (ms / 60_000, "m"),
            ms if ms % 1_000 == 0 => (ms / 1_000, "s"),
            ms => (ms, "ms"),
        };
        let window = if n == 1 { unit.to_owned() } else { format!("{n}{unit}") };
        write!(f, "{}/{window}", self.count)?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

/// A named rate. The name appears in Redis keys, in the `RateLimit` headers and in
/// metrics, so it is short, stable and made of `[a-z0-9-]`.
#[derive(Debug)]
pub struct Policy {
    name: Arc<str>,
    rate: Rate,
    params: Params,
}

impl Policy {
    pub fn new(name: &str, rate: Rate) -> Arc<Self> {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "policy names are [a-z0-9-]+: {name:?}"
        );
        Arc::new(Self { name: name.into(), rate, params: rate.params() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    pub(crate) fn params(&self) -> Params {
        self.params
    }

    /// The quota advertised in `RateLimit-Policy`: the burst, over the time the burst
    /// takes to refill (whole seconds, at least one).
    pub fn quota(&self) -> (u64, u64) {
        let window_us = self.params.interval_us.saturating_mul(self.params.burst);
        (self.params.burst, window_us.div_ceil(1_000_000).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        let api: Rate = "20/s burst 40".parse().unwrap();
        assert_eq!(api, Rate::new(20, Duration::from_secs(1), 40));
        assert_eq!(api.params(), Params { interval_us: 50_000, burst: 40 });
        assert_eq!("5/15m".parse::<Rate>().unwrap(), Rate::new(5, Duration::from_secs(900), 5));
        assert_eq!("50/1h".parse::<Rate>().unwrap(), Rate::new(50, Duration::from_secs(3600), 50));
        assert_eq!("3/200ms burst 3".parse::<Rate>().unwrap(), Rate::new(3, Duration::from_millis(200), 3));
        for rate in ["20/s burst 40", "5/15m", "3/200ms", "50/h", "1/2d", "30/m"] {
            assert_eq!(rate.parse::<Rate>().unwrap().to_string(), rate);
        }
    }

    #[test]
    fn bad_rates_say_what_is_expected() {
        for bad in ["", "20", "x/s", "20/fortnight", "0/s", "20/s burst", "20/s burst x", "20/s bursty 4", "20/0s"] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert!("20/fortnight".parse::<Rate>().unwrap_err().contains("window \"fortnight\""));
    }

    /// Rates whose full burst would take longer than a year to come back are refused:
    /// `1/d burst 4000000000` overflowed the limiter's arithmetic (a panic per request).
    #[test]
    fn rates_that_take_more_than_a_year_to_recover_are_refused() {
        for absurd in ["1/d burst 4000000000", "1/99999999999d", "1/d burst 367"] {
            let err = absurd.parse::<Rate>().unwrap_err();
            assert!(err.contains("more than a year"), "{absurd:?}: {err}");
        }
        assert!("1/d burst 366".parse::<Rate>().is_ok());
        assert!("5/15m".parse::<Rate>().is_ok());
    }

    #[test]
    fn the_advertised_quota_is_the_burst_over_its_refill_time() {
        assert_eq!(Policy::new("api", "20/s burst 40".parse().unwrap()).quota(), (40, 2));
        assert_eq!(Policy::new("login", "5/15m".parse().unwrap()).quota(), (5, 900));
        assert_eq!(Policy::new("fast", "3/200ms".parse().unwrap()).quota(), (3, 1));
    }
}
