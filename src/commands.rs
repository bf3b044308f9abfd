//! Each command: read its inputs (files, environment), build the engine request, run it
//! here or in the owning process, and print the reply.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use imapmirror_engine::CancellationToken;
use imapmirror_engine::MigrationFile;
use imapmirror_engine::batch::notification::Notifier;
use imapmirror_engine::batch::report::BatchSummary;
use imapmirror_engine::batch::runner::{BatchEvent, BatchRuntime, EventSink};
use imapmirror_engine::batch::scheduler::Scheduler;
use imapmirror_engine::control::request::{Control, Reply, Request, RowInput, WireSecret};
use imapmirror_engine::control::socket as control_socket;
use imapmirror_engine::endpoint::reconnect_policy::ReconnectPolicy;
use imapmirror_protocol::admin_login::{AdminFormat, DOVECOT_DEFAULT_SEPARATOR};
use imapmirror_protocol::client::{CertificatePin, SHA256_PREFIX};
use imapmirror_storage::{self as storage, BatchSettings, EndpointSettings};

use crate::cli_args::{
    AuthArg, BatchAddArgs, BatchCommand, Cli, Command, EndpointAddArgs, EndpointCommand,
    IfExistsArg, OAuthProviderArg, ProviderArg, ReportFormat, SecurityArg, ServeArgs,
};
use crate::exit_status::{BadRequest, WorkFailed};
use crate::live_progress::LiveProgress;
use crate::progress_display::ProgressDisplay;
use crate::report_file::write_private;
use crate::state_access::{self, StateAccess};
use crate::text_output;

/// The environment variable read for an admin password when no file is given.
const ADMIN_PASSWORD_ENV: &str = "IMAPMIRROR_ADMIN_PASSWORD";

/// How long a finishing command waits for its webhook deliveries.
const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = state_access::resolve(cli.state_dir.clone())?;
    let quiet = cli.quiet;
    match cli.command {
        Command::Endpoint(c) => endpoint(&dir, c).await,
        Command::Batch(c) => batch(&dir, c, quiet).await,
        Command::Serve(args) => serve(&dir, &args).await,
        Command::Proxy(args) => crate::proxy_command::run(&dir, args).await,
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding the output as JSON")?;
    outln!("{text}");
    Ok(())
}

fn unexpected(reply: Reply) -> anyhow::Error {
    anyhow!(
        "The state directory's owner answered with an unexpected {} reply: run the same imapmirror version for commands and for `serve`.",
        serde_json::to_value(&reply)
            .ok()
            .and_then(|v| v.get("reply").and_then(|r| r.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned())
    )
}

// ---------------------------------------------------------------- endpoints

async fn endpoint(dir: &Path, command: EndpointCommand) -> anyhow::Result<ExitCode> {
    let request = match &command {
        EndpointCommand::Add(args) => endpoint_add_request(args)?,
        EndpointCommand::Test { name, user, .. } => Request::EndpointTest {
            name: name.clone(),
            user: user.clone(),
        },
        EndpointCommand::List { .. } => Request::EndpointList,
        EndpointCommand::Remove { name } => Request::EndpointRemove { name: name.clone() },
    };
    let access = state_access::open(dir, None).await?;
    let reply = access.execute(request).await?;
    access.flush().await?;
    match (command, reply) {
        (
            EndpointCommand::Add(_),
            Reply::EndpointAdded {
                endpoint,
                probe,
                updated,
            },
        ) => {
            outln!(
                "Endpoint {} {}: {}.",
                endpoint.settings.name,
                if updated { "updated" } else { "added" },
                text_output::endpoint_line(&endpoint)
            );
            if let Some(p) = probe {
                out!("{}", text_output::probe(&p));
            }
        }
        (EndpointCommand::Test { json, .. }, Reply::EndpointTested { probe }) => {
            if json {
                print_json(&probe)?;
            } else {
                out!("{}", text_output::probe(&probe));
            }
            if !probe.passed() {
                return Err(WorkFailed(format!(
                    "The test of endpoint {} failed: the login was refused; fix the admin credentials (remove the endpoint and add it again).",
                    probe.endpoint
                ))
                .into());
            }
        }
        (EndpointCommand::List { json }, Reply::Endpoints { endpoints }) => {
            if json {
                print_json(&endpoints)?;
            } else {
                out!("{}", text_output::endpoints(&endpoints));
            }
        }
        (EndpointCommand::Remove { .. }, Reply::EndpointRemoved { name }) => {
            outln!("Endpoint {name} removed, with its stored admin password.");
        }
        (_, reply) => return Err(unexpected(reply)),
    }
    Ok(ExitCode::SUCCESS)
}

fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        BadRequest(format!(
            "The {what} file {} cannot be read ({e}): check the path and that it is readable by this user.",
            path.display()
        ))
    })?;
    // Files written by `echo` end in a newline that is not part of the password.
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(BadRequest(format!(
            "The {what} file {} is empty: write the {what} into it.",
            path.display()
        ))
        .into());
    }
    Ok(text.to_owned())
}

