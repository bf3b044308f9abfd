//! `serve --http ADDR`: the migration's status over HTTP — the status pages (`/`,
//! `/batch/NAME`, `status_page.rs`), the JSON of `batch status --json` and `batch users
//! --json` from the same handlers (`/batches`, `/batches/NAME`, `/batches/NAME/users`), the
//! CSV report (`/batches/NAME/report.csv`) and the whole report as JSON with the batch's
//! shard (`/batches/NAME/report.json`, what `batch report --merge` reads), the Prometheus metrics (`/metrics`,
//! `metrics_export.rs`) and `/healthz`. Read-only.
//!
//! Pages, JSON and reports name every mailbox of the migration: with `--http-token-file`
//! every request but `/healthz` needs `Authorization: Bearer TOKEN` (or, for a browser,
//! HTTP Basic with the token as password). Bound to anything but loopback without a token,
//! `serve` warns.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use imapmirror_engine::control::request::{Control, Reply, Request};
use imapmirror_engine::{CancellationToken, Fault};
use serde::Deserialize;

use crate::live_progress::LiveProgress;
use crate::metrics_export;
use crate::status_page::{self, MailboxFilter};
use metrics_exporter_prometheus::PrometheusHandle;

/// What the handlers share.
#[derive(Clone)]
struct HttpState {
    control: Arc<Control>,
    live: Arc<LiveProgress>,
    metrics: PrometheusHandle,
}

/// The bearer token every request but `/healthz` must carry, when one is set.
#[derive(Clone)]
struct Token(Arc<str>);

/// Binds `addr` now (so a taken port fails `serve` at once) and returns the server task.
/// Installs the process's metrics recorder and sets the batches' metrics from the store,
/// so call it before the scheduler starts its passes.
pub async fn start(
    addr: SocketAddr,
    token: Option<String>,
    control: Arc<Control>,
    live: Arc<LiveProgress>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("The HTTP status address {addr} cannot be bound; pick a free address for --http.")
    })?;
    let metrics = metrics_export::recorder()?;
    imapmirror_engine::migration_metrics::describe();
    // Seeded now, before any pass of this process: from the first scrape the counters
    // show the stored totals, not zero.
    metrics_export::refresh_batches(&control).await?;
    if token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the status pages and JSON name every mailbox and are served beyond loopback without a token; give --http-token-file to require one");
    }
    let mut app = Router::new()
        .route("/", get(overview_page))
        .route("/batch/{name}", get(batch_page))
        .route("/batches", get(batches))
        .route("/batches/{name}", get(batch))
        .route("/batches/{name}/users", get(users))
        .route("/batches/{name}/report.csv", get(report_csv))
        .route("/batches/{name}/report.json", get(report_json))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState {
            control,
            live,
            metrics,
        });
    if let Some(token) = token {
        app = app.layer(middleware::from_fn_with_state(
            Token(token.into()),
            require_token,
        ));
    }
    // After the token layer: probes carry no token.
    let app = app.route("/healthz", get(|| async { "ok\n" }));
    tracing::info!(%addr, "HTTP status listening");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the HTTP status server stopped");
        }
    }))
}

async fn require_token(State(token): State<Token>, request: HttpRequest, next: Next) -> Response {
    if carries_token(request.headers(), &token.0) {
        return next.run(request).await;
    }
    let mut refused = (
        StatusCode::UNAUTHORIZED,
        "A token is required: send Authorization: Bearer TOKEN (the token of serve's --http-token-file).\n",
    )
        .into_response();
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer, Basic realm=\"imapmirror\", charset=\"UTF-8\""),
    );
    refused
}

/// Whether the request carries `token` as a bearer token or as the password of HTTP
/// Basic (any user name), compared in constant time.
fn carries_token(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        match imapmirror_protocol::sasl::base64_decode(credentials.trim().as_bytes()) {
            Ok(pair) => match pair.iter().position(|&b| b == b':') {
                Some(colon) => pair[colon + 1..].to_vec(),
                None => return false,
            },
            Err(_) => return false,
        }
    } else {
        return false;
    };
    same_bytes(&presented, token.as_bytes())
}

