//! Endpoints: the IMAP servers mail comes from and goes to. Settings live in the
//! `endpoints` tree; the admin password is sealed apart in the `secrets` tree.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::database::Database;
use crate::error::{Result, StoreError};
use crate::key_layout;
use crate::record_codec::{decode_json, encode_json};
use crate::secret::Secret;
use crate::secret_vault::KeyOwner;
use crate::timestamp::Timestamp;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (port 993).
    Ssl,
    /// STARTTLS on a plain connection (port 143).
    Starttls,
    /// No TLS (loopback and tests only).
    None,
}

/// How mailboxes are logged in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    Plain,
    Login,
    Xoauth2,
}

/// Whose token endpoint grants XOAUTH2 access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthProvider {
    /// Microsoft 365: the app's client-credentials grant, one token for every mailbox.
    Microsoft,
    /// Google Workspace: a service account with domain-wide delegation, a signed JWT per
    /// mailbox.
    Google,
    /// Any other server: client credentials at `token_url`.
    Generic,
}

impl OAuthProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Microsoft => "microsoft",
            Self::Google => "google",
            Self::Generic => "generic",
        }
    }
}

/// How imapmirror gets access tokens itself. Secrets stay in the files named here (read
/// when a token is fetched), never in the store's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthSettings {
    pub provider: OAuthProvider,
    /// Microsoft's directory (tenant) id or domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A file holding the client secret (Microsoft, generic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Google's JSON key of the service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_file: Option<PathBuf>,
    /// Overrides the provider's token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
}

/// How admin credentials name the user to act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminFormat {
    Dovecot,
    Sasl,
    Exchange,
    Mirapoint,
}

/// The hosted service an endpoint is, when the administrator says so (`endpoint add
/// --provider`) rather than leaving it to what the server says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Google's Gmail / Workspace.
    Gmail,
    /// Microsoft 365 / Exchange Online.
    Microsoft365,
    /// Any other server: no hosted-service profile, whatever it says of itself.
    Generic,
}

/// An endpoint's settings (never its password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSettings {
    /// Its name: letters, digits, `-` and `_`.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub auth: AuthMechanism,
    /// The admin (master) user, if mailboxes are opened with admin credentials.
    pub admin_user: Option<String>,
    pub admin_format: Option<AdminFormat>,
    /// Dovecot's `auth_master_user_separator` when it is not `*` (`--admin-format
    /// dovecot:%`); absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_separator: Option<char>,
    /// For `--auth xoauth2`: the command that prints an access token for a user
    /// (`IMAPMIRROR_OAUTH_USER`); run for every new connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_token_command: Option<String>,
    /// For `--auth xoauth2`: the OAuth provider whose token endpoint imapmirror asks
    /// itself (`--oauth-provider`), instead of a token command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<Box<OAuthSettings>>,
    /// Folders of one mailbox synced at once, each over its own connection (absent: the
    /// engine's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_mailbox: Option<u32>,
    pub max_concurrent_migrations: u32,
    pub max_concurrent_syncs: u32,
    /// A PEM file of CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// The one server certificate to trust instead of any CA (`--pin-cert`), as
    /// `sha256:` and the 64 hex digits of its DER's SHA-256; absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_certificate: Option<String>,
    /// The provider profile to use whatever the server says (`--provider`); absent: the
    /// one detected from its ID, greeting and capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// The most this endpoint takes in all, across every shard (`--max-rate`): at most one
    /// message rate and one byte rate. Each process keeps to its share, this divided by
    /// the shard count of the batches that use the endpoint
    /// ([`Database::endpoint_shard_count`]). Empty: no limit; absent in older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub max_rate: Vec<MaxRate>,
}

/// What a [`MaxRate`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    Messages,
    Bytes,
}

/// The period a [`MaxRate`] is given over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

impl RatePeriod {
    /// Its length in seconds.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }
}

/// A rate as the administrator gave it: `amount` messages or bytes per `per` (the
/// engine's `rate_budget` parses and prints its text form, e.g. `10GB/h`). Kept in the
/// period it was given in, so that `endpoint list` shows what was typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxRate {
    /// Messages or bytes (never 0).
    pub amount: u64,
    pub unit: RateUnit,
    pub per: RatePeriod,
}

impl MaxRate {
    /// Messages or bytes per second.
    pub fn per_second(&self) -> f64 {
        self.amount as f64 / f64::from(self.per.seconds())
    }
}