fn endpoint_add_request(args: &EndpointAddArgs) -> anyhow::Result<Request> {
    let security = match args.security {
        SecurityArg::Ssl => storage::Security::Ssl,
        SecurityArg::Starttls => storage::Security::Starttls,
        SecurityArg::None => storage::Security::None,
    };
    let admin_password = match (&args.admin_user, &args.admin_password_file) {
        (Some(_), Some(file)) => Some(read_secret_file(file, "admin password")?),
        (Some(_), None) => match std::env::var(ADMIN_PASSWORD_ENV) {
            Ok(p) if !p.is_empty() => Some(p),
            _ => {
                return Err(BadRequest(format!(
                    "--admin-user needs the admin password: give --admin-password-file FILE or set ${ADMIN_PASSWORD_ENV}."
                ))
                .into());
            }
        },
        (None, _) => None,
    };
    let ca_file = match &args.ca_file {
        Some(p) => Some(std::fs::canonicalize(p).map_err(|e| {
            BadRequest(format!(
                "The CA file {} cannot be read ({e}): give the path of a PEM file.",
                p.display()
            ))
        })?),
        None => None,
    };
    let pinned_certificate = args
        .pin_cert
        .as_deref()
        .map(certificate_pin)
        .transpose()?
        .map(|pin| pin.to_string());
    Ok(Request::EndpointAdd {
        settings: EndpointSettings {
            name: args.name.clone(),
            host: args.host.clone(),
            port: args.port.unwrap_or(match security {
                storage::Security::Ssl => 993,
                _ => 143,
            }),
            security,
            auth: match args.auth {
                AuthArg::Plain => storage::AuthMechanism::Plain,
                AuthArg::Login => storage::AuthMechanism::Login,
                AuthArg::Xoauth2 => storage::AuthMechanism::Xoauth2,
            },
            admin_user: args.admin_user.clone(),
            admin_format: args.admin_format.map(|f| match f {
                AdminFormat::Dovecot { .. } => storage::AdminFormat::Dovecot,
                AdminFormat::Sasl => storage::AdminFormat::Sasl,
                AdminFormat::Exchange => storage::AdminFormat::Exchange,
                AdminFormat::Mirapoint => storage::AdminFormat::Mirapoint,
            }),
            max_concurrent_migrations: args.max_concurrent_migrations,
            max_concurrent_syncs: args.max_concurrent_syncs,
            ca_file,
            insecure_skip_verify: args.insecure_skip_verify,
            pinned_certificate,
            provider: match args.provider {
                ProviderArg::Auto => None,
                ProviderArg::Gmail => Some(storage::Provider::Gmail),
                ProviderArg::Microsoft365 => Some(storage::Provider::Microsoft365),
                ProviderArg::Generic => Some(storage::Provider::Generic),
            },
            admin_separator: match args.admin_format {
                Some(AdminFormat::Dovecot { separator })
                    if separator != DOVECOT_DEFAULT_SEPARATOR =>
                {
                    Some(separator)
                }
                _ => None,
            },
            oauth_token_command: args.oauth_token_command.clone(),
            oauth: oauth_settings(args)?,
            connections_per_mailbox: args.connections_per_mailbox,
            max_rate: args.max_rate.iter().map(|r| r.0).collect(),
        },
        admin_password: admin_password.map(WireSecret::new),
        test: !args.no_test,
        test_user: args.test_user.clone(),
        update_existing: args.if_exists == IfExistsArg::Update,
    })
}

