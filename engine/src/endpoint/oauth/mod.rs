//! OAuth 2.0 access tokens imapmirror gets itself (`--oauth-provider`), for XOAUTH2
//! logins to Microsoft 365, Google Workspace or any server with a token endpoint.
//!
//! The grants' wire forms live in [`grant`]; this room does the I/O: it reads the secret
//! files, POSTs to the token endpoint and keeps each token until shortly before it
//! expires, so connections of one run share it. Microsoft's token is app-wide (one per
//! endpoint); Google's and the generic grant's are per mailbox.
//!
//! Given the state store ([`TokenGrant::keep_in`], as a batch's passes do), tokens are also
//! kept there, sealed with the endpoint's key: a restarted `serve` or the next `batch
//! start --wait` uses a token that is still fresh instead of asking the provider again.
//! A refresh token the provider rotates (the generic grant, answering a new
//! `refresh_token`) is kept the same way and used from then on in place of the migration
//! file's. No token is ever logged.

pub mod grant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imapmirror_storage::{
    OAuthProvider, OAuthSettings, Secret as StoredSecret, Store, StoredToken, Timestamp,
};

use crate::error::Error;
use crate::secret::Secret;

/// A token is fetched anew this long before it expires (or at half its life if shorter),
/// so a connection never logs in with one about to lapse.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long a token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The answers longer than this are cut (a token response is a few KiB).
const MAX_RESPONSE: usize = 256 * 1024;

