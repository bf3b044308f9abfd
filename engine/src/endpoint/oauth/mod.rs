//! OAuth 2.0 access tokens imapmirror gets itself (`--oauth-provider`), for XOAUTH2
//! logins to Microsoft 365, Google Workspace or any server with a token endpoint.
//!
//! The grants' wire forms live in [`grant`]; this room does the I/O: it reads the secret
//! files, POSTs to the token endpoint and keeps each token until shortly before it
//! expires, so connections of one run share it. Microsoft's token is app-wide (one per
//! endpoint); Google's and the generic grant's are per mailbox.

pub mod grant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imapmirror_storage::{OAuthProvider, OAuthSettings};

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
            client,
        }))
    }

    pub fn provider(&self) -> OAuthProvider {
        self.settings.provider
    }

    /// The cache key: Microsoft's token is the app's, the others are the mailbox's.
    fn key(&self, user: &str) -> String {
        match self.settings.provider {
            OAuthProvider::Microsoft => String::new(),
            _ => user.to_owned(),
        }
    }

    /// Forgets `user`'s token, after the server refused it.
    pub fn forget(&self, user: &str) {
        let key = self.key(user);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// A token for `user`'s mailbox: the cached one while it is fresh, else a new one
    /// (the generic provider redeems the mailbox's `refresh_token` when it has one).
    pub async fn token(&self, user: &str, refresh_token: Option<&Secret>) -> Result<Secret, Error> {
        let key = self.key(user);
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|c| Instant::now() < c.refresh_at)
        {
            return Ok(c.token.clone());
        }
        let granted =
            self.fetch(user, refresh_token)
                .await
                .map_err(|detail| Error::OAuthGrant {
                    endpoint: self.endpoint.clone(),
                    provider: self.settings.provider.as_str(),
                    user: user.to_owned(),
                    detail,
                })?;
        let margin = REFRESH_MARGIN.min(granted.expires_in / 2);
        let token = granted.access_token;
        tracing::debug!(
            endpoint = %self.endpoint,
            provider = self.settings.provider.as_str(),
            user,
            expires_in_s = granted.expires_in.as_secs(),
            "got an OAuth access token"
        );
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            key,
            Cached {
                token: token.clone(),
                refresh_at: Instant::now() + granted.expires_in - margin,
            },
        );
        Ok(token)
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
