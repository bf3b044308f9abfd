//! What a proxy needs to route logins, read in one go.
//!
//! The store has one owning process at a time (`serve`, a foreground pass, or a short
//! command). A proxy running beside them must not hold the store, so it routes from a
//! [`RoutingSnapshot`]: taken from the store when it is free, or by the owner over its
//! control socket, and kept in memory between polls. [`Database::routing_version`] is cheap
//! (batches and endpoints only), so a poll that finds nothing changed never walks the
//! login index or decrypts a credential.

use serde::{Deserialize, Serialize};

use crate::batch_status::BatchStatus;
use crate::database::Database;
use crate::endpoints::EndpointSettings;
use crate::error::Result;
use crate::key_layout::{BatchId, mailbox_id_from_key};
use crate::secret::Secret;
use crate::timestamp::Timestamp;

/// A batch as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedBatch {
    pub id: BatchId,
    pub name: String,
    pub status: BatchStatus,
    pub source_endpoint: String,
    pub target_endpoint: String,
    /// A login in two batches follows the newest.
    pub created: Timestamp,
}

/// One login (an EmailAddress or a source UserName, lower-cased) of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedLogin {
    pub login: String,
    pub batch: BatchId,
}

/// An endpoint, with its admin password only when the snapshot was asked for secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedEndpoint {
    pub settings: EndpointSettings,
    pub has_admin_password: bool,
    /// Serialized only here, on purpose: the snapshot crosses the control socket, which
    /// lives in the 0700 state directory beside the key files it would be decrypted with.
    #[serde(with = "secret_text", default)]
    pub admin_password: Option<Secret>,
}

/// Batches, their logins and the endpoints they use, at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingSnapshot {
    /// [`Database::routing_version`] when the snapshot was taken.
    pub version: String,
    pub batches: Vec<RoutedBatch>,
    pub logins: Vec<RoutedLogin>,
    pub endpoints: Vec<RoutedEndpoint>,
}

impl Database {
    /// A digest of everything routing depends on besides the login index: each batch's id,
    /// status and last status change, and each endpoint's settings. Logins only change
    /// with a batch being added or removed, which changes this too.
    pub fn routing_version(&self) -> Result<String> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for b in self.batches()? {
            ctx.update(format!("B{}|{:?}|{:?}\n", b.id.0, b.status, b.status_changed).as_bytes());
        }
        for e in self.endpoints()? {
            ctx.update(format!("E{:?}|{}\n", e.settings, e.has_admin_password).as_bytes());
        }
        let digest = ctx.finish();
        Ok(digest
            .as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Everything routing needs; admin passwords only `with_secrets`.
    pub fn routing_snapshot(&self, with_secrets: bool) -> Result<RoutingSnapshot> {
        let version = self.routing_version()?;
        let batches: Vec<RoutedBatch> = self
            .batches()?
            .into_iter()
            .map(|b| RoutedBatch {
                id: b.id,
                name: b.settings.name,
                status: b.status,
                source_endpoint: b.settings.source_endpoint,
                target_endpoint: b.settings.target_endpoint,
                created: b.created,
            })
            .collect();
        let mut logins = Vec::new();
        for item in self.inner.logins.iter().keys() {
            let k = item.map_err(self.db_err("list logins"))?;
            // `len:2 login batch:8 mailbox:8`: see mailboxes.rs.
            let Some(len) = k
                .get(..2)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            else {
                continue;
            };
            let (Some(login), Some(id)) = (
                k.get(2..2 + len),
                k.get(2 + len..).and_then(mailbox_id_from_key),
            ) else {
                continue;
            };
            // A batch being created or removed is not routed.
            if !batches.iter().any(|b| b.id == id.batch) {
                continue;
            }
            logins.push(RoutedLogin {
                login: String::from_utf8_lossy(login).into_owned(),
                batch: id.batch,
            });
        }
        let mut endpoints = Vec::new();
        for e in self.endpoints()? {
            let admin_password = if with_secrets && e.has_admin_password {
                self.endpoint_admin_password(&e.settings.name)?
            } else {
                None
            };
            endpoints.push(RoutedEndpoint {
                settings: e.settings,
                has_admin_password: e.has_admin_password,
                admin_password,
            });
        }
        Ok(RoutingSnapshot {
            version,
            batches,
            logins,
            endpoints,
        })
    }
}

mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(secret) => s.serialize_some(secret.expose()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchSettings, MigrationRow, NewMailbox, Security};

    fn endpoint(name: &str) -> EndpointSettings {
        EndpointSettings {
            admin_user: Some("admin".to_owned()),
            admin_format: Some(crate::AdminFormat::Dovecot),
            ..EndpointSettings::new(name, "127.0.0.1", 143, Security::None)
        }
    }

    #[test]
    fn snapshot_lists_logins_by_batch_and_version_follows_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Database::open(dir.path(), &crate::StoreOptions::default()).expect("open");
        store
            .add_endpoint(&endpoint("src"), Some(&Secret::new("adm-pw")))
            .expect("src");
        store.add_endpoint(&endpoint("dst"), None).expect("dst");
        let settings = BatchSettings::new("b1", "src", "dst");
        let row = MigrationRow {
            email_address: "Anna@Example.test".to_owned(),
            user_name: "anna".to_owned(),
            user_root: None,
            target_user_name: None,
        };
        store
            .create_batch(
                &settings,
                &[NewMailbox {
                    row,
                    password: Secret::new("pw"),
                    target_password: None,
                    refresh_token: None,
                }],
            )
            .expect("batch");
        let snap = store.routing_snapshot(false).expect("snapshot");
        assert_eq!(snap.batches.len(), 1);
        let mut logins: Vec<_> = snap.logins.iter().map(|l| l.login.as_str()).collect();
        logins.sort();
        assert_eq!(logins, ["anna", "anna@example.test"]);
        assert!(snap.endpoints.iter().all(|e| e.admin_password.is_none()));
        let json = serde_json::to_string(&snap).expect("json");
        assert!(!json.contains("adm-pw"), "no secret unless asked: {json}");

        let with = store.routing_snapshot(true).expect("snapshot");
        let src = with
            .endpoints
            .iter()
            .find(|e| e.settings.name == "src")
            .expect("src");
        assert_eq!(
            src.admin_password.as_ref().map(Secret::expose),
            Some("adm-pw")
        );
        let back: RoutingSnapshot =
            serde_json::from_str(&serde_json::to_string(&with).expect("json")).expect("parse");
        assert_eq!(back, with);

        let before = store.routing_version().expect("version");
        assert_eq!(before, snap.version);
        store
            .set_batch_status("b1", BatchStatus::Completed)
            .expect("status");
        assert_ne!(store.routing_version().expect("version"), before);
    }
}