/// One endpoint's token source and its cache of tokens.
pub struct TokenGrant {
    endpoint: String,
    settings: OAuthSettings,
    cache: Mutex<HashMap<String, Cached>>,
    /// Refresh tokens the provider rotated: subject → (the migration file's, the current).
    rotated: Mutex<HashMap<String, (Secret, Secret)>>,
    /// One token request per subject at a time: connections that need the same token
    /// wait for the first one's answer instead of each asking (and a rotated refresh
    /// token is never redeemed twice).
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where tokens outlive the process, once a runtime hands its store over.
    store: OnceLock<Store>,
    client: reqwest::Client,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("endpoint", &self.endpoint)
            .field("provider", &self.settings.provider)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TokenGrant {
    /// The grant of `endpoint`'s `settings`; fails only if no HTTP client can be built.
    pub fn new(endpoint: &str, settings: &OAuthSettings) -> Result<Arc<Self>, Error> {
        let client = http_client().map_err(|detail| Error::OAuthGrant {
            endpoint: endpoint.to_owned(),
            provider: settings.provider.as_str(),
            user: String::new(),
            detail,
        })?;
        Ok(Arc::new(Self {
            endpoint: endpoint.to_owned(),
            settings: settings.clone(),
            cache: Mutex::new(HashMap::new()),
            rotated: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            store: OnceLock::new(),
            client,
        }))
    }

    pub fn provider(&self) -> OAuthProvider {
        self.settings.provider
    }

    /// Keeps tokens (and rotated refresh tokens) in `store` from now on, and looks there
    /// before asking the provider. A second store is ignored: a grant serves one process.
    pub fn keep_in(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// The cache key: Microsoft's token is the app's, the others are the mailbox's; one
    /// got with a refresh token is that token's (a migration file that brings another
    /// refresh token for the mailbox does not inherit a token the old one bought). The
    /// digest is short and of a high-entropy secret: it tells nothing of it.
    fn key(&self, user: &str, refresh_token: Option<&Secret>) -> String {
        match (self.settings.provider, refresh_token) {
            (OAuthProvider::Microsoft, _) => String::new(),
            (OAuthProvider::Generic, Some(refresh)) => {
                let digest =
                    ring::digest::digest(&ring::digest::SHA256, refresh.expose().as_bytes());
                let short: String = digest.as_ref()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{user}#{short}")
            }
            _ => user.to_owned(),
        }
    }

    /// Forgets `user`'s token, after the server refused it.
    pub async fn forget(&self, user: &str, refresh_token: Option<&Secret>) {
        let key = self.key(user, refresh_token);
        lock(&self.cache).remove(&key);
        if let Some(store) = self.store.get() {
            let endpoint = self.endpoint.clone();
            if let Err(e) = store
                .run(move |db| db.forget_oauth_token(&endpoint, &key))
                .await
            {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "could not drop a refused OAuth token from the state");
            }
        }
    }

    /// A token for `user`'s mailbox: the cached one while it is fresh (in memory, else in
    /// the store), else a new one (the generic provider redeems the mailbox's
    /// `refresh_token` when it has one, or the token the provider rotated it into).
    pub async fn token(&self, user: &str, refresh_token: Option<&Secret>) -> Result<Secret, Error> {
        let key = self.key(user, refresh_token);
        if let Some(token) = self.fresh(&key) {
            return Ok(token);
        }
        let turn = lock(&self.turns).entry(key.clone()).or_default().clone();
        let _turn = turn.lock().await;
        // Another connection may have got one while this one waited.
        if let Some(token) = self.fresh(&key) {
            return Ok(token);
        }
        if let Some(token) = self.stored(&key).await {
            return Ok(token);
        }
        let refresh = match refresh_token {
            Some(given) if self.settings.provider == OAuthProvider::Generic => {
                Some(self.current_refresh_token(&key, given).await)
            }
            other => other.cloned(),
        };
        let granted =
            self.fetch(user, refresh.as_ref())
                .await
                .map_err(|detail| Error::OAuthGrant {
                    endpoint: self.endpoint.clone(),
                    provider: self.settings.provider.as_str(),
                    user: user.to_owned(),
                    detail,
                })?;
        if let (Some(given), Some(used), Some(new)) = (
            refresh_token,
            refresh.as_ref(),
            granted.refresh_token.as_ref(),
        ) && new != used
        {
            self.keep_rotated(&key, given, new).await;
        }
        let margin = REFRESH_MARGIN.min(granted.expires_in / 2);
        let token = granted.access_token;
        tracing::debug!(
            endpoint = %self.endpoint,
            provider = self.settings.provider.as_str(),
            user,
            expires_in_s = granted.expires_in.as_secs(),
            "got an OAuth access token"
        );
        let fresh_for = granted.expires_in - margin;
        self.keep(&key, &token, fresh_for).await;
        lock(&self.cache).insert(
            key,
            Cached {
                token: token.clone(),
                refresh_at: Instant::now() + fresh_for,
            },
        );
        Ok(token)
    }

    /// The token in memory for `key`, while it is fresh.
    fn fresh(&self, key: &str) -> Option<Secret> {
        lock(&self.cache)
            .get(key)
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// The token kept in the store for `key`, while it is fresh (then cached in memory).
    async fn stored(&self, key: &str) -> Option<Secret> {
        let store = self.store.get()?;
        let (endpoint, subject) = (self.endpoint.clone(), key.to_owned());
        let kept: Option<StoredToken> = match store
            .run(move |db| db.oauth_token(&endpoint, &subject))
            .await
        {
            Ok(kept) => kept,
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "could not read a kept OAuth token; asking the provider");
                None
            }
        };
        let kept = kept?;
        let left = kept
            .fresh_until
            .to_system_time()
            .duration_since(SystemTime::now())
            .ok()
            .filter(|left| !left.is_zero())?;
        let token = Secret::new(kept.token.expose());
        tracing::debug!(endpoint = %self.endpoint, fresh_for_s = left.as_secs(), "using a kept OAuth access token");
        lock(&self.cache).insert(
            key.to_owned(),
            Cached {
                token: token.clone(),
                refresh_at: Instant::now() + left,
            },
        );
        Some(token)
    }

