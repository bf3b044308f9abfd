//! `batch start --dry-run` and `batch estimate`: a pass planned, not made, and printed.
//! Both run the engine's requests (here or in the process that owns the state
//! directory) and write nothing to the store.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use imapmirror_engine::batch::dry_run::{BatchPlan, PlanFailure};
use imapmirror_engine::batch::estimate::BatchEstimate;
use imapmirror_engine::control::request::{Reply, Request};

use crate::exit_status::WorkFailed;
use crate::state_access::{self, StateAccess};
use crate::text_output::{bytes, table};

// The two helpers below are `commands.rs`'s own, repeated so that this module does not
// depend back on it (scripts/module-cycles).
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

/// Runs `request`; an interrupt (SIGINT, SIGTERM) while it runs here stops it cleanly,
/// so that the estimate's scratch folders are deleted before the process ends.
async fn execute(dir: &Path, request: Request) -> anyhow::Result<Reply> {
    use tokio::signal::unix::{SignalKind, signal};
    let access = state_access::open(dir, None).await?;
    let watcher = match &access {
        StateAccess::Local(control) => {
            let runtime = control.runtime().clone();
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            Some(tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                runtime.shut_down();
            }))
        }
        StateAccess::Remote(_) => None,
    };
    let reply = access.execute(request).await;
    if let Some(w) = watcher {
        w.abort();
    }
    Ok(reply?)
}

/// Exit 1 when some mailbox could not be planned (the rest was printed).
fn failures(batch: &str, failed: &[PlanFailure]) -> anyhow::Result<ExitCode> {
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(WorkFailed(format!(
        "{} mailboxes of batch {batch} could not be planned (first: {}: {}); fix the cause and run the command again.",
        failed.len(),
        failed[0].email,
        failed[0].error
    ))
    .into())
}

pub async fn dry_run(dir: &Path, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let plan = match execute(
        dir,
        Request::BatchDryRun {
            name: name.to_owned(),
        },
    )
    .await?
    {
        Reply::DryRun { plan } => plan,
        other => return Err(unexpected(other)),
    };
    if json {
        print_json(&plan)?;
    } else {
        out!("{}", plan_text(&plan));
    }
    failures(&plan.batch, &plan.failed)
}

fn plan_text(plan: &BatchPlan) -> String {
    let mut out = format!(
        "Dry run of batch {} ({}, {} → {}): nothing was written to the target or to the batch.\n",
        plan.batch, plan.status, plan.source, plan.target
    );
    for m in &plan.mailboxes {
        out.push_str(&format!(
            "\n{} ({}): {} messages ({}) to copy, {} already migrated, {} too large; {} target folders to create\n",
            m.email,
            m.status,
            m.messages,
            bytes(m.bytes),
            m.already_migrated,
            m.too_large,
            m.folders_to_create
        ));
        let rows: Vec<Vec<String>> = m
            .folders
            .iter()
            .map(|f| {
                vec![
                    format!("  {}", f.source),
                    format!("→ {}{}", f.target, if f.create { " (new)" } else { "" }),
                    f.state.clone(),
                    f.messages.to_string(),
                    bytes(f.bytes),
                    f.already_migrated.to_string(),
                    match &f.size_limit {
                        Some(limit) => format!("{} ({limit})", f.too_large),
                        None => f.too_large.to_string(),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "  SOURCE",
                "TARGET",
                "STATE",
                "COPY",
                "BYTES",
                "MIGRATED",
                "TOO LARGE",
            ],
            &rows,
        ));
        for s in &m.skipped_folders {
            out.push_str(&format!("  skipped {}: {}\n", s.folder, s.reason));
        }
    }
    for f in &plan.failed {
        out.push_str(&format!("\n{}: not planned: {}\n", f.email, f.error));
    }
    out.push_str(&format!(
        "\nA pass would copy {} messages ({}) and create {} folders; {} messages are already migrated, {} too large.\n",
        plan.messages,
        bytes(plan.bytes),
        plan.folders_to_create,
        plan.already_migrated,
        plan.too_large
    ));
    out
}

pub async fn estimate(dir: &Path, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let estimate = match execute(
        dir,
        Request::BatchEstimate {
            name: name.to_owned(),
        },
    )
    .await?
    {
        Reply::Estimate { estimate } => estimate,
        other => return Err(unexpected(other)),
    };
    if json {
        print_json(&estimate)?;
    } else {
        out!("{}", estimate_text(&estimate));
    }
    failures(&estimate.batch, &estimate.failed)
}

/// `1 h 02 min`, `3 min 05 s`, `42 s`.
fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s:02} s"),
        _ => format!("{h} h {m:02} min"),
    }
}

fn estimate_text(e: &BatchEstimate) -> String {
    let basis = match &e.sample {
        Some(s) => format!(
            "from a sample copy of {} messages ({}) just made over {} streams in {} mailboxes; its scratch folders are deleted",
            s.messages,
            bytes(s.bytes),
            s.streams,
            s.mailboxes
        ),
        None if e.basis == "history" => {
            format!("from {} earlier passes of this batch", e.history_passes)
        }
        None => "nothing to copy: logins and listings only".to_owned(),
    };
    format!(
        "Batch {} ({}): {} messages ({}) to copy from {} mailboxes; {} already migrated, {} too large.\nEstimated duration: {} with {} mailboxes at once and {} folders each ({basis}).\n",
        e.batch,
        e.status,
        e.messages,
        bytes(e.bytes),
        e.mailboxes.len(),
        e.already_migrated,
        e.too_large,
        duration(e.estimated_seconds),
        e.concurrency,
        e.connections_per_mailbox,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(185), "3 min 05 s");
        assert_eq!(duration(3720), "1 h 02 min");
    }
}
