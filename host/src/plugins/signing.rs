//! Plugin signatures: an ed25519 signature carried inside the component, as its last
//! section, a custom section named `posbridge-signature`.
//!
//! Why embedded rather than a detached `.sig` file: a component travels as one file through
//! every path that installs it (`POST /admin/plugins` with the bytes as the body, `plugin
//! install`, the bundled plugins compiled into the binary), so nothing has to carry a second
//! file alongside, and wasmtime ignores custom sections, so a signed component runs
//! unchanged. The signature covers every byte before its section: `DOMAIN ‖ SHA-256(bytes)`,
//! so changing any byte of the component (or appending one) fails the check, and re-signing
//! replaces the section instead of stacking a second one.
//!
//! The section has a fixed layout (`id 0`, size 117, the name, format `1`, the signer's
//! 32-byte public key, the 64-byte signature), so it is found by its bytes at the end of
//! the file without parsing the component. The build script includes this file too, to sign
//! the bundled plugins, which is why it depends only on `ed25519-dalek` and `sha2`.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The custom section's name.
pub const SECTION_NAME: &[u8] = b"posbridge-signature";
/// Signature format inside the section (bumped if the layout ever changes).
const FORMAT: u8 = 1;
/// What is signed before the digest, so a posbridge plugin signature is never valid as a
/// signature over anything else made with the same key.
const DOMAIN: &[u8] = b"posbridge plugin signature v1\0";
/// Custom section contents: name length, name, format, public key, signature.
const CONTENT_LEN: usize = 1 + SECTION_NAME.len() + 1 + 32 + 64;
/// The whole section: id, one-byte size (the contents are under 128 bytes), contents.
pub const SECTION_LEN: usize = 2 + CONTENT_LEN;

/// A signature found at the end of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The signer's public key.
    pub public_key: [u8; 32],
    /// The signature over the bytes before the section.
    pub signature: [u8; 64],
    /// Length of the signed (unsigned-component) prefix.
    pub signed_len: usize,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key in the section is not a valid ed25519 key.
    #[error("the signature names an invalid ed25519 public key")]
    BadKey,
    /// The signature does not match the component's bytes.
    #[error(
        "the signature does not match the component's bytes: the file was changed after it \
         was signed, or signed with another key than the one it names"
    )]
    Mismatch,
}

/// The section header every signature section starts with (id, size, name, format).
fn header() -> [u8; 3 + SECTION_NAME.len() + 1] {
    let mut h = [0u8; 3 + SECTION_NAME.len() + 1];
    h[0] = 0; // custom section
    h[1] = CONTENT_LEN as u8;
    h[2] = SECTION_NAME.len() as u8;
    h[3..3 + SECTION_NAME.len()].copy_from_slice(SECTION_NAME);
    h[3 + SECTION_NAME.len()] = FORMAT;
    h
}

/// The signature section at the end of `wasm`, if it ends with one.
pub fn embedded(wasm: &[u8]) -> Option<Embedded> {
    // A component preamble is 8 bytes; anything shorter cannot hold a section after it.
    if wasm.len() < 8 + SECTION_LEN {
        return None;
    }
    let start = wasm.len() - SECTION_LEN;
    let section = &wasm[start..];
    let header = header();
    if !section.starts_with(&header) {
        return None;
    }
    let rest = &section[header.len()..];
    let mut public_key = [0u8; 32];
    public_key.copy_from_slice(&rest[..32]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&rest[32..96]);
    Some(Embedded {
        public_key,
        signature,
        signed_len: start,
    })
}

/// The message a signature covers for the component bytes `unsigned`.
fn message(unsigned: &[u8]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(&Sha256::digest(unsigned));
    m
}

/// `wasm` signed by `key`: any signature section already at its end is replaced.
pub fn sign(wasm: &[u8], key: &SigningKey) -> Vec<u8> {
    let unsigned = match embedded(wasm) {
        Some(e) => &wasm[..e.signed_len],
        None => wasm,
    };
    let signature = key.sign(&message(unsigned));
    let mut out = Vec::with_capacity(unsigned.len() + SECTION_LEN);
    out.extend_from_slice(unsigned);
    out.extend_from_slice(&header());
    out.extend_from_slice(key.verifying_key().as_bytes());
    out.extend_from_slice(&signature.to_bytes());
    out
}