    /// Keeps `token` in the store, to be used for `fresh_for` from now.
    async fn keep(&self, key: &str, token: &Secret, fresh_for: Duration) {
        let Some(store) = self.store.get() else {
            return;
        };
        let (endpoint, subject) = (self.endpoint.clone(), key.to_owned());
        let sealed = StoredSecret::new(token.expose());
        let until = Timestamp::from_system_time(SystemTime::now() + fresh_for);
        if let Err(e) = store
            .run(move |db| db.save_oauth_token(&endpoint, &subject, &sealed, until))
            .await
        {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "could not keep an OAuth token in the state; the next run asks the provider again");
        }
    }

    /// The refresh token to redeem for `key` when the migration file gives `given`: the
    /// one the provider rotated it into, if it did.
    async fn current_refresh_token(&self, key: &str, given: &Secret) -> Secret {
        if let Some((original, current)) = lock(&self.rotated).get(key)
            && original == given
        {
            return current.clone();
        }
        let Some(store) = self.store.get() else {
            return given.clone();
        };
        let (endpoint, subject) = (self.endpoint.clone(), key.to_owned());
        let original = StoredSecret::new(given.expose());
        match store
            .run(move |db| db.rotated_refresh_token(&endpoint, &subject, &original))
            .await
        {
            Ok(Some(current)) => {
                let current = Secret::new(current.expose());
                lock(&self.rotated).insert(key.to_owned(), (given.clone(), current.clone()));
                current
            }
            Ok(None) => given.clone(),
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "could not read a rotated refresh token; using the migration file's");
                given.clone()
            }
        }
    }

    /// The provider answered `new` for the refresh token that descends from `given`: use
    /// it from now on, in this process and the next.
    async fn keep_rotated(&self, key: &str, given: &Secret, new: &Secret) {
        lock(&self.rotated).insert(key.to_owned(), (given.clone(), new.clone()));
        tracing::info!(endpoint = %self.endpoint, user = key, "the provider rotated the mailbox's refresh token; the new one is kept");
        let Some(store) = self.store.get() else {
            return;
        };
        let (endpoint, subject) = (self.endpoint.clone(), key.to_owned());
        let (original, current) = (
            StoredSecret::new(given.expose()),
            StoredSecret::new(new.expose()),
        );
        if let Err(e) = store
            .run(move |db| {
                db.save_rotated_refresh_token(&endpoint, &subject, &original, &current)?;
                // A rotated token is the only one the provider still honours: on disk now.
                db.flush().map(drop)
            })
            .await
        {
            tracing::error!(endpoint = %self.endpoint, user = key, error = %e, "could not keep the rotated refresh token; the next process may have to be given a new one");
        }
    }

    /// Asks the token endpoint; the error is the provider's answer or what went wrong.
    async fn fetch(
        &self,
        user: &str,
        refresh_token: Option<&Secret>,
    ) -> Result<grant::Granted, String> {
        let s = &self.settings;
        let (url, body) = match s.provider {
            OAuthProvider::Google => {
                let path = s
                    .service_account_file
                    .as_ref()
                    .ok_or("no --service-account-file is set")?;
                let text = read_secret_file(path)?;
                let account = grant::ServiceAccount::parse(text.expose())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let url = s.token_url.clone().unwrap_or(account.token_uri.clone());
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                // The audience is the token URI in the key file, what Google checks, even
                // when the request goes elsewhere.
                let assertion = account
                    .assertion(user, &account.token_uri, now)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                (url, grant::jwt_bearer_form(&assertion))
            }
            OAuthProvider::Microsoft | OAuthProvider::Generic => {
                let client_id = s.client_id.as_deref().ok_or("no --client-id is set")?;
                let secret = match &s.client_secret_file {
                    Some(path) => read_secret_file(path)?,
                    None => Secret::new(""),
                };
                let (url, scope) = if s.provider == OAuthProvider::Microsoft {
                    let tenant = s.tenant.as_deref().ok_or("no --tenant is set")?;
                    (
                        s.token_url
                            .clone()
                            .unwrap_or_else(|| grant::microsoft_token_url(tenant)),
                        grant::MICROSOFT_SCOPE,
                    )
                } else {
                    (s.token_url.clone().ok_or("no --token-url is set")?, "")
                };
                let form = match refresh_token {
                    Some(refresh) if s.provider == OAuthProvider::Generic => {
                        grant::refresh_token_form(client_id, &secret, refresh)
                    }
                    _ => grant::client_credentials_form(client_id, &secret, scope),
                };
                (url, form)
            }
        };
        let response = self
            .client
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.expose().to_owned())
            .send()
            .await
            // reqwest's errors name the URL; the request body (the secret) never.
            .map_err(|e| format!("the token endpoint {url} could not be reached ({e})"))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer of {url} failed ({e})"))?;
        grant::parse_response(status, &bytes[..bytes.len().min(MAX_RESPONSE)])
    }
}

/// Reads a secret file, trimmed of the line break editors add.
fn read_secret_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{} could not be read ({e})", path.display()))?;
    Ok(Secret::new(text.trim()))
}

fn http_client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("imapmirror/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}