/// `--oauth-provider` and its settings; secret files are stored by absolute path, since
/// `serve` may run elsewhere.
fn oauth_settings(args: &EndpointAddArgs) -> anyhow::Result<Option<Box<storage::OAuthSettings>>> {
    let Some(provider) = args.oauth_provider else {
        return Ok(None);
    };
    let absolute = |flag: &str, path: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
        path.as_deref()
            .map(|p| {
                if !p.is_file() {
                    return Err(BadRequest(format!(
                        "{flag} {}: no such file; give the file that holds it.",
                        p.display()
                    ))
                    .into());
                }
                std::path::absolute(p).map_err(anyhow::Error::from)
            })
            .transpose()
    };
    Ok(Some(Box::new(storage::OAuthSettings {
        provider: match provider {
            OAuthProviderArg::Microsoft => storage::OAuthProvider::Microsoft,
            OAuthProviderArg::Google => storage::OAuthProvider::Google,
            OAuthProviderArg::Generic => storage::OAuthProvider::Generic,
        },
        tenant: args.tenant.clone(),
        client_id: args.client_id.clone(),
        client_secret_file: absolute("--client-secret-file", &args.client_secret_file)?,
        service_account_file: absolute("--service-account-file", &args.service_account_file)?,
        token_url: args.token_url.clone(),
    })))
}

/// `--pin-cert`: `sha256:HEX`, else the path of a PEM file holding the one certificate.
fn certificate_pin(given: &str) -> anyhow::Result<CertificatePin> {
    let pin = if given
        .get(..SHA256_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(SHA256_PREFIX))
    {
        CertificatePin::parse_sha256(given)
    } else {
        CertificatePin::from_pem_file(Path::new(given))
    };
    pin.map_err(|e| BadRequest(format!("--pin-cert: {e}.")).into())
}

// ---------------------------------------------------------------- batches

