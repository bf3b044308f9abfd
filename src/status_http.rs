//! `serve --http ADDR`: the batch status over HTTP for monitoring — read-only, the same
//! JSON as `batch status --json` and `batch users --json`, from the same handlers.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use imapmirror_engine::control::request::{Control, Reply, Request};
use imapmirror_engine::{CancellationToken, Fault};

/// Binds `addr` now (so a taken port fails `serve` at once) and returns the server task.
pub async fn start(
    addr: SocketAddr,
    control: Arc<Control>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("The HTTP status address {addr} cannot be bound; pick a free address for --http.")
    })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/batches", get(batches))
        .route("/batches/{name}", get(batch))
        .route("/batches/{name}/users", get(users))
        .with_state(control);
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

fn error(e: imapmirror_engine::Error) -> Response {
    let status = match e.fault() {
        Fault::UserInput => StatusCode::NOT_FOUND,
        Fault::Peer | Fault::Local => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

async fn batches(State(control): State<Arc<Control>>) -> Response {
    match control.execute(Request::BatchStatus { name: None }).await {
        Ok(Reply::Batches { batches }) => Json(batches).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}

async fn batch(State(control): State<Arc<Control>>, Path(name): Path<String>) -> Response {
    match control
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

async fn users(State(control): State<Arc<Control>>, Path(name): Path<String>) -> Response {
    match control.execute(Request::BatchUsers { name }).await {
        Ok(Reply::Users { users }) => Json(users).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(e) => error(e),
    }
}