/// Mailboxes in their initial pass at once per endpoint, by default (Exchange's value).
pub const DEFAULT_MAX_CONCURRENT_MIGRATIONS: u32 = 20;
/// Mailboxes in an incremental or final pass at once per endpoint, by default (Exchange's
/// value).
pub const DEFAULT_MAX_CONCURRENT_SYNCS: u32 = 10;

impl EndpointSettings {
    /// An endpoint with `endpoint add`'s defaults: plain authentication, no admin
    /// credentials, the default concurrency limits, the system's CA roots. Other fields
    /// are set with struct update syntax, so a field added later needs no edit here.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        security: Security,
    ) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port,
            security,
            auth: AuthMechanism::Plain,
            admin_user: None,
            admin_format: None,
            admin_separator: None,
            oauth_token_command: None,
            oauth: None,
            connections_per_mailbox: None,
            max_concurrent_migrations: DEFAULT_MAX_CONCURRENT_MIGRATIONS,
            max_concurrent_syncs: DEFAULT_MAX_CONCURRENT_SYNCS,
            ca_file: None,
            insecure_skip_verify: false,
            pinned_certificate: None,
            provider: None,
            max_rate: Vec::new(),
        }
    }
}

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub settings: EndpointSettings,
    /// Whether an admin password is stored.
    pub has_admin_password: bool,
    pub created: Timestamp,
}

/// Whether `name` may name an endpoint or a batch: 1 to 64 letters, digits, `-` and `_`
/// (it becomes part of keys and file names).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a user-chosen name (endpoint or batch) ([`is_valid_name`]).
pub(crate) fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind,
            name: name.to_string(),
        })
    }
}

fn secret_key(name: &str) -> Vec<u8> {
    key_layout::key(b'E', &[name.as_bytes()])
}

