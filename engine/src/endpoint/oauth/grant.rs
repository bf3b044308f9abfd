//! The wire side of the three OAuth 2.0 grants, free of I/O: the token request's form,
//! Google's signed JWT, and the token endpoint's answer.
//!
//! - Microsoft 365 (app-only IMAP): `grant_type=client_credentials` with the app's
//!   secret and the scope `https://outlook.office365.com/.default`; one token serves every
//!   mailbox, the mailbox address goes in XOAUTH2's `user=`.
//! - Google Workspace: a service account with domain-wide delegation signs a JWT (RS256)
//!   whose `sub` is the mailbox (RFC 7523 `jwt-bearer` grant); one token per mailbox.
//! - Generic: client credentials at the given token URL.

use std::time::Duration;

use imapmirror_protocol::sasl::{base64_decode, base64_encode};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use crate::secret::Secret;

/// Microsoft's scope for IMAP with an app's own permission.
pub const MICROSOFT_SCOPE: &str = "https://outlook.office365.com/.default";
/// Google's scope for full IMAP access.
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";
/// RFC 7523's grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long a Google assertion is valid (Google's maximum).
pub const ASSERTION_LIFETIME: u64 = 3600;

/// Microsoft's token endpoint for `tenant`.
pub fn microsoft_token_url(tenant: &str) -> String {
    format!(
        "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
        percent_encode(tenant)
    )
}

/// The `application/x-www-form-urlencoded` body of a client-credentials request (an
/// empty secret or scope is left out).
pub fn client_credentials_form(client_id: &str, client_secret: &Secret, scope: &str) -> Secret {
    Secret::new(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
        ("scope", scope),
    ]))
}

/// The body of a `refresh_token` request (RFC 6749 section 6) for one mailbox.
pub fn refresh_token_form(client_id: &str, client_secret: &Secret, refresh: &Secret) -> Secret {
    Secret::new(form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.expose()),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
    ]))
}

/// The body of a `jwt-bearer` request carrying `assertion`.
pub fn jwt_bearer_form(assertion: &Secret) -> Secret {
    Secret::new(form(&[
        ("grant_type", JWT_BEARER),
        ("assertion", assertion.expose()),
    ]))
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// base64url without padding, as JWTs use.
pub fn base64url(data: &[u8]) -> String {
    base64_encode(data)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// Google's JSON key of a service account (the fields imapmirror needs).
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    private_key: String,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses the key file's text; the error says which part is wrong, never the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| {
            format!(
                "it is not a service account's JSON key with client_email, private_key and token_uri (line {}, column {})",
                e.line(),
                e.column()
            )
        })
    }

    /// The signed assertion that asks for `subject`'s mailbox at `audience`, issued at
    /// `now` (seconds since the epoch).
    pub fn assertion(&self, subject: &str, audience: &str, now: u64) -> Result<Secret, String> {
        let key = RsaKeyPair::from_pkcs8(&pem_body(&self.private_key)?)
            .map_err(|e| format!("its private_key is not an RSA PKCS#8 key ({e})"))?;
        let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": subject,
            "scope": GOOGLE_SCOPE,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let signing_input = format!("{header}.{}", base64url(claims.to_string().as_bytes()));
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "signing the assertion with its private_key failed".to_owned())?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            base64url(&signature)
        )))
    }
}

/// The DER inside a PEM `PRIVATE KEY` block.
fn pem_body(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        return Err("its private_key is not a PEM PKCS#8 key (BEGIN PRIVATE KEY)".to_owned());
    }
    base64_decode(body.as_bytes()).map_err(|_| "its private_key's PEM is not base64".to_owned())
}

/// A granted access token and how long it lives.
#[derive(Debug)]
pub struct Granted {
    pub access_token: Secret,
    pub expires_in: Duration,
    /// A new refresh token, when the provider rotates them (RFC 6749 section 6: the
    /// client must then use it and forget the old one).
    pub refresh_token: Option<Secret>,
}

