//! The login-history pagination cursor (`auth::store::history::Cursor`), which clients
//! send back as `?cursor=`: 32 characters of base64url for 8 bytes of microseconds
//! and a 16-byte id.
//!
//! Properties, for every input:
//! - `Cursor::parse` never panics on any string;
//! - whatever it accepts is exactly a cursor the API could have returned: 32
//!   characters and `encode(parse(s)) == s` (no second spelling of one position),
//!   and a time PostgreSQL's `timestamptz` can hold (from 4714-11-24 BC; the page query
//!   binds it, and PostgreSQL refuses a time out of its range with an error);
//! - round trip: for any time PostgreSQL can hold (microseconds) and any id,
//!   `parse(encode(c)) == c`, and `encode` gives 32 characters.
//!
//! Input: the bytes as the raw cursor (when UTF-8); the first 24 bytes also as a
//! big-endian microsecond count and an id for the round trip.
#![no_main]

use auth::store::history::Cursor;
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// PostgreSQL's `MIN_TIMESTAMP` (4714-11-24 BC, Julian day 0) in Unix microseconds.
/// Its upper end (294276 AD) is past chrono's, so needs no check here.
const POSTGRES_EARLIEST_MICROS: i64 = -210_866_803_200_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Some(cursor) = Cursor::parse(raw) {
            assert_eq!(raw.len(), 32);
            assert_eq!(cursor.encode(), raw, "a second spelling of {cursor:?} is accepted");
            assert!(
                cursor.attempted_at.timestamp_micros() >= POSTGRES_EARLIEST_MICROS,
                "accepted {raw}, a time PostgreSQL cannot hold: {}",
                cursor.attempted_at
            );
        }
    }
    if let Some((micros, rest)) = data.split_first_chunk::<8>() {
        if let Some(id) = rest.first_chunk::<16>() {
            let micros = i64::from_be_bytes(*micros);
            if micros < POSTGRES_EARLIEST_MICROS {
                return;
            }
            let Some(attempted_at) = DateTime::from_timestamp_micros(micros) else { return };
            let cursor = Cursor { attempted_at, id: Uuid::from_bytes(*id) };
            let encoded = cursor.encode();
            assert_eq!(encoded.len(), 32);
            assert_eq!(Cursor::parse(&encoded), Some(cursor), "{encoded} does not read back");
        }
    }
});
