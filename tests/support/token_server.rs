//! A local OAuth 2.0 token endpoint for the XOAUTH2 tests, on an ephemeral 127.0.0.1
//! port. It checks what a real provider checks and nothing less:
//!
//! - `client_credentials` (Microsoft's app-only grant, and the generic one): the client
//!   id and secret, and the scope when one is required;
//! - `refresh_token` (the generic grant with a mailbox's refresh token): the client's
//!   credentials and a refresh token it knows; with `rotate_refresh_tokens` each answer
//!   carries a new refresh token and the one redeemed is no longer honoured (RFC 6749
//!   section 6, as Microsoft's and many identity providers' rotation does);
//! - `urn:ietf:params:oauth:grant-type:jwt-bearer` (Google's service account): the JWT's
//!   RS256 signature against the account's public key, its header, `iss`, `aud`,
//!   `scope`, `iat`/`exp` and a `sub` among the delegated mailboxes.
//!
//! It issues opaque tokens that live `lifetime`, and answers introspection
//! (`GET /introspect?token=`, RFC 7662's answer) for Dovecot's `passdb oauth2`: `active` and the
//! `username` the token was granted for. Client-credentials tokens are the app's, not a
//! mailbox's, and Dovecot 2.3 neither tells the introspection endpoint who logs in (a
//! `%u` in the URL is not expanded but breaks it) nor accepts an answer without the
//! user: so app tokens introspect as the one `app_user`.
//!
//! Not part of `support/mod.rs` (the engine's tests have no axum): include it with
//! `#[path = "support/token_server.rs"] mod token_server;`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

use crate::support::base64_codec;

pub const CLIENT_ID: &str = "imapmirror-test-app";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const MICROSOFT_SCOPE: &str = "https://outlook.office365.com/.default";
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What the server accepts.
#[derive(Clone, Debug)]
pub struct TokenServerConfig {
    /// The scope a client-credentials request must carry (None: any or none).
    pub required_scope: Option<String>,
    /// The service account: its email, the `aud` its assertions must name, and its public
    /// key (PKCS#1 DER).
    pub service_account: Option<(String, String, Vec<u8>)>,
    /// The mailboxes the app (client credentials) and the service account may open.
    pub mailboxes: Vec<String>,
    /// Refresh tokens the server honours, and the mailbox each is for.
    pub refresh_tokens: Vec<(String, String)>,
    /// The mailbox an app (client-credentials) token is introspected as.
    pub app_user: Option<String>,
    /// How long an issued token lives.
    pub lifetime: Duration,
    /// Answer every refresh-token grant with a new refresh token, and refuse the old one.
    pub rotate_refresh_tokens: bool,
}

/// A granted token, as the server remembers it.
#[derive(Clone, Debug)]
struct Issued {
    /// The mailbox for a delegated token; None for the app's own.
    user: Option<String>,
    expires: Instant,
}

#[derive(Default)]
struct Ledger {
    tokens: HashMap<String, Issued>,
    issued: usize,
    refused: usize,
    next: u64,
    /// Refresh tokens honoured now, and the mailbox each is for.
    refresh: HashMap<String, String>,
    /// Refresh tokens issued by rotation (to look for them in logs and state files).
    rotated: Vec<String>,
}

struct Shared {
    config: TokenServerConfig,
    ledger: Mutex<Ledger>,
}

/// The running server; stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(config: TokenServerConfig) -> TokenServer {
        let ledger = Ledger {
            refresh: config.refresh_tokens.iter().cloned().collect(),
            ..Ledger::default()
        };
        let shared = Arc::new(Shared {
            config,
            ledger: Mutex::new(ledger),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/token", post(token))
            .route("/{tenant}/oauth2/v2.0/token", post(tenant_token))
            .route("/introspect", get(introspect))
            .with_state(Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("token server runs");
            });
        });
        TokenServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Tokens granted so far.
    pub fn issued(&self) -> usize {
        self.ledger().issued
    }

    /// Token requests refused so far.
    pub fn refused(&self) -> usize {
        self.ledger().refused
    }

    /// Every token granted so far (to look for them in logs).
    pub fn tokens(&self) -> Vec<String> {
        self.ledger().tokens.keys().cloned().collect()
    }

    /// Refresh tokens issued by rotation so far.
    pub fn rotated_refresh_tokens(&self) -> Vec<String> {
        self.ledger().rotated.clone()
    }

    /// Revokes every token (as an administrator who rotates the app's secret would).
    pub fn revoke_all(&self) {
        self.ledger().tokens.clear();
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A refused grant: the HTTP status, RFC 6749's error code, the description.
struct Refusal(StatusCode, &'static str, String);

fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> Refusal {
    Refusal(status, error, description.to_owned())
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(status, error, description) = self;
        (
            status,
            axum::Json(serde_json::json!({ "error": error, "error_description": description })),
        )
            .into_response()
    }
}

async fn tenant_token(
    State(shared): State<Arc<Shared>>,
    Path(_tenant): Path<String>,
    form: Form<HashMap<String, String>>,
) -> Response {
    token(State(shared), form).await
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut ledger = shared.ledger.lock().unwrap_or_else(|e| e.into_inner());
    let grant_type = form.get("grant_type").map(String::as_str);
    let verdict = match grant_type {
        Some("client_credentials") => client_credentials(&shared.config, &form),
        Some(JWT_BEARER) => jwt_bearer(&shared.config, &form),
        Some("refresh_token") => refresh_token(&shared.config, &ledger.refresh, &form),
        other => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other:?} is not supported"),
        )),
    };
    match verdict {
        Err(refusal) => {
            ledger.refused += 1;
            refusal.into_response()
        }
        Ok(user) => {
            ledger.next += 1;
            ledger.issued += 1;
            let token = format!("opaque-test-token-{}-{}", ledger.next, std::process::id());
            ledger.tokens.insert(
                token.clone(),
                Issued {
                    user,
                    expires: Instant::now() + shared.config.lifetime,
                },
            );
            let mut answer = serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": shared.config.lifetime.as_secs(),
            });
            if grant_type == Some("refresh_token")
                && shared.config.rotate_refresh_tokens
                && let Some(old) = form.get("refresh_token")
                && let Some(owner) = ledger.refresh.remove(old)
            {
                let new = format!("rotated-refresh-{}-{}", ledger.next, std::process::id());
                ledger.refresh.insert(new.clone(), owner);
                ledger.rotated.push(new.clone());
                answer["refresh_token"] = serde_json::Value::String(new);
            }
            axum::Json(answer).into_response()
        }
    }
}

