//! Sealing secrets at rest: provider credentials and webhook signature keys are encrypted
//! with AES-256-GCM under a master key, with the tenant and integration ids (and the field
//! name) as associated data, so a sealed value copied onto another row no longer opens.
//!
//! Master keys come from `POSBRIDGE_MASTER_KEY` (`id:base64,id:base64…`, first one active;
//! a bare base64 key gets an id derived from its hash) or, for the embedded default, from a
//! key file beside the database created with mode 0600. Every sealed value records the id
//! of its key, so old keys keep opening what they sealed until `posbridge vault rotate`
//! re-seals everything under the active key (see `crate::rotation`, which knows the tables).
//!
//! Several hosts on one database must hold the same keys: `crate::key_checks` compares
//! each key with a check value the database records (see [`Vault::check_values`]). A host
//! that meets a key id it does not hold re-reads its key file and adopts the file's keys and
//! active key, so a rotation written into a key file every host reads reaches running hosts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key's check value authenticates: a fixed label, so the value says nothing about
/// the key beyond "this is the same key".
const CHECK_LABEL: &[u8] = b"posbridge master key check v1";

/// Vault failures. Messages never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// `POSBRIDGE_MASTER_KEY` is malformed.
    #[error("POSBRIDGE_MASTER_KEY must be `id:base64key,…` or one base64 key of 32 bytes")]
    BadEnvKey,
    /// The key file is unreadable or malformed.
    #[error("key file {0}: {1}")]
    KeyFile(PathBuf, String),
    /// A sealed value names a key id the ring does not have.
    #[error(
        "no master key with id {0:?} on this host: after `vault rotate` every host needs the \
         rotated key file (use one file every host reads, or copy it to each host), and a key \
         may be removed only after a rotation completed"
    )]
    UnknownKey(String),
    /// Authentication failed: wrong key, wrong row, or tampering.
    #[error("sealed value does not open (wrong key, wrong row, or tampered)")]
    Open,
    /// Sealing failed.
    #[error("sealing failed")]
    Seal,
}

/// A sealed secret as stored: the key id and `nonce || ciphertext+tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the master key that sealed it.
    pub key_id: String,
    /// 12-byte nonce followed by the ciphertext and tag.
    pub bytes: Vec<u8>,
}

/// The master keys.
pub struct Vault {
    /// Behind a lock because a host re-reads its key file when it meets a key id it does not
    /// hold (another host rotated), while requests keep sealing and opening.
    ring: RwLock<Ring>,
    file: Option<PathBuf>,
}

/// The keys by id and the one new values are sealed with.
#[derive(Clone)]
struct Ring {
    active: String,
    keys: BTreeMap<String, [u8; 32]>,
}

impl Clone for Vault {
    fn clone(&self) -> Self {
        Vault {
            ring: RwLock::new(self.ring()),
            file: self.file.clone(),
        }
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("Vault")
            .field("active", &ring.active)
            .field("key_ids", &ring.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    active: String,
    keys: BTreeMap<String, String>,
}

impl Vault {
    /// Loads the keys from `env_value` (the content of `POSBRIDGE_MASTER_KEY`) if given,
    /// otherwise from (or into a new) key file at `file`.
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<Self, VaultError> {
        match env_value.filter(|v| !v.trim().is_empty()) {
            Some(value) => Self::from_env(value),
            None => Self::from_file(file),
        }
    }

    fn from_env(value: &str) -> Result<Self, VaultError> {
        let mut keys = BTreeMap::new();
        let mut active = None;
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, material) = match part.split_once(':') {
                Some((id, m)) => (id.to_owned(), m),
                None => (derived_id(part), part),
            };
            let key = decode_key(material).ok_or(VaultError::BadEnvKey)?;
            active.get_or_insert_with(|| id.clone());
            keys.insert(id, key);
        }
        let active = active.ok_or(VaultError::BadEnvKey)?;
        Ok(Vault::new(Ring { active, keys }, None))
    }

    fn new(ring: Ring, file: Option<PathBuf>) -> Self {
        Vault {
            ring: RwLock::new(ring),
            file,
        }
    }