/// Equality that looks at every byte whatever the first difference, so that the time
/// taken tells nothing about how much of a guess was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(e: imapmirror_engine::Error) -> Response {
    let status = match e.fault() {
        Fault::UserInput => StatusCode::NOT_FOUND,
        Fault::Peer | Fault::Local => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

fn html_error(e: imapmirror_engine::Error) -> Response {
    let status = match e.fault() {
        Fault::UserInput => StatusCode::NOT_FOUND,
        Fault::Peer | Fault::Local => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = format!(
        "<!DOCTYPE html><meta charset=\"utf-8\"><title>imapmirror</title><p>{}</p><p><a href=\"/\">All batches</a></p>",
        status_page::esc(&e.to_string())
    );
    (status, Html(body)).into_response()
}

async fn overview_page(State(s): State<HttpState>) -> Response {
    match s.control.execute(Request::BatchStatus { name: None }).await {
        Ok(Reply::Batches { batches }) => {
            Html(status_page::overview(&batches, &|name| s.live.batch(name))).into_response()
        }
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => html_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    status: Option<String>,
    page: Option<usize>,
}

async fn batch_page(
    State(s): State<HttpState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    // The report has the summary, every mailbox and every skipped item, from one read
    // of the store.
    let report = match s.control.execute(Request::BatchReport { name }).await {
        Ok(Reply::Report { report }) => report,
        Ok(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => return html_error(e),
    };
    let filter = MailboxFilter {
        status: q.status.filter(|s| !s.is_empty()),
        page: q.page.unwrap_or(0),
    };
    let live = s.live.batch(&report.batch.name);
    Html(status_page::batch_page(
        &report.batch,
        &report.mailboxes,
        &report.skipped,
        &live,
        &filter,
    ))
    .into_response()
}

/// Prometheus's scrape: the batches' totals read from the store now, then everything the
/// recorder holds.
async fn metrics_text(State(s): State<HttpState>) -> Response {
    if let Err(e) = metrics_export::refresh_batches(&s.control).await {
        return error(e);
    }
    metrics_export::render(&s.metrics)
}

async fn batches(State(s): State<HttpState>) -> Response {
    match s.control.execute(Request::BatchStatus { name: None }).await {
        Ok(Reply::Batches { batches }) => Json(batches).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

async fn batch(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    match s
        .control
        .execute(Request::BatchStatus { name: Some(name) })
        .await
    {
        Ok(Reply::Batches { mut batches }) if !batches.is_empty() => {
            Json(batches.remove(0)).into_response()
        }
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

async fn users(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    match s.control.execute(Request::BatchUsers { name }).await {
        Ok(Reply::Users { users }) => Json(users).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

async fn report_csv(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    match s.control.execute(Request::BatchReport { name }).await {
        Ok(Reply::Report { report }) => {
            let file = format!(
                "attachment; filename=\"{}.csv\"",
                report.batch.name.replace(['"', '\\', '\r', '\n'], "_")
            );
            let mut response = report.to_csv().into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&file) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

/// The report of `batch report --format json`, with the batch's shard: what a fleet
/// report (`batch report NAME --merge URL...`) merges.
async fn report_json(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    match s.control.execute(Request::BatchReport { name }).await {
        Ok(Reply::Report { report }) => Json(report).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn a_token_is_taken_as_bearer_or_basic_password_and_nothing_else() {
        assert!(carries_token(&headers("Bearer s3cret"), "s3cret"));
        assert!(carries_token(&headers("bearer  s3cret "), "s3cret"));
        // "admin:s3cret" and ":s3cret"
        assert!(carries_token(&headers("Basic YWRtaW46czNjcmV0"), "s3cret"));
        assert!(carries_token(&headers("Basic OnMzY3JldA=="), "s3cret"));
        assert!(!carries_token(&headers("Bearer s3cre"), "s3cret"));
        assert!(!carries_token(&headers("Bearer"), "s3cret"));
        assert!(
            !carries_token(&headers("Basic czNjcmV0"), "s3cret"),
            "no colon"
        );
        assert!(!carries_token(&headers("Basic !!!"), "s3cret"));
        assert!(!carries_token(&headers("Token s3cret"), "s3cret"));
        assert!(!carries_token(&HeaderMap::new(), "s3cret"));
    }
}
