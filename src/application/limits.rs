//! Limits on what tenants send and what the ledger records.
//!
//! - Per-tenant rate of evaluate: a token bucket per tenant, so one tenant's burst cannot
//!   take the engine (and the ledger) from the others. Over the limit the caller gets 429
//!   with `Retry-After`, the time until its bucket holds a token again.
//! - Text every read model and the relay can hold: no NUL, no unpaired surrogate
//!   ([`check_json_text`], run on every JSON body and on every entry before the append).
//! - The size of a ledger entry as the relay publishes it ([`entry_message_bytes`]),
//!   checked before the append against `AUMOS_GOVERNANCE_LEDGER_ENTRY_MAX_BYTES`; the
//!   relay's producer and topics allow [`kafka_message_max_bytes`] of that, so no entry
//!   the API accepted can be refused by the broker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::adapters::ledger::NewEntry;

/// Default of `AUMOS_GOVERNANCE_LEDGER_ENTRY_MAX_BYTES`: a decision whose 1 MiB input (the
/// body limit) is echoed in its result still fits.
pub const DEFAULT_LEDGER_ENTRY_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Room the relay's Kafka messages need beyond the entry: CloudEvents headers, key and
/// record framing.
const KAFKA_OVERHEAD_BYTES: usize = 64 * 1024;
/// Fields of the exported entry besides its strings: keys, numbers, hashes, timestamps.
const ENTRY_FIXED_BYTES: usize = 1024;

/// The Kafka message size (producer `message.max.bytes`, topics' `max.message.bytes`)
/// that carries any entry of at most `entry_max_bytes`.
pub fn kafka_message_max_bytes(entry_max_bytes: usize) -> usize {
    entry_max_bytes.saturating_add(KAFKA_OVERHEAD_BYTES)
}

/// An upper bound of the size of the relay's largest message for this entry: the entry in
/// the export format of docs/ledger-format.md on the audit topic (its payload as an
/// escaped JSON string). The domain topics carry the payload alone, which is smaller.
pub fn entry_message_bytes(e: &NewEntry) -> usize {
    let m = &e.metadata;
    let optional = [&m.request_id, &m.trace_id, &m.causation_id, &m.correlation_id];
    ENTRY_FIXED_BYTES
        + [e.aggregate_type.as_str(), &e.aggregate_id, &e.event_type, &e.event_version, &e.payload, &m.actor]
            .iter()
            .map(|s| json_string_bytes(s))
            .sum::<usize>()
        + optional.iter().filter_map(|o| o.as_deref()).map(json_string_bytes).sum::<usize>()
}

/// Bytes of `s` as a JSON string literal (serde_json's escaping), quotes included: `"` and
/// `\` take two bytes, control characters two (`\n`, `\r`, `\t`, `\b`, `\f`) or six
/// (`\u00XX`). Without control characters (the common case) it is two vectorised counts.
fn json_string_bytes(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut n = 2 + bytes.len() + memchr::memchr2_iter(b'"', b'\\', bytes).count();
    if bytes.iter().filter(|b| **b < 0x20).count() > 0 {
        n += bytes
            .iter()
            .filter(|b| **b < 0x20)
            .map(|b| if matches!(b, b'\n' | b'\r' | b'\t' | 0x08 | 0x0c) { 1 } else { 5 })
            .sum::<usize>();
    }
    n
}

/// Why an entry cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefused {
    #[error("the ledger entry would be {bytes} bytes, over the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    #[error("the ledger entry's payload: {0}")]
    Text(#[from] TextError),
}