impl Database {
    /// Adds an endpoint; fails if the name is taken.
    pub fn add_endpoint(
        &self,
        settings: &EndpointSettings,
        admin_password: Option<&Secret>,
    ) -> Result<EndpointRecord> {
        validate_name("endpoint", &settings.name)?;
        if self.endpoint(&settings.name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "endpoint",
                name: settings.name.clone(),
                dir: self.path().to_path_buf(),
            });
        }
        self.write_endpoint(settings, admin_password, Timestamp::now())
    }

    /// Replaces an endpoint's settings; `admin_password` replaces the stored password
    /// when given and keeps it when `None`.
    pub fn update_endpoint(
        &self,
        settings: &EndpointSettings,
        admin_password: Option<&Secret>,
    ) -> Result<EndpointRecord> {
        let old = self
            .endpoint(&settings.name)?
            .ok_or_else(|| StoreError::NotFound {
                kind: "endpoint",
                name: settings.name.clone(),
                dir: self.path().to_path_buf(),
            })?;
        let record = EndpointRecord {
            settings: settings.clone(),
            has_admin_password: old.has_admin_password || admin_password.is_some(),
            created: old.created,
        };
        if let Some(pw) = admin_password {
            let owner = KeyOwner::Endpoint(settings.name.clone());
            let sealed = self
                .inner
                .vault
                .seal(&owner, &secret_key(&settings.name), pw)?;
            self.inner
                .secrets
                .insert(secret_key(&settings.name), sealed)
                .map_err(self.db_err("store an endpoint credential"))?;
        }
        self.inner
            .endpoints
            .insert(settings.name.as_bytes(), encode_json(&record, "endpoint")?)
            .map_err(self.db_err("store an endpoint"))?;
        Ok(record)
    }

    fn write_endpoint(
        &self,
        settings: &EndpointSettings,
        admin_password: Option<&Secret>,
        created: Timestamp,
    ) -> Result<EndpointRecord> {
        let owner = KeyOwner::Endpoint(settings.name.clone());
        // A fresh key per endpoint: ciphertexts of a removed namesake stay unreadable.
        self.inner.vault.create_key(&owner)?;
        if let Some(pw) = admin_password {
            let sealed = self
                .inner
                .vault
                .seal(&owner, &secret_key(&settings.name), pw)?;
            self.inner
                .secrets
                .insert(secret_key(&settings.name), sealed)
                .map_err(self.db_err("store an endpoint credential"))?;
        }
        let record = EndpointRecord {
            settings: settings.clone(),
            has_admin_password: admin_password.is_some(),
            created,
        };
        self.inner
            .endpoints
            .insert(settings.name.as_bytes(), encode_json(&record, "endpoint")?)
            .map_err(self.db_err("store an endpoint"))?;
        Ok(record)
    }

    /// An endpoint by name.
    pub fn endpoint(&self, name: &str) -> Result<Option<EndpointRecord>> {
        let v = self
            .inner
            .endpoints
            .get(name.as_bytes())
            .map_err(self.db_err("read an endpoint"))?;
        v.map(|v| decode_json(&v).map_err(|e| self.corrupt(format!("endpoint {name:?}"), e)))
            .transpose()
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> Result<Vec<EndpointRecord>> {
        let mut out = Vec::new();
        for item in self.inner.endpoints.iter() {
            let (k, v) = item.map_err(self.db_err("list endpoints"))?;
            let name = String::from_utf8_lossy(&k).into_owned();
            out.push(decode_json(&v).map_err(|e| self.corrupt(format!("endpoint {name:?}"), e))?);
        }
        Ok(out)
    }

    /// The admin password of an endpoint, if one is stored.
    pub fn endpoint_admin_password(&self, name: &str) -> Result<Option<Secret>> {
        let key = secret_key(name);
        let v = self
            .inner
            .secrets
            .get(&key)
            .map_err(self.db_err("read an endpoint credential"))?;
        v.map(|v| {
            self.inner
                .vault
                .open(&KeyOwner::Endpoint(name.to_string()), &key, &v)
        })
        .transpose()
    }

    /// The strictest shard count among the batches stored here that use endpoint `name`
    /// (as source or target): 1 when none is sharded. A process keeps to the endpoint's
    /// `max_rate` divided by this, so that its N shards, each in its own process and state
    /// directory, stay within the whole rate together. Batches sharded N ways on the same
    /// endpoint in one process share the one budget; the largest N keeps every one of
    /// them within its own share.
    pub fn endpoint_shard_count(&self, name: &str) -> Result<u32> {
        Ok(self
            .batches()?
            .iter()
            .filter(|b| b.settings.source_endpoint == name || b.settings.target_endpoint == name)
            .filter_map(|b| b.shard.map(|s| s.count))
            .fold(1, u32::max))
    }

    /// Removes an endpoint and shreds its credential. Refused while a batch uses it.
    pub fn remove_endpoint(&self, name: &str) -> Result<()> {
        if self.endpoint(name)?.is_none() {
            return Err(StoreError::NotFound {
                kind: "endpoint",
                name: name.to_string(),
                dir: self.path().to_path_buf(),
            });
        }
        for batch in self.batches()? {
            let s = &batch.settings;
            if s.source_endpoint == name || s.target_endpoint == name {
                return Err(StoreError::EndpointInUse {
                    endpoint: name.to_string(),
                    batch: s.name.clone(),
                    dir: self.path().to_path_buf(),
                });
            }
        }
        // Key first: if we crash after this, the ciphertext is already noise.
        self.inner
            .vault
            .remove_key(&KeyOwner::Endpoint(name.to_string()))?;
        self.inner
            .secrets
            .remove(secret_key(name))
            .map_err(self.db_err("remove an endpoint credential"))?;
        self.erase_oauth_tokens(name)?;
        self.inner
            .endpoints
            .remove(name.as_bytes())
            .map_err(self.db_err("remove an endpoint"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_a_max_rate_still_decode() {
        // Written before `--max-rate` existed: no `max_rate` key.
        let old = r#"{"settings":{"name":"old","host":"imap.example.test","port":993,
            "security":"ssl","auth":"plain","admin_user":null,"admin_format":null,
            "max_concurrent_migrations":20,"max_concurrent_syncs":10,"ca_file":null,
            "insecure_skip_verify":false},"has_admin_password":false,"created":0}"#;
        let record: EndpointRecord = serde_json::from_str(old).expect("old record");
        assert!(record.settings.max_rate.is_empty());
        // And a record with rates makes the round trip.
        let mut settings = record.settings.clone();
        settings.max_rate = vec![MaxRate {
            amount: 10_000_000_000,
            unit: RateUnit::Bytes,
            per: RatePeriod::Hour,
        }];
        let text = serde_json::to_string(&settings).expect("encode");
        assert!(text.contains(r#""unit":"bytes""#), "{text}");
        let back: EndpointSettings = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, settings);
        assert!((back.max_rate[0].per_second() - 10_000_000_000.0 / 3600.0).abs() < 1e-6);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("batch", "wave-1_B").is_ok());
        for bad in ["", "a b", "../x", "é", &"x".repeat(65)] {
            let err = validate_name("batch", bad).expect_err(bad);
            assert_eq!(err.kind(), crate::ErrorKind::UserInput);
        }
    }
}
