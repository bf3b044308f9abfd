//! `batch report NAME --merge SOURCE...`: the fleet report of a batch split over shards
//! (`batch add --shard I/N`, one process and state directory each). Each SOURCE is a
//! shard's `serve --http` (its `/batches/NAME/report.json`) or its state directory (opened
//! like any state directory, or reached through the control socket of the `serve` that
//! holds it). All are read at once, each within `--timeout`; the engine's
//! `batch::fleet_report` checks they fit together and merges them.
//!
//! A source that does not answer does not stop the report: it is named on stderr (and in
//! the JSON's `missing_shards`), the others are merged, and the exit code is 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use imapmirror_engine::batch::fleet_report::{self, FleetReport, MissingShard, ShardAnswer};
use imapmirror_engine::batch::report::BatchReport;
use imapmirror_engine::control::request::{Reply, Request};
use reqwest::Url;
use std::io::Write;

use crate::cli_args::ReportFormat;
use crate::exit_status::{self, BadRequest, WorkFailed};
use crate::state_access;

/// What `batch report NAME --merge ...` was asked for.
pub struct FleetRequest {
    pub name: String,
    pub sources: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// Where one shard's report comes from.
enum Source {
    Http(Url),
    Dir(PathBuf),
}

/// One `--merge` value: an http(s) URL, else a directory.
fn parse_source(text: &str) -> Result<Source, BadRequest> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Url::parse(text.trim()).map(Source::Http).map_err(|e| {
            BadRequest(format!(
                "The --merge source `{}` is not a valid URL ({e}): give a shard's serve --http address, like http://imapmirror-0.imapmirror:8080.",
                shown(text)
            ))
        });
    }
    if lower.contains("://") {
        return Err(BadRequest(format!(
            "The --merge source `{}` is neither an http:// or https:// URL nor a directory: give each shard's serve --http URL or its state directory.",
            shown(text)
        )));
    }
    Ok(Source::Dir(PathBuf::from(text)))
}

