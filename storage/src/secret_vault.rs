//! Encrypted credentials with crypto-shredding.
//!
//! sled is log-structured: deleting a record leaves its old bytes in older log segments
//! until they are cleaned, so a plaintext password could never be reliably erased from the
//! database. The database therefore holds only ciphertext (ChaCha20-Poly1305, a random
//! nonce per value, the record's key as associated data); each batch and each endpoint
//! has its own random 256-bit key in its own 0600 file under `keys/`. Removing the owner
//! deletes that file, after which the ciphertext left anywhere in the log is noise.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Result, StoreError};
use crate::record_codec::{Reader, Writer};
use crate::secret::Secret;

const KEY_LEN: usize = 32;

/// Whose key a credential is sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyOwner {
    Batch(u64),
    Endpoint(String),
}

impl KeyOwner {
    fn file_name(&self) -> String {
        match self {
            KeyOwner::Batch(id) => format!("batch-{id:016x}.key"),
            KeyOwner::Endpoint(name) => format!("endpoint-{name}.key"),
        }
    }

    fn from_file_name(name: &str) -> Option<KeyOwner> {
        let stem = name.strip_suffix(".key")?;
        if let Some(hex) = stem.strip_prefix("batch-") {
            return u64::from_str_radix(hex, 16).ok().map(KeyOwner::Batch);
        }
        stem.strip_prefix("endpoint-")
            .map(|n| KeyOwner::Endpoint(n.to_string()))
    }

    fn describe(&self) -> String {
        match self {
            KeyOwner::Batch(id) => format!("batch #{id}"),
            KeyOwner::Endpoint(name) => format!("endpoint {name:?}"),
        }
    }
}

/// The directory of key files.
#[derive(Debug)]
pub(crate) struct SecretVault {
    keys_dir: PathBuf,
    state_dir: PathBuf,
    rng: SystemRandom,
}

impl SecretVault {
    pub(crate) fn new(state_dir: &Path, keys_dir: PathBuf) -> Self {
        SecretVault {
            keys_dir,
            state_dir: state_dir.to_path_buf(),
            rng: SystemRandom::new(),
        }
    }

    fn key_path(&self, owner: &KeyOwner) -> PathBuf {
        self.keys_dir.join(owner.file_name())
    }