fn client_credentials(
    config: &TokenServerConfig,
    form: &HashMap<String, String>,
) -> Result<Option<String>, Refusal> {
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        ));
    }
    if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        ));
    }
    if let Some(scope) = &config.required_scope
        && form.get("scope") != Some(scope)
    {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("the scope must be {scope}"),
        ));
    }
    Ok(None)
}

/// RFC 6749 section 6: the client's credentials, and a refresh token the server knows.
fn refresh_token(
    config: &TokenServerConfig,
    honoured: &HashMap<String, String>,
    form: &HashMap<String, String>,
) -> Result<Option<String>, Refusal> {
    client_credentials(
        &TokenServerConfig {
            required_scope: None,
            ..config.clone()
        },
        form,
    )?;
    form.get("refresh_token")
        .and_then(|given| honoured.get(given))
        .map(|user| Some(user.clone()))
        .ok_or_else(|| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The refresh token is invalid or expired.",
            )
        })
}

fn base64url(text: &str) -> Option<Vec<u8>> {
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64_codec::decode(standard.as_bytes(), base64_codec::STANDARD, false)
}

fn jwt_bearer(
    config: &TokenServerConfig,
    form: &HashMap<String, String>,
) -> Result<Option<String>, Refusal> {
    let invalid = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let Some((email, audience, public_key)) = &config.service_account else {
        return Err(invalid("no service account is known here"));
    };
    let assertion = form
        .get("assertion")
        .ok_or_else(|| invalid("no assertion"))?;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(invalid("the assertion is not a JWS compact serialisation"));
    };
    let signature = base64url(signature).ok_or_else(|| invalid("signature not base64url"))?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| invalid("Invalid JWT Signature."))?;
    let header: serde_json::Value = base64url(header)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("header not JSON"))?;
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err(invalid("header must be {alg:RS256,typ:JWT}"));
    }
    let claims: serde_json::Value = base64url(claims)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("claims not JSON"))?;
    if claims["iss"] != email.as_str() {
        return Err(invalid("iss is not the service account"));
    }
    if claims["aud"] != audience.as_str() {
        return Err(invalid("aud is not the token URI"));
    }
    if claims["scope"] != GOOGLE_SCOPE {
        return Err(invalid("scope is not https://mail.google.com/"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(invalid("iat and exp must be numbers"));
    };
    if iat > now + 60 || exp < now || exp - iat > 3600 {
        return Err(invalid(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        ));
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    if !config.mailboxes.iter().any(|m| m == sub) {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        ));
    }
    Ok(Some(sub.to_owned()))
}

/// Introspection (`?token=`): whether the token is live, and for which mailbox.
async fn introspect(
    State(shared): State<Arc<Shared>>,
    Query(form): Query<HashMap<String, String>>,
) -> Response {
    let token = form.get("token");
    let ledger = shared.ledger.lock().unwrap_or_else(|e| e.into_inner());
    let issued = token
        .and_then(|t| ledger.tokens.get(t))
        .filter(|i| Instant::now() < i.expires);
    let user = match issued {
        Some(Issued { user: Some(u), .. }) => Some(u.clone()),
        Some(Issued { user: None, .. }) => shared.config.app_user.clone(),
        None => None,
    };
    match user {
        Some(u) => axum::Json(serde_json::json!({ "active": true, "username": u })),
        None => axum::Json(serde_json::json!({ "active": false })),
    }
    .into_response()
}