async fn batch(dir: &Path, command: BatchCommand, quiet: bool) -> anyhow::Result<ExitCode> {
    match command {
        BatchCommand::Add(args) => batch_add(dir, args).await,
        BatchCommand::Start {
            name,
            dry_run: true,
            json,
            ..
        } => crate::plan_command::dry_run(dir, &name, json).await,
        BatchCommand::Estimate { name, json } => {
            crate::plan_command::estimate(dir, &name, json).await
        }
        BatchCommand::Start { name, wait, .. } => {
            pass(
                dir,
                Request::BatchStart { name: name.clone() },
                &name,
                wait,
                quiet,
            )
            .await
        }
        BatchCommand::Sync { name, wait } => {
            pass(
                dir,
                Request::BatchSync { name: name.clone() },
                &name,
                wait,
                quiet,
            )
            .await
        }
        BatchCommand::Complete { name } => {
            pass(
                dir,
                Request::BatchComplete { name: name.clone() },
                &name,
                true,
                quiet,
            )
            .await
        }
        BatchCommand::Stop { name } => {
            let access = state_access::open(dir, None).await?;
            match access.execute(Request::BatchStop { name }).await? {
                Reply::BatchStopped { batch } => {
                    access.flush().await?;
                    outln!(
                        "Batch {} stopped; `imapmirror batch start {}` resumes it where it stopped.",
                        batch.name,
                        batch.name
                    );
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
        BatchCommand::Status { name, json } => {
            let access = state_access::open(dir, None).await?;
            let single = name.is_some();
            match access.execute(Request::BatchStatus { name }).await? {
                Reply::Batches { batches } => {
                    match (json, single, batches.first()) {
                        (true, true, Some(b)) => print_json(b)?,
                        (true, _, _) => print_json(&batches)?,
                        (false, true, Some(b)) => out!("{}", text_output::batch_detail(b)),
                        (false, _, _) => out!("{}", text_output::batches(&batches)),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
        BatchCommand::Users { name, json } => {
            let access = state_access::open(dir, None).await?;
            match access.execute(Request::BatchUsers { name }).await? {
                Reply::Users { users } => {
                    if json {
                        print_json(&users)?;
                    } else {
                        out!("{}", text_output::users(&users));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
        BatchCommand::Report {
            name,
            format,
            output,
            merge,
            http_token_file,
            timeout,
        } => {
            if !merge.is_empty() {
                let fleet = crate::fleet_report::FleetRequest {
                    name,
                    sources: merge,
                    token_file: http_token_file,
                    timeout,
                };
                return crate::fleet_report::run(fleet, format, output).await;
            }
            let access = state_access::open(dir, None).await?;
            let report = match access.execute(Request::BatchReport { name }).await? {
                Reply::Report { report } => report,
                other => return Err(unexpected(other)),
            };
            let bytes = match format {
                ReportFormat::Csv => report.to_csv(),
                ReportFormat::Json => {
                    let mut v =
                        serde_json::to_vec_pretty(&report).context("encoding the report")?;
                    v.push(b'\n');
                    v
                }
            };
            match output {
                Some(path) => {
                    write_private(&path, &bytes)?;
                    let copied_without_keywords =
                        report.skipped.iter().filter(|s| s.copied).count();
                    note!(
                        "Report of batch {} written to {} ({} mailboxes, {} skipped items, {} messages copied without keywords).",
                        report.batch.name,
                        path.display(),
                        report.mailboxes.len(),
                        report.skipped.len() - copied_without_keywords,
                        copied_without_keywords
                    );
                }
                None => std::io::stdout()
                    .write_all(&bytes)
                    .context("writing the report to standard output")?,
            }
            Ok(ExitCode::SUCCESS)
        }
        BatchCommand::Remove { name } => {
            let access = state_access::open(dir, None).await?;
            match access.execute(Request::BatchRemove { name }).await? {
                Reply::BatchRemoved { name } => {
                    access.flush().await?;
                    outln!("Batch {name} removed: its records and stored credentials are deleted.");
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(other)),
            }
        }
    }
}

/// The batch name `batch add` takes when none is given: the migration file's name
/// without its extension, when that is a batch name.
fn batch_name_of_file(csv: &Path) -> anyhow::Result<String> {
    let stem = csv
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if storage::is_valid_name(&stem) {
        return Ok(stem);
    }
    Err(BadRequest(format!(
        "The batch has no name, and the migration file's name `{stem}` ({}) cannot be one: give the batch a NAME of letters, digits, `-` and `_` (`imapmirror batch add NAME --csv ...`), or rename the file.",
        csv.display()
    ))
    .into())
}

async fn batch_add(dir: &Path, args: BatchAddArgs) -> anyhow::Result<ExitCode> {
    let display_name = args.csv.display().to_string();
    let bytes = std::fs::read(&args.csv).map_err(|e| {
        BadRequest(format!(
            "The migration file {display_name} cannot be read ({e}): check the path and that it is readable by this user."
        ))
    })?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => batch_name_of_file(&args.csv)?,
    };
    let file = MigrationFile::parse(&bytes, &display_name)?;
    for (column, header) in &file.ignored_columns {
        note!(
            "imapmirror: warning: column {column} (`{header}`) of {display_name} is not a migration-file column and is ignored."
        );
    }
    let request = Request::BatchAdd {
        settings: BatchSettings {
            name,
            source_endpoint: args.source.clone(),
            target_endpoint: args.target.clone(),
            excluded_folders: args.exclude.clone(),
            included_folders: args.include.clone(),
            max_message_size: args.max_message_size,
            bad_item_limit: args.bad_item_limit,
            sync_interval_secs: args.sync_interval.as_secs(),
            gmail_archive_folder: args.gmail_archive_folder.clone(),
            target_recheck_secs: args.target_recheck.map(|d| d.as_secs()),
        },
        rows: file
            .rows
            .iter()
            .filter(|row| args.shard.is_none_or(|shard| shard.owns(&row.email)))
            .map(RowInput::from)
            .collect(),
        notify_url: args.notify_url.clone(),
        start: args.start,
        shard: args.shard.map(Into::into),
        update_existing: args.if_exists == IfExistsArg::Update,
        report_mailbox: args.report_mailbox.first().cloned(),
        report_copies: args.report_mailbox.iter().skip(1).cloned().collect(),
    };
    let access = state_access::open(dir, None).await?;
    match access.execute(request).await? {
        Reply::BatchAdded {
            batch,
            mailboxes,
            started,
            scheduler,
            merged: Some(merged),
        } => {
            access.flush().await?;
            outln!(
                "Batch {} exists already ({mailboxes} mailboxes): {}.",
                batch.name,
                text_output::merge_summary(&merged)
            );
            if started {
                outln!("{}", marked_sentence(&batch, scheduler));
            } else if args.start {
                outln!(
                    "It is {}, so it was not started: `imapmirror batch start {}` resumes it.",
                    batch.status,
                    batch.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Reply::BatchAdded {
            batch,
            mailboxes,
            started,
            scheduler,
            merged: None,
        } => {
            access.flush().await?;
            let shard = match args.shard {
                Some(shard) => format!(
                    " (shard {shard}: {mailboxes} of the file's {} rows)",
                    file.rows.len()
                ),
                None => String::new(),
            };
            outln!(
                "Batch {} added: {mailboxes} mailboxes will be migrated from {} to {}{shard}.",
                batch.name,
                batch.source,
                batch.target
            );
            if started {
                outln!("{}", marked_sentence(&batch, scheduler));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(other)),
    }
}

fn marked_sentence(batch: &BatchSummary, scheduler: bool) -> String {
    if scheduler {
        format!(
            "The running `imapmirror serve` runs it now; follow it with `imapmirror batch status {}`.",
            batch.name
        )
    } else {
        format!(
            "It is marked to run ({} mailboxes waiting): run `imapmirror serve` (or use --wait).",
            batch.mailboxes_queued + batch.mailboxes_syncing
        )
    }
}

/// `batch start`, `batch sync`, `batch complete`: mark the batch, then (with `wait`) run
/// the pass in the foreground, or follow the owner's scheduler doing it.
async fn pass(
    dir: &Path,
    request: Request,
    name: &str,
    wait: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let (notifier, notify_task) = if wait {
        let (n, t) = Notifier::start(notify_retry());
        (Some(n), Some(t))
    } else {
        (None, None)
    };
    let signals = if wait {
        Some(listen_for_signals()?)
    } else {
        None
    };
    let access = state_access::open(dir, notifier).await?;
    let reply = access.execute(request).await?;
    access.flush().await?;
    let (batch, scheduler, queued) = match reply {
        Reply::BatchMarked {
            batch,
            scheduler,
            queued,
        } => (batch, scheduler, queued),
        other => return Err(unexpected(other)),
    };
    if queued == 0 && !matches!(batch.status.as_str(), "Syncing" | "Completing") {
        outln!(
            "Batch {} is {}: no mailbox waits for a pass; `imapmirror batch sync {}` runs an incremental pass.",
            batch.name,
            batch.status,
            batch.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !wait {
        outln!(
            "Batch {} is {}. {}",
            batch.name,
            batch.status,
            marked_sentence(&batch, scheduler)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let result = match &access {
        StateAccess::Local(control) => foreground(dir, control.clone(), name, signals, quiet).await,
        StateAccess::Remote(dir) => follow(dir, name, scheduler, quiet).await,
    };
    drop(access);
    if let Some(task) = notify_task {
        // The notifier ends once the runtime holding its sender is dropped.
        let _ = tokio::time::timeout(NOTIFY_GRACE, task).await;
    }
    let summary = result?;
    out!("{}", text_output::batch_detail(&summary));
    match summary.status.as_str() {
        "Synced" | "Completed" => Ok(ExitCode::SUCCESS),
        "Syncing" | "Completing" => Err(WorkFailed(format!(
            "The pass over batch {} was interrupted; `imapmirror batch start {}` (or `serve`) resumes it where it stopped.",
            summary.name, summary.name
        ))
        .into()),
        "Stopped" => Err(WorkFailed(format!(
            "Batch {} was stopped before the pass finished; `imapmirror batch start {}` resumes it.",
            summary.name, summary.name
        ))
        .into()),
        _ => Err(WorkFailed(format!(
            "{} of {} mailboxes of batch {} failed: see `imapmirror batch users {}` for each error, fix the cause, then run `imapmirror batch sync {} --wait`.",
            summary.mailboxes_failed, summary.mailboxes_total, summary.name, summary.name, summary.name
        ))
        .into()),
    }
}

fn notify_retry() -> ReconnectPolicy {
    ReconnectPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        max_retries: 6,
    }
}

/// Runs the marked batch here, serving the control socket meanwhile so that `status`
/// (and `stop`) from another shell reach this process.
async fn foreground(
    dir: &Path,
    control: Arc<Control>,
    name: &str,
    signals: Option<Signals>,
    quiet: bool,
) -> anyhow::Result<BatchSummary> {
    let runtime = control.runtime().clone();
    let stop_socket = CancellationToken::new();
    let listener = control_socket::bind(dir)?;
    let socket_task = tokio::spawn(control_socket::serve(
        listener,
        control.clone(),
        stop_socket.clone(),
    ));
    let signals = match signals {
        Some(s) => s,
        None => listen_for_signals()?,
    };
    let signals = tokio::spawn(watch_signals(signals, runtime.clone()));
    let display = ProgressDisplay::new(name, quiet);
    let heartbeat = spawn_heartbeat(display.clone());
    let flushes_before = flush_counters(&runtime).await;
    let outcome = runtime.run_batch(name, display.sink()).await;
    heartbeat.abort();
    display.finish();
    if let (Some(before), Some(after)) = (flushes_before, flush_counters(&runtime).await) {
        display.state_writes(
            after.fsyncs - before.fsyncs,
            after.bytes_flushed - before.bytes_flushed,
        );
    }
    signals.abort();
    stop_socket.cancel();
    let _ = socket_task.await;
    outcome?;
    runtime
        .store()
        .flush()
        .await
        .map_err(|source| imapmirror_engine::Error::State {
            action: "saving the state directory".to_owned(),
            source,
        })?;
    match control
        .execute(Request::BatchStatus {
            name: Some(name.to_owned()),
        })
        .await?
    {
        Reply::Batches { mut batches } if !batches.is_empty() => Ok(batches.remove(0)),
        other => Err(unexpected(other)),
    }
}

/// Follows a pass that the owning process runs, until the batch leaves Syncing/Completing.
async fn follow(
    dir: &Path,
    name: &str,
    scheduler: bool,
    quiet: bool,
) -> anyhow::Result<BatchSummary> {
    if !scheduler {
        let active = match control_socket::send(dir, &Request::Ping).await? {
            Reply::Pong { active_batches, .. } => active_batches,
            other => return Err(unexpected(other)),
        };
        if !active.iter().any(|b| b == name) {
            return Err(anyhow!(
                "Another imapmirror process owns the state directory {} and runs no scheduler: wait for it to finish, then run this command again.",
                dir.display()
            ));
        }
    }
    let mut last = String::new();
    loop {
        let batch = match control_socket::send(
            dir,
            &Request::BatchStatus {
                name: Some(name.to_owned()),
            },
        )
        .await?
        {
            Reply::Batches { mut batches } if !batches.is_empty() => batches.remove(0),
            other => return Err(unexpected(other)),
        };
        let line = format!(
            "imapmirror: batch {}: {} — {}/{} mailboxes synced, {} failed, {} syncing, {} items ({})",
            batch.name,
            batch.status,
            batch.mailboxes_synced,
            batch.mailboxes_total,
            batch.mailboxes_failed,
            batch.mailboxes_syncing,
            batch.items_synced,
            text_output::bytes(batch.bytes_synced)
        );
        if !quiet && line != last {
            note!("{line}");
            last = line;
        }
        if !matches!(batch.status.as_str(), "Syncing" | "Completing") {
            return Ok(batch);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// SIGINT and SIGTERM, listened for from the start of a long command so that a signal
/// that arrives while the store opens is not fatal.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

fn listen_for_signals() -> anyhow::Result<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind| {
        signal(kind)
            .context("Listening for SIGINT and SIGTERM failed; check the process's signal limits.")
    };
    Ok(Signals {
        interrupt: listen(SignalKind::interrupt())?,
        terminate: listen(SignalKind::terminate())?,
    })
}

/// Calls [`ProgressDisplay::heartbeat`] every second until aborted.
fn spawn_heartbeat(display: Arc<ProgressDisplay>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            display.heartbeat();
        }
    })
}

/// The state store's flushes so far (`None` if the store cannot answer: the pass's own
/// error says why).
async fn flush_counters(runtime: &BatchRuntime) -> Option<imapmirror_storage::FlushCounters> {
    runtime.store().run(|db| Ok(db.flush_counters())).await.ok()
}

/// How long passes in flight get, after SIGINT/SIGTERM, to reach a safe point by
/// themselves (a group's APPENDs answered and committed) before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// SIGINT/SIGTERM: stop taking work and let passes in flight journal and stop; after
/// [`STOP_GRACE`], or at a second signal, flush the store and exit at once. Exiting with
/// APPENDs in flight is safe: every group sent is journaled on disk before it goes out,
/// and the next pass reconciles it against the target (the crash tests kill -9 at random
/// instants to hold that).
async fn watch_signals(mut signals: Signals, runtime: Arc<BatchRuntime>) {
    tokio::select! {
        _ = signals.interrupt.recv() => {}
        _ = signals.terminate.recv() => {}
    }
    tracing::warn!(
        "stopping: finishing or journaling the work in flight (signal again to exit at once)"
    );
    runtime.shut_down();
    let why = tokio::select! {
        _ = signals.interrupt.recv() => "a second signal",
        _ = signals.terminate.recv() => "a second signal",
        () = tokio::time::sleep(STOP_GRACE) => "the stop grace period",
    };
    let _ = runtime.store().flush().await;
    note!(
        "imapmirror: exiting after {why} with work still in flight; it is journaled, and the next `batch start` or `serve` resumes it exactly."
    );
    std::process::exit(1);
}

// ---------------------------------------------------------------- serve

fn log_events() -> EventSink {
    Arc::new(|e: &BatchEvent| match e {
        BatchEvent::Planned { batch, mailboxes } => {
            tracing::info!(batch = %batch, mailboxes, "pass planned");
        }
        BatchEvent::MailboxStarted { batch, email, kind } => {
            tracing::info!(batch = %batch, mailbox = %email, kind = ?kind, "mailbox pass started");
        }
        BatchEvent::Progress { .. } => {}
        BatchEvent::MailboxFinished {
            batch,
            email,
            status,
            copied,
            bytes,
            skipped,
            folders_renamed,
            error,
        } => match error {
            Some(error) => {
                tracing::warn!(batch = %batch, mailbox = %email, status = status.as_str(), error = %error, "mailbox pass ended")
            }
            None => {
                tracing::info!(batch = %batch, mailbox = %email, status = status.as_str(), copied, bytes, skipped, folders_renamed, "mailbox pass ended")
            }
        },
    })
}

async fn serve(dir: &Path, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let http_token = match &args.http_token_file {
        Some(path) => Some(read_secret_file(path, "HTTP token")?),
        None => None,
    };
    let signals = listen_for_signals()?;
    let (notifier, notify_task) = Notifier::start(notify_retry());
    let access = state_access::open(dir, Some(notifier)).await?;
    let owner = match access {
        StateAccess::Local(control) => control,
        StateAccess::Remote(dir) => {
            let pid = match control_socket::send(&dir, &Request::Ping).await? {
                Reply::Pong { pid, .. } => pid.to_string(),
                _ => "another process".to_owned(),
            };
            return Err(BadRequest(format!(
                "The state directory {} is already owned by imapmirror process {pid}: stop it first, or give this serve another --state-dir.",
                dir.display()
            ))
            .into());
        }
    };
    let runtime = owner.runtime().clone();
    drop(owner);
    let scheduler = Scheduler::new(runtime.clone());
    let control = Arc::new(Control::new(runtime.clone(), Some(scheduler.waker())));
    let listener = control_socket::bind(dir)?;
    let stop_socket = CancellationToken::new();
    let socket_task = tokio::spawn(control_socket::serve(
        listener,
        control.clone(),
        stop_socket.clone(),
    ));
    let live = LiveProgress::new();
    let http_task = match args.http {
        Some(addr) => Some(
            crate::status_http::start(
                addr,
                http_token,
                control.clone(),
                live.clone(),
                stop_socket.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let signals = tokio::spawn(watch_signals(signals, runtime.clone()));
    tracing::info!(state_dir = %dir.display(), pid = std::process::id(), "serving: running started batches");
    // Passes started by the scheduler log their events; a quiet display watches them
    // for stalls, as `--wait` does.
    let watch = ProgressDisplay::new("(serve)", true);
    let heartbeat = spawn_heartbeat(watch.clone());
    let events = {
        let (log, watch, live) = (log_events(), watch.sink(), live.sink());
        let sink: EventSink = Arc::new(move |e: &BatchEvent| {
            log(e);
            watch(e);
            live(e);
        });
        sink
    };
    let result = scheduler.run(events).await;
    heartbeat.abort();
    signals.abort();
    stop_socket.cancel();
    let _ = socket_task.await;
    if let Some(task) = http_task {
        let _ = task.await;
    }
    runtime
        .store()
        .flush()
        .await
        .map_err(|source| imapmirror_engine::Error::State {
            action: "saving the state directory".to_owned(),
            source,
        })?;
    drop(scheduler);
    drop(control);
    drop(runtime);
    let _ = tokio::time::timeout(NOTIFY_GRACE, notify_task).await;
    result?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