    /// A copy of the ring (a poisoned lock still holds a whole ring: writers replace it in
    /// one assignment).
    fn ring(&self) -> Ring {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_ring(&self, ring: Ring) {
        match self.ring.write() {
            Ok(mut slot) => *slot = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }

    fn from_file(path: &Path) -> Result<Self, VaultError> {
        let err = |e: String| VaultError::KeyFile(path.to_owned(), e);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let parsed: KeyFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
            let mut keys = BTreeMap::new();
            for (id, material) in parsed.keys {
                keys.insert(
                    id,
                    decode_key(&material).ok_or_else(|| err("malformed key".into()))?,
                );
            }
            if !keys.contains_key(&parsed.active) {
                return Err(err("active key missing".into()));
            }
            return Ok(Vault::new(
                Ring {
                    active: parsed.active,
                    keys,
                },
                Some(path.to_owned()),
            ));
        }
        let mut vault = Vault::new(
            Ring {
                active: String::new(),
                keys: BTreeMap::new(),
            },
            Some(path.to_owned()),
        );
        vault.add_key()?;
        Ok(vault)
    }

    /// Generates a new key, makes it active and (for a key file) saves the ring.
    pub(crate) fn add_key(&mut self) -> Result<String, VaultError> {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut ring = self.ring();
        let id = format!("k{}", jiff::Timestamp::now().as_second());
        let id = if ring.keys.contains_key(&id) {
            format!("{id}-{}", ring.keys.len())
        } else {
            id
        };
        ring.keys.insert(id.clone(), key);
        ring.active = id.clone();
        self.save(&ring)?;
        self.set_ring(ring);
        Ok(id)
    }

    fn save(&self, ring: &Ring) -> Result<(), VaultError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let err = |e: String| VaultError::KeyFile(path.clone(), e);
        let file = KeyFile {
            active: ring.active.clone(),
            keys: ring
                .keys
                .iter()
                .map(|(id, k)| (id.clone(), B64.encode(k)))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| err(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let tmp = path.with_extension("tmp");
        write_private(&tmp, text.as_bytes()).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Whether keys come from a file this process may extend (rotation adds a key there).
    pub(crate) fn is_file_backed(&self) -> bool {
        self.file.is_some()
    }

    /// The key file this vault reads, or None when the keys come from the environment.
    pub fn key_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The active key id.
    pub(crate) fn active_key_id(&self) -> String {
        self.ring().active
    }

    /// The ids of every key held.
    pub(crate) fn key_ids(&self) -> Vec<String> {
        self.ring().keys.into_keys().collect()
    }

    /// Each key's id and check value: HMAC-SHA256 of a fixed label under the key, in hex.
    /// The database records it (see `crate::key_checks`) so that hosts holding another key
    /// under the same id are found at start; it reveals nothing about the key.
    pub(crate) fn check_values(&self) -> Vec<(String, String)> {
        self.ring()
            .keys
            .iter()
            .map(|(id, key)| (id.clone(), check_value(key)))
            .collect()
    }

    /// Seals `plaintext` for `(tenant, integration, field)`.
    pub fn seal(
        &self,
        tenant_id: &str,
        integration_id: &str,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Sealed, VaultError> {
        let ring = self.ring();
        let key = ring
            .keys
            .get(&ring.active)
            .ok_or_else(|| VaultError::UnknownKey(ring.active.clone()))?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(tenant_id, integration_id, field);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: ring.active.clone(),
            bytes,
        })
    }

    /// Opens a sealed value; fails if it was sealed for another row or tampered with.
    pub fn open(
        &self,
        tenant_id: &str,
        integration_id: &str,
        field: &str,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, VaultError> {
        let key = match self.ring().keys.get(&sealed.key_id) {
            Some(key) => *key,
            None => self.reload_for(&sealed.key_id)?,
        };
        if sealed.bytes.len() < 12 + 16 {
            return Err(VaultError::Open);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(12);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        let aad = associated_data(tenant_id, integration_id, field);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Open)
    }
}

impl Vault {
    /// `vault rotate` (here or on another host) may have added a key to the file since this
    /// process loaded it: re-read the file and, if it holds `key_id`, adopt its keys and its
    /// active key, so values sealed from now on use the rotated key too. Keys this process
    /// held are kept even if the file dropped them.
    fn reload_for(&self, key_id: &str) -> Result<[u8; 32], VaultError> {
        let path = self
            .file
            .as_ref()
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        let fresh = Self::from_existing_file(path)?.ring();
        let key = *fresh
            .keys
            .get(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        let mut ring = self.ring();
        for (id, material) in fresh.keys {
            ring.keys.entry(id).or_insert(material);
        }
        ring.active = fresh.active;
        self.set_ring(ring);
        tracing::info!(key_id, key_file = %path.display(), "master key file re-read: a new key was added (vault rotate)");
        Ok(key)
    }

    /// Loads an existing key file; never creates one (a missing file is an error here).
    fn from_existing_file(path: &Path) -> Result<Self, VaultError> {
        if !path.exists() {
            return Err(VaultError::KeyFile(
                path.to_owned(),
                "no such file".to_owned(),
            ));
        }
        Self::from_file(path)
    }
}

fn check_value(key: &[u8; 32]) -> String {
    // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(CHECK_LABEL);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn associated_data(tenant_id: &str, integration_id: &str, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tenant_id.len() + integration_id.len() + field.len() + 20);
    aad.extend_from_slice(b"posbridge.v1\0");
    for part in [tenant_id, integration_id, field] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad
}

fn decode_key(material: &str) -> Option<[u8; 32]> {
    B64.decode(material.trim()).ok()?.try_into().ok()
}

fn derived_id(material: &str) -> String {
    format!(
        "env-{}",
        &hex::encode(Sha256::digest(material.trim().as_bytes()))[..8]
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_vault() -> Vault {
        Vault::load(
            Some(&format!("a:{}", B64.encode([7u8; 32]))),
            Path::new("/nonexistent"),
        )
        .unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_row() {
        let v = env_vault();
        let sealed = v.seal("t1", "i1", "credentials", b"secret").unwrap();
        assert_eq!(sealed.key_id, "a");
        assert!(!sealed.bytes.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            v.open("t1", "i1", "credentials", &sealed).unwrap(),
            b"secret"
        );
        assert!(matches!(
            v.open("t2", "i1", "credentials", &sealed),
            Err(VaultError::Open)
        ));
        assert!(matches!(
            v.open("t1", "i2", "credentials", &sealed),
            Err(VaultError::Open)
        ));
        assert!(matches!(
            v.open("t1", "i1", "webhook", &sealed),
            Err(VaultError::Open)
        ));
        let mut tampered = sealed.clone();
        tampered.bytes[14] ^= 1;
        assert!(matches!(
            v.open("t1", "i1", "credentials", &tampered),
            Err(VaultError::Open)
        ));
    }

    #[test]
    fn old_keys_keep_opening_after_a_new_key_becomes_active() {
        let dir = std::env::temp_dir().join(format!("pbvault-{}", uuid::Uuid::now_v7()));
        let path = dir.join("posbridge.keys");
        let mut v = Vault::load(None, &path).unwrap();
        let old = v.seal("t", "i", "f", b"x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let new_id = v.add_key().unwrap();
        assert_ne!(old.key_id, new_id);
        let stale = Vault::load(None, &path).unwrap();
        let mut rotated = Vault::load(None, &path).unwrap();
        rotated.add_key().unwrap();
        let after_rotation = rotated.seal("t", "i", "f", b"z").unwrap();
        assert_eq!(
            stale.open("t", "i", "f", &after_rotation).unwrap(),
            b"z",
            "a running host picks up rotated keys"
        );
        let new_id = rotated.active_key_id().to_owned();
        let reloaded = Vault::load(None, &path).unwrap();
        assert_eq!(reloaded.active_key_id(), new_id);
        assert_eq!(reloaded.open("t", "i", "f", &old).unwrap(), b"x");
        assert_eq!(reloaded.seal("t", "i", "f", b"y").unwrap().key_id, new_id);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn check_values_tell_keys_apart_without_showing_them() {
        let a = env_vault();
        let same = env_vault();
        let other = Vault::load(
            Some(&format!("a:{}", B64.encode([8u8; 32]))),
            Path::new("/nonexistent"),
        )
        .unwrap();
        let (id, check) = a.check_values().remove(0);
        assert_eq!(id, "a");
        assert_eq!(check.len(), 64);
        assert_eq!(same.check_values()[0].1, check);
        assert_ne!(other.check_values()[0].1, check);
        assert!(!check.contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn a_host_adopts_the_rotated_active_key_when_it_meets_it() {
        let dir = std::env::temp_dir().join(format!("pbvault-{}", uuid::Uuid::now_v7()));
        let path = dir.join("posbridge.keys");
        let running = Vault::load(None, &path).unwrap();
        let old_id = running.active_key_id();
        let mut rotating = Vault::load(None, &path).unwrap();
        let new_id = rotating.add_key().unwrap();
        let sealed = rotating.seal("t", "i", "f", b"v").unwrap();
        assert_eq!(running.active_key_id(), old_id);
        assert_eq!(running.open("t", "i", "f", &sealed).unwrap(), b"v");
        assert_eq!(running.active_key_id(), new_id, "adopted the rotated key");
        assert_eq!(running.seal("t", "i", "f", b"w").unwrap().key_id, new_id);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn malformed_env_keys_are_refused() {
        assert!(Vault::load(Some("a:notbase64"), Path::new("/x")).is_err());
        assert!(Vault::load(Some(&B64.encode([1u8; 16])), Path::new("/x")).is_err());
        let bare = Vault::load(Some(&B64.encode([1u8; 32])), Path::new("/x")).unwrap();
        assert!(bare.active_key_id().starts_with("env-"));
    }
}