    /// Creates a fresh key for `owner`, replacing any old one (whose ciphertexts become
    /// unreadable, which is what re-adding a removed endpoint should mean).
    pub(crate) fn create_key(&self, owner: &KeyOwner) -> Result<()> {
        let mut key = [0u8; KEY_LEN];
        self.rng.fill(&mut key).map_err(|_| StoreError::Random {
            dir: self.state_dir.clone(),
        })?;
        let path = self.key_path(owner);
        let tmp = path.with_extension("key.tmp");
        let io = |action, source| StoreError::Io {
            action,
            path: tmp.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create the key file", e))?;
        file.write_all(&key)
            .map_err(|e| io("write the key file", e))?;
        file.sync_all().map_err(|e| io("flush the key file", e))?;
        key.fill(0);
        fs::rename(&tmp, &path).map_err(|e| StoreError::Io {
            action: "install the key file",
            path: path.clone(),
            source: e,
        })?;
        self.sync_dir()
    }

    /// Deletes the key of `owner` (crypto-shredding its ciphertexts). Absent is fine, so
    /// an interrupted removal can be repeated.
    pub(crate) fn remove_key(&self, owner: &KeyOwner) -> Result<()> {
        let path = self.key_path(owner);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                action: "delete the key file",
                path,
                source: e,
            }),
        }
    }

    /// Every owner that has a key file (to find keys whose owner no longer exists).
    pub(crate) fn owners(&self) -> Result<Vec<KeyOwner>> {
        let entries = fs::read_dir(&self.keys_dir).map_err(|e| StoreError::Io {
            action: "list the key directory",
            path: self.keys_dir.clone(),
            source: e,
        })?;
        let mut owners = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::Io {
                action: "list the key directory",
                path: self.keys_dir.clone(),
                source: e,
            })?;
            if let Some(owner) = entry
                .file_name()
                .to_str()
                .and_then(KeyOwner::from_file_name)
            {
                owners.push(owner);
            }
        }
        Ok(owners)
    }

    fn load_key(&self, owner: &KeyOwner) -> Result<LessSafeKey> {
        let path = self.key_path(owner);
        let unavailable = || StoreError::SecretUnavailable {
            dir: self.state_dir.clone(),
            owner: owner.describe(),
        };
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unavailable()),
            Err(e) => {
                return Err(StoreError::Io {
                    action: "read the key file",
                    path,
                    source: e,
                });
            }
        };
        let mut key = [0u8; KEY_LEN];
        let mut extra = [0u8; 1];
        file.read_exact(&mut key).map_err(|_| unavailable())?;
        if file.read(&mut extra).map_err(|_| unavailable())? != 0 {
            return Err(unavailable());
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| unavailable());
        key.fill(0);
        Ok(LessSafeKey::new(unbound?))
    }

    /// Encrypts `secret` for storage under the database key `aad`.
    pub(crate) fn seal(&self, owner: &KeyOwner, aad: &[u8], secret: &Secret) -> Result<Vec<u8>> {
        let key = self.load_key(owner)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| StoreError::Random {
            dir: self.state_dir.clone(),
        })?;
        let mut in_out = secret.expose().as_bytes().to_vec();
        let sealed = key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out,
        );
        if sealed.is_err() {
            in_out.fill(0);
            return Err(StoreError::SecretUnavailable {
                dir: self.state_dir.clone(),
                owner: owner.describe(),
            });
        }
        let mut w = Writer::versioned(NONCE_LEN + in_out.len());
        w.raw(&nonce);
        w.raw(&in_out);
        Ok(w.finish())
    }

    /// Decrypts a value written by [`SecretVault::seal`] under the same `aad`.
    pub(crate) fn open(&self, owner: &KeyOwner, aad: &[u8], value: &[u8]) -> Result<Secret> {
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: self.state_dir.clone(),
            what: format!("credential of {}", owner.describe()),
            detail,
        };
        let mut r = Reader::versioned(value).map_err(|e| corrupt(e.0))?;
        let nonce = r.raw(NONCE_LEN).map_err(|e| corrupt(e.0))?;
        let mut nonce_arr = [0u8; NONCE_LEN];
        nonce_arr.copy_from_slice(nonce);
        let mut rest = r.take_rest().to_vec();
        let key = self.load_key(owner)?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce_arr),
                Aad::from(aad),
                &mut rest,
            )
            .map_err(|_| StoreError::SecretUnavailable {
                dir: self.state_dir.clone(),
                owner: owner.describe(),
            })?;
        let text = std::str::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| corrupt("decrypted credential is not UTF-8".into()));
        rest.fill(0);
        text
    }

    fn sync_dir(&self) -> Result<()> {
        // The rename or unlink of a key file is durable only once its directory is synced.
        fs::File::open(&self.keys_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::Io {
                action: "flush the key directory",
                path: self.keys_dir.clone(),
                source: e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> (tempfile::TempDir, SecretVault) {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).expect("keys dir");
        let v = SecretVault::new(dir.path(), keys);
        (dir, v)
    }

    #[test]
    fn seal_open_round_trip_and_shred() {
        let (_dir, v) = vault();
        let owner = KeyOwner::Batch(7);
        v.create_key(&owner).expect("key");
        let sealed = v
            .seal(&owner, b"rec-1", &Secret::new("pässword"))
            .expect("seal");
        assert!(!sealed.windows(8).any(|w| w == "pässwor".as_bytes()));
        assert_eq!(
            v.open(&owner, b"rec-1", &sealed).expect("open").expose(),
            "pässword"
        );
        // Bound to its record: moving the ciphertext under another key fails.
        assert!(matches!(
            v.open(&owner, b"rec-2", &sealed),
            Err(StoreError::SecretUnavailable { .. })
        ));
        assert_eq!(v.owners().expect("owners"), vec![owner.clone()]);
        v.remove_key(&owner).expect("remove");
        v.remove_key(&owner).expect("remove twice is fine");
        assert!(matches!(
            v.open(&owner, b"rec-1", &sealed),
            Err(StoreError::SecretUnavailable { .. })
        ));
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, v) = vault();
        let owner = KeyOwner::Endpoint("src-1".into());
        v.create_key(&owner).expect("key");
        let meta = fs::metadata(dir.path().join("keys/endpoint-src-1.key")).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
    }

    #[test]
    fn truncated_ciphertext_is_an_error() {
        let (_dir, v) = vault();
        let owner = KeyOwner::Batch(1);
        v.create_key(&owner).expect("key");
        for bad in [&[][..], &[1u8][..], &[1u8, 2, 3][..], &[9u8; 40][..]] {
            assert!(v.open(&owner, b"k", bad).is_err());
        }
    }

    #[test]
    fn file_names_round_trip() {
        for owner in [
            KeyOwner::Batch(u64::MAX),
            KeyOwner::Endpoint("a_b-C".into()),
        ] {
            assert_eq!(KeyOwner::from_file_name(&owner.file_name()), Some(owner));
        }
        assert_eq!(KeyOwner::from_file_name("batch-zz.key"), None);
        assert_eq!(KeyOwner::from_file_name("notes.txt"), None);
    }
}
