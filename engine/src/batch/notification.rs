//! The notification webhook of a batch: when a pass over the batch finishes or fails, the
//! batch summary is POSTed as JSON to the batch's URL, retried with back-off. Delivery
//! runs on its own tasks and never blocks a sync: a full queue drops the notification
//! with a warning rather than wait.
//!
//! The URL of each batch is kept by the store, sealed like a password (a webhook URL often
//! carries its token) and shredded with the batch.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::batch::report::BatchSummary;
use crate::endpoint::reconnect_policy::ReconnectPolicy;
use crate::error::Error;

/// Notifications waiting for delivery before new ones are dropped.
const QUEUE_LEN: usize = 256;

/// What happened, as the `event` field of the POSTed JSON says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassEvent {
    /// Every mailbox of the pass succeeded.
    PassFinished,
    /// The pass ended with at least one failed mailbox.
    PassFailed,
    /// The final pass succeeded and the batch is Completed.
    BatchCompleted,
}

/// The JSON body of a notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub event: PassEvent,
    pub batch: BatchSummary,
}

struct Delivery {
    url: String,
    body: Vec<u8>,
    batch: String,
}

/// Hands notifications to the delivery task; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Delivery>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the delivery task. It ends once every `Notifier` clone is dropped and the
    /// deliveries in progress are done (or have used up their retries).
    pub fn start(retry: ReconnectPolicy) -> (Notifier, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let task = tokio::spawn(deliver_all(rx, retry));
        (Notifier { tx }, task)
    }

    /// Queues `notification` for `url` without waiting.
    pub fn send(&self, url: &str, notification: &Notification) {
        let body = match serde_json::to_vec(notification) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a notification (a bug in imapmirror)");
                return;
            }
        };
        let delivery = Delivery {
            url: url.to_owned(),
            body,
            batch: notification.batch.name.clone(),
        };
        if let Err(e) = self.tx.try_send(delivery) {
            tracing::warn!(batch = %notification.batch.name, error = %e, "notification dropped: the delivery queue is full or closed");
        }
    }
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
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("imapmirror/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

async fn deliver_all(mut rx: mpsc::Receiver<Delivery>, retry: ReconnectPolicy) {
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; notifications are disabled");
            while rx.recv().await.is_some() {}
            return;
        }
    };
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(d) => { running.spawn(deliver(client.clone(), d, retry)); }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

async fn deliver(client: reqwest::Client, d: Delivery, retry: ReconnectPolicy) {
    let mut attempt = 0u32;
    loop {
        let result = client
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.clone())
            .send()
            .await;
        let problem = match result {
            Ok(r) if r.status().is_success() => {
                tracing::info!(batch = %d.batch, status = r.status().as_u16(), "notification delivered");
                return;
            }
            // A 4xx other than 408/429 will not get better by retrying.
            Ok(r)
                if r.status().is_client_error()
                    && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                    && r.status() != reqwest::StatusCode::REQUEST_TIMEOUT =>
            {
                tracing::warn!(batch = %d.batch, status = r.status().as_u16(), "the webhook refused the notification; not retrying");
                return;
            }
            Ok(r) => format!("HTTP status {}", r.status()),
            // reqwest errors name the URL, which may carry a token: keep only the kind.
            Err(e) => describe(&e),
        };
        attempt += 1;
        if !retry.allows(attempt) {
            tracing::warn!(batch = %d.batch, attempts = attempt, problem = %problem, "notification given up");
            return;
        }
        let jitter = u64::from(std::process::id()) ^ u64::from(attempt).rotate_left(17);
        let delay = retry.delay(attempt, None, jitter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tracing::info!(batch = %d.batch, attempt, delay_ms = delay.as_millis() as u64, problem = %problem, "notification failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    kind.to_owned()
}

/// Checks a webhook URL given on the command line.
pub fn check_url(url: &str) -> Result<(), Error> {
    let invalid = |problem: &str| Error::InvalidSetting {
        problem: format!(
            "the notification URL is not usable because {problem} (give an http:// or https:// URL)"
        ),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(()),
        "http" | "https" => Err(invalid("it has no host")),
        other => Err(invalid(&format!("its scheme is {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.test/T0/B1?token=x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("ftp://example.test/").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[tokio::test]
    async fn a_notification_is_posted_as_json_and_retried() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            // First attempt: a 503, then a 200 with the body kept.
            let mut bodies = Vec::new();
            for status in ["503 Service Unavailable", "200 OK"] {
                let (mut sock, _) = listener.accept().await.expect("accept");
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.expect("read");
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len: usize = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().expect("length"))
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + len {
                            bodies.push(buf[head_end + 4..].to_vec());
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                sock.write_all(reply.as_bytes()).await.expect("write");
            }
            bodies
        });
        let retry = ReconnectPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
            max_retries: 3,
        };
        let (notifier, task) = Notifier::start(retry);
        let summary: BatchSummary = serde_json::from_value(serde_json::json!({
            "name": "wave-1", "status": "Synced", "source": "s", "target": "t",
            "excluded_folders": [], "mailboxes_total": 1, "mailboxes_queued": 0,
            "mailboxes_syncing": 0, "mailboxes_synced": 1, "mailboxes_failed": 0,
            "mailboxes_stopped": 0, "mailboxes_completed": 0, "items_synced": 5,
            "items_skipped": 0, "bytes_synced": 500, "created": "x",
            "last_sync_started": null, "last_sync_finished": null, "next_sync_due": null,
            "sync_interval_secs": 60
        }))
        .expect("summary");
        notifier.send(
            &format!("http://{addr}/hook"),
            &Notification {
                event: PassEvent::PassFinished,
                batch: summary,
            },
        );
        drop(notifier);
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("delivery finishes")
            .expect("task");
        let bodies = server.await.expect("server");
        assert_eq!(bodies.len(), 2, "one failed attempt, one retry");
        let json: serde_json::Value = serde_json::from_slice(&bodies[1]).expect("json body");
        assert_eq!(json["event"], "pass_finished");
        assert_eq!(json["batch"]["name"], "wave-1");
        assert_eq!(json["batch"]["items_synced"], 5);
    }
}
