//! Retrying a backend login that the backend refused for its own momentary trouble.
//!
//! Dovecot answers `NO [UNAVAILABLE] Internal error occurred. Refer to server log for more
//! information.` when its login process loses the race for its auth process under load
//! (or the auth process restarts). The password was not judged; a client shown that NO
//! asks its user for a password that is right. Dovecot's own proxy reconnects and tries
//! again, and so does this one: on a fresh backend connection, after 100 ms and then
//! 200 ms, before the client sees anything.
//!
//! Such a refusal is never the client's failure: the login throttle counts neither the
//! retried ones nor a last one that is still `UNAVAILABLE` (its credentials were never
//! judged, so it reveals nothing to someone guessing passwords).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use imapmirror_protocol::{Code, Response, StatusKind, parse_response};

/// The waits before the second and the third attempt.
pub(crate) const BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(200)];

/// True when a refusal (its lines, the tagged one last) is the backend's momentary
/// trouble, RFC 5530's `NO [UNAVAILABLE]`, rather than a verdict on the credentials.
pub(crate) fn is_transient_refusal(lines: &[Bytes]) -> bool {
    lines.last().is_some_and(|tagged| {
        matches!(
            parse_response(tagged),
            Ok(Response::Status(s))
                if s.tag.is_some() && s.kind == StatusKind::No && s.code == Some(Code::Unavailable)
        )
    })
}

/// Runs `attempt` (a whole login on a connection of its own) until `transient` says its
/// result is final, waiting `backoff[k]` before retry `k + 1`; errors end it at once (the
/// caller already retries a stale pooled connection inside `attempt`). Returns the last
/// result and how many retries it took.
pub(crate) async fn with_retries<T, E, F, Fut>(
    backoff: &[Duration],
    mut attempt: F,
    transient: impl Fn(&T) -> bool,
) -> Result<(T, usize), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut retries = 0;
    loop {
        let result = attempt().await?;
        match backoff.get(retries) {
            Some(wait) if transient(&result) => {
                tracing::info!(
                    retry = retries + 1,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "backend answered the login with NO [UNAVAILABLE]; retrying on a fresh connection"
                );
                // The refused attempt's connection is dropped with its result: a retry on
                // it could meet the same broken state.
                drop(result);
                tokio::time::sleep(*wait).await;
                retries += 1;
            }
            _ => return Ok((result, retries)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn lines(text: &str) -> Vec<Bytes> {
        text.split_inclusive("\r\n")
            .map(|l| Bytes::copy_from_slice(l.as_bytes()))
            .collect()
    }

    #[test]
    fn only_a_tagged_no_unavailable_is_transient() {
        let dovecot = "a NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information. [2024-01-02 10:00:00]\r\n";
        assert!(is_transient_refusal(&lines(dovecot)));
        assert!(is_transient_refusal(&lines(&format!(
            "* OK [ALERT] hi\r\n{dovecot}"
        ))));
        for final_answer in [
            "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            "a NO Internal error occurred.\r\n",
            "a BAD [UNAVAILABLE] odd\r\n",
            "* NO [UNAVAILABLE] untagged\r\n",
        ] {
            assert!(
                !is_transient_refusal(&lines(final_answer)),
                "{final_answer}"
            );
        }
        assert!(!is_transient_refusal(&[]));
    }

    #[tokio::test]
    async fn retries_twice_then_gives_the_last_answer() {
        let calls = AtomicUsize::new(0);
        let waits = [Duration::from_millis(1), Duration::from_millis(2)];
        // Always unavailable: three attempts, the third answer is final.
        let (last, retries) = with_retries(
            &waits,
            || async { Ok::<_, ()>(calls.fetch_add(1, Ordering::SeqCst)) },
            |_| true,
        )
        .await
        .unwrap();
        assert_eq!((last, retries, calls.load(Ordering::SeqCst)), (2, 2, 3));
        // Unavailable once, then accepted.
        calls.store(0, Ordering::SeqCst);
        let (last, retries) = with_retries(
            &waits,
            || async { Ok::<_, ()>(calls.fetch_add(1, Ordering::SeqCst)) },
            |n| *n == 0,
        )
        .await
        .unwrap();
        assert_eq!((last, retries), (1, 1));
        // An error is not retried here.
        calls.store(0, Ordering::SeqCst);
        let err = with_retries(
            &waits,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<usize, _>("down")
            },
            |_| true,
        )
        .await;
        assert_eq!((err, calls.load(Ordering::SeqCst)), (Err("down"), 1));
    }
}