/// Tokens without `expires_in` are taken to live this long (the providers' usual hour).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The token endpoint's answer: a token, or what the provider said against it.
pub fn parse_response(status: u16, body: &[u8]) -> Result<Granted, String> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
        refresh_token: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            return Err(format!("HTTP {status}, not JSON: {text:?}"));
        }
    };
    if let Some(error) = answer.error {
        return Err(match answer.error_description {
            // The sentence goes on after it.
            Some(d) => format!("HTTP {status}, {error}: {}", d.trim().trim_end_matches('.')),
            None => format!("HTTP {status}, {error}"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status} without an error code"));
    }
    let Some(token) = answer.access_token.filter(|t| !t.is_empty()) else {
        return Err(format!("HTTP {status} without an access_token"));
    };
    // The token goes into a SASL message; a line break would end the IMAP command early.
    if token.contains(['\r', '\n', '\0', '\u{1}']) {
        return Err("an access_token with control characters".to_owned());
    }
    // Some servers send the lifetime as a string.
    let seconds = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    // A refresh token goes into a form body later: the same care as the access token.
    let refresh_token = answer
        .refresh_token
        .filter(|t| !t.is_empty() && !t.contains(['\r', '\n', '\0']))
        .map(Secret::new);
    Ok(Granted {
        access_token: Secret::new(token),
        expires_in: seconds.map_or(DEFAULT_LIFETIME, Duration::from_secs),
        refresh_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_form_is_url_encoded() {
        let body = client_credentials_form("app id", &Secret::new("s&=+"), MICROSOFT_SCOPE);
        assert_eq!(
            body.expose(),
            "grant_type=client_credentials&client_id=app%20id&client_secret=s%26%3D%2B&scope=https%3A%2F%2Foutlook.office365.com%2F.default"
        );
        assert!(!format!("{body:?}").contains("s%26"));
    }

    #[test]
    fn refresh_token_form_leaves_out_an_empty_secret() {
        let body = refresh_token_form("c", &Secret::new(""), &Secret::new("r/1"));
        assert_eq!(
            body.expose(),
            "grant_type=refresh_token&refresh_token=r%2F1&client_id=c"
        );
    }

    #[test]
    fn microsoft_url_names_the_tenant() {
        assert_eq!(
            microsoft_token_url("contoso.onmicrosoft.com"),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn base64url_has_no_padding_or_plus() {
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(b"a"), "YQ");
    }

    #[test]
    fn responses_give_a_token_or_the_providers_words() {
        let ok = parse_response(
            200,
            br#"{"access_token":"t","expires_in":"5","token_type":"Bearer"}"#,
        )
        .expect("token");
        assert_eq!(ok.access_token.expose(), "t");
        assert_eq!(ok.expires_in, Duration::from_secs(5));
        assert!(ok.refresh_token.is_none());
        let rotated = parse_response(
            200,
            br#"{"access_token":"t","expires_in":60,"refresh_token":"r-2"}"#,
        )
        .expect("token");
        assert_eq!(
            rotated.refresh_token.as_ref().map(Secret::expose),
            Some("r-2")
        );
        let no = parse_response(
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        )
        .expect_err("refused");
        assert_eq!(
            no,
            "HTTP 401, invalid_client: AADSTS7000215: Invalid client secret provided"
        );
        assert!(parse_response(502, b"<html>bad gateway</html>").is_err());
        assert!(parse_response(200, br#"{"token_type":"Bearer"}"#).is_err());
        assert!(parse_response(200, br#"{"access_token":"a\r\nb"}"#).is_err());
    }

    /// The test-only key pair of tests/fixtures: the assertion verifies with the public
    /// key, and says what Google reads.
    #[test]
    fn assertions_are_rs256_jwts_for_the_mailbox() {
        let account = ServiceAccount::parse(include_str!(
            "../../../../tests/fixtures/oauth-test-service-account.json"
        ))
        .expect("fixture parses");
        let public =
            include_bytes!("../../../../tests/fixtures/oauth-test-service-account.pub.der");
        let jwt = account
            .assertion("a@x.test", "https://oauth2.googleapis.com/token", 1_000)
            .expect("signs");
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| {
            let std: String = p
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            let pad = "=".repeat((4 - std.len() % 4) % 4);
            base64_decode(format!("{std}{pad}").as_bytes()).expect("base64url")
        };
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &public[..],
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &decode(parts[2]),
        )
        .expect("signature verifies");
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).expect("json");
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).expect("json");
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": account.client_email,
                "sub": "a@x.test",
                "scope": GOOGLE_SCOPE,
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_000,
                "exp": 4_600,
            })
        );
        let form = jwt_bearer_form(&jwt);
        assert!(form.expose().starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ));
    }

    #[test]
    fn key_files_that_are_not_keys_are_refused_without_echoing_them() {
        let err = ServiceAccount::parse(r#"{"client_email":"x"}"#).expect_err("incomplete");
        assert!(
            err.contains("client_email, private_key and token_uri"),
            "{err}"
        );
        let sa = ServiceAccount::parse(
            r#"{"client_email":"x","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","token_uri":"u"}"#,
        )
        .expect("parses");
        assert!(!format!("{sa:?}").contains("AAAA"));
        let err = sa.assertion("a@x.test", "u", 0).expect_err("not RSA");
        assert!(err.contains("not an RSA PKCS#8 key"), "{err}");
    }
}