/// Checks the signature `found` in `wasm` against the bytes it covers.
pub(crate) fn verify(wasm: &[u8], found: &Embedded) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&found.public_key).map_err(|_| SignatureError::BadKey)?;
    let signature = Signature::from_bytes(&found.signature);
    let unsigned = wasm
        .get(..found.signed_len)
        .ok_or(SignatureError::Mismatch)?;
    key.verify(&message(unsigned), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Why a key file or a public key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64 of 32 bytes.
    #[error("expected the base64 of a 32-byte ed25519 key (as `plugin keygen` writes it)")]
    Malformed,
    /// 32 bytes, but not a point on the curve.
    #[error("not a valid ed25519 public key")]
    NotOnCurve,
}

/// The 32 bytes in a key file's text: its first line that is neither blank nor a `#`
/// comment, in base64 (standard alphabet, padding optional).
fn key_bytes(text: &str) -> Result<[u8; 32], KeyError> {
    use base64::Engine as _;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or(KeyError::Malformed)?;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(line.trim_end_matches('='))
        .map_err(|_| KeyError::Malformed)?;
    bytes.try_into().map_err(|_| KeyError::Malformed)
}

/// Reads a secret key file (`plugin keygen`'s `.key`: the 32-byte seed in base64).
pub fn parse_secret_key(text: &str) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&key_bytes(text)?))
}

/// Reads a public key (`plugin keygen`'s `.pub`, or the same text in an API request).
pub(crate) fn parse_public_key(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = key_bytes(text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotOnCurve)?;
    Ok(bytes)
}

/// The base64 text of a key, as key files and the API spell it.
pub fn encode_key(bytes: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(public_key: &[u8; 32]) -> String {
    Sha256::digest(public_key)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn component() -> Vec<u8> {
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        wasm.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
        wasm
    }

    #[test]
    fn a_signed_component_verifies_and_names_its_key() {
        let signed = sign(&component(), &key(1));
        assert_eq!(signed.len(), component().len() + SECTION_LEN);
        let found = embedded(&signed).expect("signature section");
        assert_eq!(found.public_key, *key(1).verifying_key().as_bytes());
        assert_eq!(found.signed_len, component().len());
        verify(&signed, &found).expect("verifies");
        assert_eq!(key_id(&found.public_key).len(), 16);
        assert!(embedded(&component()).is_none());
    }

    #[test]
    fn any_changed_byte_fails_the_check() {
        let signed = sign(&component(), &key(1));
        for i in 0..signed.len() {
            let mut tampered = signed.clone();
            tampered[i] ^= 0x01;
            let ok = embedded(&tampered).is_some_and(|e| verify(&tampered, &e).is_ok());
            assert!(!ok, "flipping byte {i} still verified");
        }
        // Bytes inserted before the section change what it covers.
        let mut grown = signed[..component().len()].to_vec();
        grown.push(0);
        grown.extend_from_slice(&signed[component().len()..]);
        let e = embedded(&grown).expect("section still at the end");
        assert_eq!(verify(&grown, &e), Err(SignatureError::Mismatch));
    }

    #[test]
    fn key_files_round_trip_and_refuse_garbage() {
        let k = key(7);
        let secret = format!("# a comment\n{}\n", encode_key(&k.to_bytes()));
        assert_eq!(parse_secret_key(&secret).unwrap().to_bytes(), k.to_bytes());
        let public = encode_key(k.verifying_key().as_bytes());
        assert_eq!(
            &parse_public_key(&public).unwrap(),
            k.verifying_key().as_bytes()
        );
        assert_eq!(parse_public_key("hello"), Err(KeyError::Malformed));
        assert_eq!(parse_public_key(""), Err(KeyError::Malformed));
    }

    #[test]
    fn signing_again_replaces_the_signature() {
        let once = sign(&component(), &key(1));
        let twice = sign(&once, &key(2));
        assert_eq!(twice.len(), once.len());
        let found = embedded(&twice).expect("section");
        assert_eq!(found.public_key, *key(2).verifying_key().as_bytes());
        verify(&twice, &found).expect("verifies");
    }
}
