//! Webhook signature helpers: HMAC-SHA256, base64, hex and constant-time comparison.
//!
//! ```
//! use posbridge_sdk::signature;
//! // Square signs notification URL + raw body with the subscription's signature key.
//! let url = "https://hub.example.com/webhooks/square/42";
//! let body = br#"{"event_id":"e1"}"#;
//! let header = signature::base64_encode(&signature::hmac_sha256(b"key", &[url.as_bytes(), body]));
//! assert!(signature::verify_hmac_sha256_base64(b"key", &[url.as_bytes(), body], &header));
//! assert!(!signature::verify_hmac_sha256_base64(b"other", &[url.as_bytes(), body], &header));
//! ```

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Standard alphabet; encodes with padding, decodes with or without it.
const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// URL-safe alphabet; encodes without padding, decodes with or without it.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Whether `a` and `b` are equal, in time independent of their contents (lengths may leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether `signature` (base64, padded or not) is the HMAC-SHA256 of `parts` under `key`,
/// compared in constant time. Whitespace around `signature` is ignored.
pub fn verify_hmac_sha256_base64(key: &[u8], parts: &[&[u8]], signature: &str) -> bool {
    match base64_decode(signature.trim()) {
        Some(given) => constant_time_eq(&hmac_sha256(key, parts), &given),
        None => false,
    }
}

/// Whether `signature` (hex, either case, optionally prefixed `sha256=`) is the HMAC-SHA256 of
/// `parts` under `key`, compared in constant time.
pub fn verify_hmac_sha256_hex(key: &[u8], parts: &[&[u8]], signature: &str) -> bool {
    let signature = signature.trim();
    let signature = signature.strip_prefix("sha256=").unwrap_or(signature);
    match hex_decode(signature) {
        Some(given) => constant_time_eq(&hmac_sha256(key, parts), &given),
        None => false,
    }
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Standard base64, padding optional; `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// URL-safe base64 without padding.
pub fn base64url_encode(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// URL-safe base64, padding optional; `None` if malformed.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE.decode(text).ok()
}

/// Lower-case hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Hex (either case) → bytes; `None` if malformed.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex_encode(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hex = hex_encode(&mac);
        assert!(verify_hmac_sha256_hex(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &hex
        ));
        assert!(verify_hmac_sha256_hex(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &format!("sha256={}", hex.to_uppercase())
        ));
        assert!(!verify_hmac_sha256_hex(
            b"Jefe",
            &[b"what do ya want for nothing!"],
            &hex
        ));
        assert!(!verify_hmac_sha256_hex(b"Jefe", &[b"x"], "zz"));
    }

    #[test]
    fn base64_signatures() {
        let mac = hmac_sha256(b"secret", &[b"https://h/webhook", b"{}"]);
        let padded = base64_encode(&mac);
        assert!(padded.ends_with('='));
        assert!(verify_hmac_sha256_base64(
            b"secret",
            &[b"https://h/webhook{}"],
            &padded
        ));
        assert!(verify_hmac_sha256_base64(
            b"secret",
            &[b"https://h/webhook{}"],
            padded.trim_end_matches('=')
        ));
        assert!(!verify_hmac_sha256_base64(
            b"secret",
            &[b"https://h/webhook{} "],
            &padded
        ));
        assert!(!verify_hmac_sha256_base64(
            b"secret",
            &[b"x"],
            "not base64!"
        ));
        assert!(!verify_hmac_sha256_base64(b"secret", &[b"x"], ""));
        assert_eq!(
            base64url_decode(&base64url_encode(&[0xfb, 0xff])),
            Some(vec![0xfb, 0xff])
        );
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(
            hex_encode(&sha256(&[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("éé"), None);
    }
}
