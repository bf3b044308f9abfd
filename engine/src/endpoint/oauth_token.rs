//! OAuth 2.0 access tokens for XOAUTH2 logins, from the administrator's own command.
//!
//! Providers differ in how an administrator gets a token for a user's mailbox (Google: a
//! service account with domain-wide delegation; Microsoft 365: an app's client-credentials
//! grant; a private server: its own tool), and tokens expire within the hour. So an
//! endpoint names a command (`--oauth-token-command`), like mbsync's `PassCmd`: it runs
//! under `sh -c` with the mailbox's user in `IMAPMIRROR_OAUTH_USER` (and as `$1`) and prints
//! the access token on stdout. It is run for every new connection, so a token is always
//! fresh; a command that wants to cache does so itself.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::endpoint::credentials::Secret;
use crate::error::Error;

/// The environment variable that names the user to the command.
pub const USER_ENV: &str = "IMAPMIRROR_OAUTH_USER";

/// The longest a token command may run.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Tokens longer than this are refused (a JWT is a few KiB).
const MAX_TOKEN: u64 = 64 * 1024;

/// Runs `command` for `user` and returns the token it printed.
pub async fn fetch_token(endpoint: &str, command: &str, user: &str) -> Result<Secret, Error> {
    let fail = |detail: String| Error::OAuthToken {
        endpoint: endpoint.to_owned(),
        user: user.to_owned(),
        detail,
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .arg("imapmirror-oauth")
        .arg(user)
        .env(USER_ENV, user)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("it could not be started ({e})")))?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(fail("its output could not be read".to_owned()));
    };
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = (&mut stdout).take(MAX_TOKEN + 1);
        let mut stderr = (&mut stderr).take(4096);
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1.and(r2)?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let (status, out, err) = tokio::time::timeout(TOKEN_TIMEOUT, run)
        .await
        .map_err(|_| {
            fail(format!(
                "it did not finish within {} s",
                TOKEN_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| fail(format!("reading its output failed ({e})")))?;
    if !status.success() {
        let said = String::from_utf8_lossy(&err);
        let said = said.trim();
        return Err(fail(if said.is_empty() {
            format!("it exited with {status}")
        } else {
            format!("it exited with {status}: {said}")
        }));
    }
    if out.len() as u64 > MAX_TOKEN {
        return Err(fail(format!("it printed more than {MAX_TOKEN} bytes")));
    }
    let text = String::from_utf8(out)
        .map_err(|_| fail("it printed bytes that are not UTF-8".to_owned()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail("it printed no token".to_owned()));
    }
    // The token goes into a SASL message; a line break would end the IMAP command early.
    if token.contains(['\r', '\n', '\0', '\u{1}']) {
        return Err(fail(
            "it printed more than one line; print only the access token".to_owned(),
        ));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_command_gets_the_user_and_prints_the_token() {
        let token = fetch_token("ep", "echo \"tok-$IMAPMIRROR_OAUTH_USER-$1\"", "a@x.test")
            .await
            .expect("token");
        assert_eq!(token.expose(), "tok-a@x.test-a@x.test");
    }

    #[tokio::test]
    async fn failures_say_why_without_the_token() {
        let err = fetch_token("ep", "echo secret-ish; echo 'no grant' >&2; exit 3", "u")
            .await
            .expect_err("fails");
        let text = err.to_string();
        assert!(text.contains("no grant") && text.contains("ep"), "{text}");
        assert!(!text.contains("secret-ish"), "{text}");
        for (command, why) in [
            ("true", "no token"),
            ("printf 'a\\nb'", "more than one line"),
        ] {
            let text = fetch_token("ep", command, "u")
                .await
                .expect_err(command)
                .to_string();
            assert!(text.contains(why), "{command}: {text}");
        }
    }
}
