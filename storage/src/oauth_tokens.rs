//! OAuth tokens an endpoint's grant obtained (`endpoint add --oauth-provider`), kept so
//! that a restarted `serve` or the next `batch start --wait` reuses a token that is still
//! valid instead of asking the provider again, and so that a refresh token the provider
//! rotated is not lost with the process.
//!
//! `secrets` tree, sealed with the endpoint's key (so removing the endpoint shreds them):
//!
//! ```text
//! O endpoint 0x00 subject -> fresh-until-ms varint, sealed access token
//! R endpoint 0x00 subject -> SHA-256 of the refresh token it replaced (32), sealed current one
//! ```
//!
//! `subject` is the mailbox a token is for, or empty for an app-wide token. Endpoint names
//! hold no NUL, so `O endpoint 0x00` is exactly one endpoint's range. A rotated refresh
//! token is used only in place of the one it descends from: a migration file that brings a
//! different refresh token for the mailbox (the user signed in again) wins over it.

use ring::digest::{SHA256, digest};

use crate::database::Database;
use crate::error::Result;
use crate::key_layout;
use crate::record_codec::{Reader, Writer};
use crate::secret::Secret;
use crate::secret_vault::KeyOwner;
use crate::timestamp::Timestamp;

const ACCESS: u8 = b'O';
const REFRESH: u8 = b'R';

/// An access token as kept, with the instant it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub token: Secret,
    pub fresh_until: Timestamp,
}

fn token_key(kind: u8, endpoint: &str, subject: &str) -> Vec<u8> {
    key_layout::key(kind, &[endpoint.as_bytes(), &[0], subject.as_bytes()])
}

fn endpoint_prefix(kind: u8, endpoint: &str) -> Vec<u8> {
    key_layout::key(kind, &[endpoint.as_bytes(), &[0]])
}

fn fingerprint(secret: &Secret) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.expose().as_bytes()).as_ref());
    out
}

impl Database {
    /// Keeps `endpoint`'s access token for `subject` (empty: the app's own), to be used
    /// until `fresh_until`.
    pub fn save_oauth_token(
        &self,
        endpoint: &str,
        subject: &str,
        token: &Secret,
        fresh_until: Timestamp,
    ) -> Result<()> {
        let key = token_key(ACCESS, endpoint, subject);
        let sealed =
            self.inner
                .vault
                .seal(&KeyOwner::Endpoint(endpoint.to_owned()), &key, token)?;
        let mut w = Writer::versioned(sealed.len() + 10);
        w.varint(fresh_until.unix_millis());
        w.bytes(&sealed);
        self.inner
            .secrets
            .insert(key, w.finish())
            .map_err(self.db_err("store an OAuth token"))?;
        Ok(())
    }

    /// The kept access token of `endpoint` for `subject`, fresh or not (the caller
    /// judges). A value that no longer opens (the endpoint was removed and added again,
    /// or the record is damaged) reads as none: a token can always be fetched anew.
    pub fn oauth_token(&self, endpoint: &str, subject: &str) -> Result<Option<StoredToken>> {
        let key = token_key(ACCESS, endpoint, subject);
        let Some(v) = self
            .inner
            .secrets
            .get(&key)
            .map_err(self.db_err("read an OAuth token"))?
        else {
            return Ok(None);
        };
        let Ok(mut r) = Reader::versioned(&v) else {
            return Ok(None);
        };
        let (Ok(fresh_until), Ok(sealed)) = (r.varint(), r.bytes()) else {
            return Ok(None);
        };
        let owner = KeyOwner::Endpoint(endpoint.to_owned());
        Ok(self
            .inner
            .vault
            .open(&owner, &key, sealed)
            .ok()
            .map(|token| StoredToken {
                token,
                fresh_until: Timestamp::from_unix_millis(fresh_until),
            }))
    }

    /// Drops the kept access token (the server refused it).
    pub fn forget_oauth_token(&self, endpoint: &str, subject: &str) -> Result<()> {
        self.inner
            .secrets
            .remove(token_key(ACCESS, endpoint, subject))
            .map_err(self.db_err("remove an OAuth token"))?;
        Ok(())
    }

    /// Records that the provider replaced `original` (the refresh token the migration
    /// file gave for `subject`) with `current`.
    pub fn save_rotated_refresh_token(
        &self,
        endpoint: &str,
        subject: &str,
        original: &Secret,
        current: &Secret,
    ) -> Result<()> {
        let key = token_key(REFRESH, endpoint, subject);
        let sealed =
            self.inner
                .vault
                .seal(&KeyOwner::Endpoint(endpoint.to_owned()), &key, current)?;
        let mut w = Writer::versioned(32 + sealed.len() + 4);
        w.raw(&fingerprint(original));
        w.bytes(&sealed);
        self.inner
            .secrets
            .insert(key, w.finish())
            .map_err(self.db_err("store a refresh token"))?;
        Ok(())
    }