/// Checks an entry before the append: its size as the relay would publish it, and text
/// every read model can store. Returns that size (what a group-commit batch's byte bound
/// counts).
pub fn check_entry(e: &NewEntry, max_bytes: usize) -> Result<usize, EntryRefused> {
    let bytes = entry_message_bytes(e);
    if bytes > max_bytes {
        return Err(EntryRefused::TooLarge { bytes, max: max_bytes });
    }
    check_json_text(e.payload.as_bytes())?;
    for s in [&e.aggregate_id, &e.metadata.actor] {
        check_text(s)?;
    }
    Ok(bytes)
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by tenant; idle tenants' buckets are dropped after ten minutes.
#[derive(Debug, Clone)]
pub struct TenantRateLimiter {
    per_second: f64,
    burst: f64,
    buckets: moka::sync::Cache<Uuid, Arc<Mutex<Bucket>>>,
}

impl TenantRateLimiter {
    /// `per_second` tokens refill each second, up to `burst`. `per_second == 0` disables the limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let buckets = moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(600)).build();
        Self { per_second: f64::from(per_second), burst: f64::from(burst.max(1)), buckets }
    }

    /// Takes a token for `tenant`, or says how long until one is available.
    pub fn check(&self, tenant: Uuid) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let bucket = self.buckets.get_with(tenant, || Arc::new(Mutex::new(Bucket { tokens: self.burst, at: Instant::now() })));
        let Ok(mut b) = bucket.lock() else { return Ok(()) };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }
}

/// Text a read model (PostgreSQL `text`/`jsonb`) or the relay cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("a string contains the NUL character (\\u0000), which cannot be stored")]
    Nul,
    #[error("a string contains an unpaired UTF-16 surrogate escape, which is not a character")]
    LoneSurrogate,
}

/// Checks a text value (a header-supplied name, a multipart field) for NUL.
pub fn check_text(s: &str) -> Result<(), TextError> {
    if s.contains('\0') {
        Err(TextError::Nul)
    } else {
        Ok(())
    }
}

