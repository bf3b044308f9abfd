//! The process's Prometheus recorder and the `/metrics` text of `serve --http` and
//! `proxy --http`.
//!
//! One recorder per process, installed before any pass or session starts: the engine and
//! the proxy record through the `metrics` facade (`imapmirror_engine::migration_metrics`,
//! `imapmirror_proxy::proxy_metrics`), and a handle to the recorder renders the text
//! exposition format on our own axum routes, behind the same token as the status pages,
//! instead of the exporter's own HTTP listener.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imapmirror_engine::control::request::{Control, Reply, Request};
use imapmirror_engine::migration_metrics;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What `/metrics` answers with (the text format, version 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histograms are drained into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

/// The process's recorder, installed on first use; call it before the work it measures
/// starts (connection gauges are taken when a pool is made), then the `describe` of the
/// metrics the process records. Needs a tokio runtime.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        // A histogram with buckets (not a summary), so that quantiles can be taken over
        // time and over several processes (`histogram_quantile` in the dashboard).
        .set_buckets_for_metric(
            Matcher::Full(migration_metrics::PASS_DURATION.to_owned()),
            &migration_metrics::PASS_DURATION_BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| anyhow!("The metrics recorder could not be installed ({e}); this is a bug in imapmirror, please report it."))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Sets every batch's store-derived metrics from the store, as `batch status` reads it
/// (see `migration_metrics`'s docs for why they are read, not counted). Its cost grows
/// with the folders of the batches (every folder's counters are added up, as for the
/// status page): scrape a 10,000-mailbox migration every 30 s or more, not every second.
pub async fn refresh_batches(control: &Control) -> Result<(), imapmirror_engine::Error> {
    match control.execute(Request::BatchStatus { name: None }).await? {
        Reply::Batches { batches } => {
            for batch in &batches {
                migration_metrics::record_batch(&batch.name, &batch.stored_totals());
            }
        }
        other => {
            tracing::error!(reply = ?other, "the status request got another reply; this is a bug in imapmirror")
        }
    }
    Ok(())
}

/// The metrics as the text exposition format.
pub fn render(handle: &PrometheusHandle) -> Response {
    let mut response = (StatusCode::OK, handle.render()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// `proxy --http ADDR`: `/metrics` and `/healthz` until `stop`. Binds now, so that a
/// taken address fails the command at once.
pub async fn serve_proxy_metrics(
    addr: std::net::SocketAddr,
    handle: PrometheusHandle,
    stop: imapmirror_engine::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::Router;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow!(
            "The HTTP metrics address {addr} cannot be bound ({e}); pick a free address for --http."
        )
    })?;
    let app = Router::new()
        .route("/metrics", get(move || async move { render(&handle) }))
        .route("/healthz", get(|| async { "ok\n" }));
    tracing::info!(%addr, "HTTP metrics listening");
    imapmirror_proxy::proxy_metrics::describe();
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the HTTP metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_engine::batch::report::BatchSummary;

    fn summary(items_synced: u64, queued: u64, synced: u64, completed: u64) -> BatchSummary {
        BatchSummary {
            name: "b1".into(),
            status: "Syncing".into(),
            source: "src".into(),
            target: "tgt".into(),
            excluded_folders: vec![],
            included_folders: vec![],
            mailboxes_total: queued + synced,
            mailboxes_queued: queued,
            mailboxes_syncing: 0,
            // `batch status` counts Completed mailboxes as synced too.
            mailboxes_synced: synced,
            mailboxes_failed: 0,
            mailboxes_stopped: 0,
            mailboxes_completed: completed,
            items_synced,
            items_skipped: 0,
            bytes_synced: items_synced * 100,
            created: "2026-01-01T00:00:00Z".into(),
            last_sync_started: None,
            last_sync_finished: None,
            next_sync_due: None,
            sync_interval_secs: 86_400,
            target_recheck_secs: None,
            report_mailbox: None,
            report_delivered: None,
            report_delivery_error: None,
            report_copies: vec![],
        }
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(series))
    }

    #[test]
    fn batch_counters_follow_the_store_and_never_go_back() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let s = summary(10, 2, 1, 0);
            migration_metrics::record_batch(&s.name, &s.stored_totals());
            // The store's total went down (a skipped message copied after all, a folder
            // erased): the counter holds, as Prometheus requires of a counter.
            let s = summary(7, 2, 1, 0);
            migration_metrics::record_batch(&s.name, &s.stored_totals());
        });
        let text = handle.render();
        assert_eq!(
            line(&text, "imapmirror_messages_copied_total{batch=\"b1\"}"),
            Some("imapmirror_messages_copied_total{batch=\"b1\"} 10"),
            "{text}"
        );
        metrics::with_local_recorder(&recorder, || {
            let s = summary(12, 0, 3, 1);
            migration_metrics::record_batch(&s.name, &s.stored_totals());
        });
        let text = handle.render();
        assert!(
            text.contains("imapmirror_messages_copied_total{batch=\"b1\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("imapmirror_bytes_copied_total{batch=\"b1\"} 1200"),
            "{text}"
        );
        // One state per mailbox: a Completed mailbox is not also Synced.
        for (state, n) in [("Synced", 2), ("Completed", 1), ("Queued", 0)] {
            let series = format!("imapmirror_mailboxes{{batch=\"b1\",state=\"{state}\"}} {n}");
            assert!(text.contains(&series), "{series} in {text}");
        }
        assert!(
            text.contains("imapmirror_errors_total{batch=\"b1\",kind=\"throttled\"} 0"),
            "every kind starts at zero: {text}"
        );
    }
}