    /// The refresh token to use for `subject` when the migration file gives `original`:
    /// the one the provider rotated it into, if any.
    pub fn rotated_refresh_token(
        &self,
        endpoint: &str,
        subject: &str,
        original: &Secret,
    ) -> Result<Option<Secret>> {
        let key = token_key(REFRESH, endpoint, subject);
        let Some(v) = self
            .inner
            .secrets
            .get(&key)
            .map_err(self.db_err("read a refresh token"))?
        else {
            return Ok(None);
        };
        let Ok(mut r) = Reader::versioned(&v) else {
            return Ok(None);
        };
        let (Ok(origin), Ok(sealed)) = (r.raw(32), r.bytes()) else {
            return Ok(None);
        };
        if origin != fingerprint(original) {
            return Ok(None);
        }
        let owner = KeyOwner::Endpoint(endpoint.to_owned());
        Ok(self.inner.vault.open(&owner, &key, sealed).ok())
    }

    /// Erases every token kept for `endpoint` (at its removal).
    pub(crate) fn erase_oauth_tokens(&self, endpoint: &str) -> Result<()> {
        for kind in [ACCESS, REFRESH] {
            self.delete_prefix(&self.inner.secrets, &endpoint_prefix(kind, endpoint))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::StoreOptions;
    use crate::endpoints::{EndpointSettings, Security};

    fn db_with(endpoints: &[&str]) -> (tempfile::TempDir, Database) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        for (i, name) in endpoints.iter().enumerate() {
            db.add_endpoint(
                &EndpointSettings::new(*name, "127.0.0.1", 143 + i as u16, Security::None),
                None,
            )
            .expect("endpoint");
        }
        (tmp, db)
    }

    #[test]
    fn access_tokens_are_sealed_per_endpoint_and_subject() {
        let (tmp, db) = db_with(&["m365", "m3"]);
        let fresh_until = Timestamp::from_unix_millis(1_800_000_000_000);
        let token = Secret::new("eyJ0eXAi-access-token-1");
        db.save_oauth_token("m365", "alice@example.test", &token, fresh_until)
            .expect("save");
        db.flush().expect("flush");
        assert_eq!(
            db.oauth_token("m365", "alice@example.test").expect("read"),
            Some(StoredToken {
                token: token.clone(),
                fresh_until
            })
        );
        // Another subject, another endpoint whose name is a prefix of this one.
        assert_eq!(
            db.oauth_token("m365", "bob@example.test").expect("read"),
            None
        );
        assert_eq!(
            db.oauth_token("m3", "alice@example.test").expect("read"),
            None
        );
        let on_disk = walk(tmp.path());
        assert!(
            !on_disk
                .windows(token.expose().len())
                .any(|w| w == token.expose().as_bytes()),
            "the token is sealed"
        );
        db.forget_oauth_token("m365", "alice@example.test")
            .expect("forget");
        assert_eq!(
            db.oauth_token("m365", "alice@example.test").expect("read"),
            None
        );
    }

    #[test]
    fn a_rotated_refresh_token_replaces_only_the_one_it_descends_from() {
        let (_tmp, db) = db_with(&["corp"]);
        let original = Secret::new("refresh-0");
        let rotated = Secret::new("refresh-1");
        assert_eq!(
            db.rotated_refresh_token("corp", "a@x.test", &original)
                .expect("read"),
            None
        );
        db.save_rotated_refresh_token("corp", "a@x.test", &original, &rotated)
            .expect("save");
        assert_eq!(
            db.rotated_refresh_token("corp", "a@x.test", &original)
                .expect("read"),
            Some(rotated)
        );
        // A new token from a new migration file is not overridden.
        assert_eq!(
            db.rotated_refresh_token("corp", "a@x.test", &Secret::new("refresh-new"))
                .expect("read"),
            None
        );
    }

    #[test]
    fn removing_the_endpoint_erases_its_tokens_only() {
        let (_tmp, db) = db_with(&["a", "ab"]);
        let fresh_until = Timestamp::from_unix_millis(1_800_000_000_000);
        for ep in ["a", "ab"] {
            db.save_oauth_token(ep, "", &Secret::new("t"), fresh_until)
                .expect("save");
            db.save_rotated_refresh_token(ep, "u", &Secret::new("r0"), &Secret::new("r1"))
                .expect("save");
        }
        db.remove_endpoint("a").expect("remove");
        assert_eq!(db.oauth_token("a", "").expect("read"), None);
        assert!(db.oauth_token("ab", "").expect("read").is_some());
        assert!(
            db.rotated_refresh_token("ab", "u", &Secret::new("r0"))
                .expect("read")
                .is_some()
        );
        // Added again: a fresh key, nothing of the old tokens.
        db.add_endpoint(
            &EndpointSettings::new("a", "127.0.0.1", 993, Security::None),
            None,
        )
        .expect("again");
        assert_eq!(db.oauth_token("a", "").expect("read"), None);
    }

    fn walk(dir: &std::path::Path) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                all.extend(walk(&path));
            } else {
                all.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
        all
    }
}