/// Checks every string (keys included) of a JSON text for NUL, written raw or as
/// `\u0000`, and for `\uD800`–`\uDFFF` escapes that do not form a surrogate pair. One
/// pass over the bytes, no allocation; the JSON syntax itself is left to the parser.
pub fn check_json_text(json: &[u8]) -> Result<(), TextError> {
    let mut i = 0;
    let mut in_string = false;
    // Only NUL, `"` and `\` change anything: jump from one to the next.
    while let Some(at) = json.get(i..).and_then(|rest| memchr::memchr3(0, b'"', b'\\', rest)) {
        i += at;
        let b = json[i];
        if b == 0 {
            return Err(TextError::Nul);
        }
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = false,
            b'\\' if json.get(i + 1) == Some(&b'u') => {
                let unit = hex4(json, i + 2);
                match unit {
                    Some(0) => return Err(TextError::Nul),
                    Some(0xD800..=0xDBFF) => {
                        let low = if json.get(i + 6) == Some(&b'\\') && json.get(i + 7) == Some(&b'u') { hex4(json, i + 8) } else { None };
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return Err(TextError::LoneSurrogate);
                        }
                        i += 12;
                        continue;
                    }
                    Some(0xDC00..=0xDFFF) => return Err(TextError::LoneSurrogate),
                    _ => {}
                }
                i += 6;
                continue;
            }
            // Any other escape is two bytes; skipping the second keeps `\"` inside the string.
            b'\\' => {
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn hex4(json: &[u8], at: usize) -> Option<u16> {
    let digits = json.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &str) -> NewEntry {
        NewEntry {
            tenant_id: Uuid::nil(),
            aggregate_type: "Policy".into(),
            aggregate_id: "a".into(),
            aggregate_seq: 1,
            event_type: "PolicyCreated".into(),
            event_version: "1".into(),
            payload: payload.into(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn an_entry_is_measured_with_its_payload_escaped_as_the_audit_topic_carries_it() {
        let plain = entry_message_bytes(&entry(r#"{"a":"xxxx"}"#));
        let quoted = entry_message_bytes(&entry(r#"{"a":"\"\"\"\""}"#));
        assert_eq!(quoted - plain, 4 + 8, "each \\\" of the payload text is four bytes once escaped again");
        let max = plain + 3;
        assert_eq!(check_entry(&entry(r#"{"a":"xxxxxxx"}"#), max).map(|_| ()), Ok(()));
        assert_eq!(check_entry(&entry(r#"{"a":"xxxxxxxx"}"#), max).map(|_| ()), Err(EntryRefused::TooLarge { bytes: max + 1, max }));
    }

    #[test]
    fn a_string_is_measured_as_serde_json_escapes_it() {
        for c in (0u8..=0x7f).map(char::from).chain(['é', '€', '😀']) {
            for s in [c.to_string(), format!("ab{c}cd"), format!("{c}{c}\"\\x{c}")] {
                assert_eq!(json_string_bytes(&s), serde_json::to_string(&s).unwrap().len(), "{s:?}");
            }
        }
        let long = "x".repeat(1000) + "\"\n\u{1}\\" + &"y".repeat(1000);
        assert_eq!(json_string_bytes(&long), serde_json::to_string(&long).unwrap().len());
    }

    #[test]
    fn text_cut_inside_an_escape_is_left_to_the_parser() {
        for cut in [&br#"["\"#[..], br#"["\u00"#, br#"""#, br#"["x\"#] {
            assert_eq!(check_json_text(cut), Ok(()), "{}", String::from_utf8_lossy(cut));
        }
        for cut in [&br#"["\ud83d"#[..], br#"["\ud83d\u"#, br#"["\ud83d\ude0"#] {
            assert_eq!(check_json_text(cut), Err(TextError::LoneSurrogate), "{}", String::from_utf8_lossy(cut));
        }
    }

    #[test]
    fn an_entry_with_nul_in_its_payload_is_refused() {
        assert_eq!(check_entry(&entry(r#"{"a":"\u0000"}"#), usize::MAX).map(|_| ()), Err(EntryRefused::Text(TextError::Nul)));
    }

    #[test]
    fn the_kafka_limit_leaves_room_above_the_largest_entry() {
        assert!(kafka_message_max_bytes(DEFAULT_LEDGER_ENTRY_MAX_BYTES) > DEFAULT_LEDGER_ENTRY_MAX_BYTES + 1024);
    }

    #[test]
    fn nul_is_refused_in_values_and_keys_raw_or_escaped() {
        assert_eq!(check_json_text(br#"{"a":"x\u0000"}"#), Err(TextError::Nul));
        assert_eq!(check_json_text(br#"{"k\u0000":1}"#), Err(TextError::Nul));
        assert_eq!(check_json_text(b"{\"a\":\"\0\"}"), Err(TextError::Nul));
        assert_eq!(check_json_text(br#"["\U0000"]"#), Ok(()), "\\U is not an escape: the parser refuses it");
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_plain_text() {
        assert_eq!(check_json_text(br#"{"a":"\\u0000"}"#), Ok(()));
        assert_eq!(check_json_text(br#"{"a":"\\\u0000"}"#), Err(TextError::Nul));
        assert_eq!(check_json_text(br#"{"a":"\"\u0000"}"#), Err(TextError::Nul));
    }

    #[test]
    fn only_paired_surrogate_escapes_pass() {
        assert_eq!(check_json_text(br#"["\ud83d\ude00"]"#), Ok(()));
        assert_eq!(check_json_text(br#"["\ud83d"]"#), Err(TextError::LoneSurrogate));
        assert_eq!(check_json_text(br#"["\ud83dx"]"#), Err(TextError::LoneSurrogate));
        assert_eq!(check_json_text(br#"["\ude00\ud83d"]"#), Err(TextError::LoneSurrogate));
        assert_eq!(check_json_text(br#"["\ud83d\u0041"]"#), Err(TextError::LoneSurrogate));
    }

    #[test]
    fn text_outside_strings_and_ordinary_escapes_pass() {
        assert_eq!(check_json_text(br#"{"a":[1,2.5e3,true,null,"\n\t\u00e9 \u20ac"]}"#), Ok(()));
        assert_eq!(check_text("name\0"), Err(TextError::Nul));
        assert_eq!(check_text("name"), Ok(()));
    }

    #[test]
    fn a_tenant_gets_its_burst_then_waits_while_another_tenant_is_unaffected() {
        let limiter = TenantRateLimiter::new(2, 3);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).err();
        assert!(wait.is_some_and(|w| w > Duration::from_millis(300) && w <= Duration::from_millis(500)), "{wait:?}");
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = TenantRateLimiter::new(0, 0);
        let a = Uuid::new_v4();
        assert!((0..10_000).all(|_| limiter.check(a).is_ok()));
    }
}
