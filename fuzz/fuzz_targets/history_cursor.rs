//! The login-history pagination cursor (`auth::store::history::Cursor`), which clients
//! send back as `?cursor=`: 32 characters of base64url for 8 bytes of microseconds
//! and a 16-byte id.
//!
//! Properties, for every input:
//! - `Cursor::parse` never panics on any string;
//! - whatever it accepts is exactly a cursor the API could have returned: 32
//!   characters and `encode(parse(s)) == s` (no second spelling of one position);
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

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Some(cursor) = Cursor::parse(raw) {
            assert_eq!(raw.len(), 32);
            assert_eq!(cursor.encode(), raw, "a second spelling of {cursor:?} is accepted");
        }
    }
    if let Some((micros, rest)) = data.split_first_chunk::<8>() {
        if let Some(id) = rest.first_chunk::<16>() {
            let Some(attempted_at) = DateTime::from_timestamp_micros(i64::from_be_bytes(*micros)) else { return };
            let cursor = Cursor { attempted_at, id: Uuid::from_bytes(*id) };
            let encoded = cursor.encode();
            assert_eq!(encoded.len(), 32);
            assert_eq!(Cursor::parse(&encoded), Some(cursor), "{encoded} does not read back");
        }
    }
});