/// A source as reports and messages show it: without the password of a URL that carries
/// one.
fn shown(text: &str) -> String {
    match Url::parse(text.trim()) {
        Ok(mut url) if url.password().is_some() || !url.username().is_empty() => {
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// The same URL or directory twice would count its mailboxes twice (and a directory
/// opened twice in one process waits for its own lock): refused before anything is read.
fn refuse_repeats(sources: &[String]) -> Result<(), BadRequest> {
    let mut seen = std::collections::HashSet::new();
    for text in sources {
        let key = match parse_source(text)? {
            Source::Http(url) => url.to_string().trim_end_matches('/').to_owned(),
            Source::Dir(dir) => std::fs::canonicalize(&dir)
                .unwrap_or(dir)
                .display()
                .to_string(),
        };
        if !seen.insert(key) {
            return Err(BadRequest(format!(
                "The --merge source {} is given twice: give each shard once.",
                shown(text)
            )));
        }
    }
    Ok(())
}

fn read_token(path: &PathBuf) -> Result<Arc<str>, BadRequest> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        BadRequest(format!(
            "The token file {} cannot be read ({e}): check the path and that it is readable by this user.",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(BadRequest(format!(
            "The token file {} is empty: put the token of the shards' --http-token-file in it.",
            path.display()
        )));
    }
    Ok(token.into())
}

fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("setting up TLS for the shards' URLs")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        // Shards are reached inside the cluster (or through a port-forward): an egress
        // proxy from the environment would only get in the way, and would see the token.
        .no_proxy()
        // The token goes to the URL given and nowhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imapmirror/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for the shards' URLs")
}

/// Runs the fleet report; prints it to stdout or `output`.
pub async fn run(
    request: FleetRequest,
    format: ReportFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let sources = request
        .sources
        .iter()
        .map(|s| parse_source(s))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_repeats(&request.sources)?;
    let token = request.token_file.as_ref().map(read_token).transpose()?;
    let client = http_client(request.timeout)?;

    let mut reads = tokio::task::JoinSet::new();
    for (i, source) in sources.into_iter().enumerate() {
        let name = request.name.clone();
        let token = token.clone();
        let client = client.clone();
        let limit = request.timeout;
        reads.spawn(async move {
            let read = async {
                match source {
                    Source::Http(url) => fetch(&client, url, &name, token.as_deref()).await,
                    Source::Dir(dir) => read_dir(dir, name).await,
                }
            };
            let result = match tokio::time::timeout(limit, read).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} (--timeout)", seconds(limit))),
            };
            (i, result)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = reads.join_next().await {
        results.push(joined.context("a shard's read stopped unexpectedly")?);
    }
    results.sort_by_key(|(i, _)| *i);

    let mut answers = Vec::new();
    let mut missing = Vec::new();
    for (i, result) in results {
        let source = shown(&request.sources[i]);
        match result {
            Ok(report) => answers.push(ShardAnswer { source, report }),
            Err(reason) => missing.push(MissingShard {
                source,
                reason: reason.trim().trim_end_matches('.').to_owned(),
            }),
        }
    }
    for m in &missing {
        note!("imapmirror: no report from {}: {}.", m.source, m.reason);
    }
    if answers.is_empty() {
        return Err(WorkFailed(format!(
            "None of the {} sources answered, so there is no report of batch {}: check the URLs and directories above",
            missing.len(),
            request.name
        ))
        .into());
    }
    let fleet = fleet_report::merge(&request.name, answers, missing)?;
    for w in &fleet.warnings {
        note!("imapmirror: warning: {w}.");
    }
    if let Some(n) = fleet.shard_count {
        for i in &fleet.shards_not_given {
            if fleet.missing_shards.is_empty() {
                note!(
                    "imapmirror: shard {i}/{n} not given: the report covers {} of {n} shards; add its URL or state directory to --merge.",
                    fleet.shards.len()
                );
            } else {
                note!(
                    "imapmirror: shard {i}/{n} is not in the report: it did not answer, or was not given."
                );
            }
        }
    }
    write_report(&fleet, format, output.as_ref())?;
    if !fleet.missing_shards.is_empty() {
        return Err(WorkFailed(format!(
            "{} of {} sources did not answer; the report of batch {} covers the {} that did",
            fleet.missing_shards.len(),
            request.sources.len(),
            fleet.batch.name,
            fleet.shards.len()
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_report(
    fleet: &FleetReport,
    format: ReportFormat,
    output: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let bytes = match format {
        ReportFormat::Csv => fleet.to_csv(),
        ReportFormat::Json => {
            let mut v = serde_json::to_vec_pretty(fleet).context("encoding the report")?;
            v.push(b'\n');
            v
        }
    };
    match output {
        Some(path) => {
            crate::report_file::write_private(path, &bytes)?;
            note!(
                "Fleet report of batch {} written to {} ({} shards, {} mailboxes, {} skipped items).",
                fleet.batch.name,
                path.display(),
                fleet.shards.len(),
                fleet.mailboxes.len(),
                fleet.skipped.len()
            );
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .context("writing the report to standard output")?,
    }
    Ok(())
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A shard's report from its `serve --http`.
async fn fetch(
    client: &reqwest::Client,
    mut url: Url,
    name: &str,
    token: Option<&str>,
) -> Result<BatchReport, String> {
    url.path_segments_mut()
        .map_err(|()| "is not a URL a path can be added to".to_owned())?
        .pop_if_empty()
        .extend(["batches", name, "report.json"]);
    let mut get = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(token) = token {
        get = get.bearer_auth(token);
    }
    let response = get.send().await.map_err(|e| http_failure(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| http_failure(&e))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            format!("sent a report that is not imapmirror's report JSON ({e}): run the same imapmirror version on every shard")
        });
    }
    // The status server answers its errors as {"error": SENTENCE}.
    let said = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    Err(match (status.as_u16(), said) {
        (401, _) if token.is_some() => "refused the token (HTTP 401): give --http-token-file the token of this shard's serve --http-token-file".to_owned(),
        (401, _) => "asks for a token (HTTP 401): give --http-token-file with the token of the shards' serve --http-token-file".to_owned(),
        (_, Some(sentence)) => format!("HTTP {}: {sentence}", status.as_u16()),
        (404, None) => format!("has no /batches/{name}/report.json (HTTP 404): it is not a shard's serve --http, or runs an older imapmirror; check the URL or upgrade the shard"),
        (code, None) => format!("answered HTTP {code} instead of the report"),
    })
}

/// Why a request failed, in words: the innermost cause says it best ("Connection refused").
fn http_failure(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot be reached"
    } else {
        "the request failed"
    };
    format!("{what} ({cause})")
}

/// A shard's report from its state directory (a copy of its volume, or one a local `serve`
/// holds).
async fn read_dir(dir: PathBuf, name: String) -> Result<BatchReport, String> {
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err("is not a directory".to_owned()),
        Err(e) => return Err(format!("cannot be read ({e})")),
    }
    // Opening a directory creates the store: a mistyped path must not become an empty one.
    if !dir.join("db").is_dir() {
        return Err("is not an imapmirror state directory (it has no db/): give the directory a shard's --state-dir pointed at".to_owned());
    }
    let access = state_access::open(&dir, None)
        .await
        .map_err(|e| exit_status::sentence(&e))?;
    match access.execute(Request::BatchReport { name }).await {
        Ok(Reply::Report { report }) => Ok(report),
        Ok(_) => Err(
            "its owner answered with an unexpected reply: run the same imapmirror version for every shard"
                .to_owned(),
        ),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_directories_and_urls_lose_their_passwords() {
        assert!(matches!(
            parse_source("http://imapmirror-0.imapmirror:8080"),
            Ok(Source::Http(_))
        ));
        assert!(matches!(
            parse_source("HTTPS://status.example/shard-1/"),
            Ok(Source::Http(_))
        ));
        assert!(matches!(parse_source("/mnt/shard-2"), Ok(Source::Dir(_))));
        assert!(matches!(parse_source("shard-2"), Ok(Source::Dir(_))));
        assert!(parse_source("ftp://host/x").is_err());
        assert!(parse_source("http://[::1").is_err());
        assert_eq!(shown("http://admin:s3cret@host:8080/"), "http://host:8080/");
        assert_eq!(shown("http://host:8080"), "http://host:8080");
        assert_eq!(shown("/mnt/shard-0"), "/mnt/shard-0");
    }

    #[test]
    fn a_source_given_twice_is_refused() {
        let twice = |a: &str, b: &str| refuse_repeats(&[a.to_owned(), b.to_owned()]).is_err();
        assert!(twice("http://s0:8080", "http://s0:8080/"));
        assert!(twice("/tmp", "/tmp/"));
        assert!(!twice("http://s0:8080", "http://s1:8080"));
        assert!(!twice("/tmp", "/var"));
    }
}
