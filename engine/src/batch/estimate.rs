//! `batch estimate`: how much a pass over a batch would copy and how long it would take,
//! before it runs.
//!
//! Every mailbox is planned as the dry run plans it ([`plan_mailboxes`]): logged in to
//! on both sides, listed, its folders mapped, and what is not yet migrated sized on the
//! source (`STATUS (MESSAGES SIZE)` where the source offers `STATUS=SIZE`, else `UID
//! FETCH … RFC822.SIZE` of what the uid map lacks). The time then comes from one of two
//! bases:
//!
//! - **history**: the batch's own earlier passes (each mailbox's pass history): a
//!   mailbox costs `a + bytes / r`, fitted from those passes (least squares when their
//!   sizes differ enough, else the mean rate), and `a0` (the passes that copied
//!   nothing) when it has nothing to copy. The passes ran under the batch's
//!   concurrency, so contention is in the figures.
//! - **sample**: without history, a short copy into scratch folders
//!   (`imapmirror-estimate-<random>[-n]`) on the target, made the way the pass would copy
//!   (each source folder into a new folder):
//!   as many mailboxes at once as the endpoints let migrate, each with up to its
//!   connections-per-mailbox folders at once, real APPEND groups of real messages, for a
//!   few seconds. It gives the cost of creating a target folder, of opening a folder on
//!   both sides, and the bytes per second of one copy stream under that load. The
//!   scratch folders are deleted afterwards, whatever happened meanwhile; one left by an
//!   interrupted estimate is deleted by the next (`pass/sample_copy.rs` copies).
//!
//! A mailbox then takes its login and listing time (measured while planning it), the
//! folders it creates, and its folders' copy time spread over its connections (never
//! less than its largest folder). The batch takes the sum over mailboxes divided by the
//! mailboxes run at once, and never less than its longest mailbox: a batch of many small
//! mailboxes is priced by their fixed costs, one of few large ones by its bytes.

use futures::future::join_all;
use imapmirror_storage::{PassOutcome, PassRecord, Store};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::batch::dry_run::{PlanFailure, any_initial, plan_mailboxes};
use crate::batch::runner::{BatchRuntime, PlanningJobs};
use crate::error::Error;
use crate::pass::mailbox_job::connection_pairs;
use crate::pass::mailbox_plan::MailboxPlan;
use crate::pass::sample_copy::{StreamSample, sample_mailbox};

/// Passes per mailbox the history basis reads, newest first.
const HISTORY_PASSES_PER_MAILBOX: usize = 10;

/// One mailbox's share of the estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxEstimate {
    pub email: String,
    pub status: String,
    /// Folders the pass would copy into.
    pub folders: usize,
    /// What the pass would copy (what is not migrated yet).
    pub messages: u64,
    pub bytes: u64,
    /// Skipped as too large.
    pub too_large: u64,
    pub already_migrated: u64,
    /// Messages in the source folders the pass covers.
    pub source_messages: u64,
    /// This mailbox's pass alone, in seconds.
    pub estimated_seconds: f64,
}

/// What the sample copy measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleReport {
    /// Mailboxes sampled at once, and copy streams over all of them.
    pub mailboxes: usize,
    pub streams: usize,
    pub messages: u64,
    pub bytes: u64,
    /// Seconds the streams copied, added up.
    pub stream_seconds: f64,
    /// The scratch folders made and deleted (and leftovers of earlier estimates deleted).
    pub scratch_folders_deleted: usize,
}

/// The rates the estimate used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateModel {
    /// Seconds a mailbox costs whatever it holds: logins and listings (sample: the mean
    /// measured while planning; history: the fitted intercept).
    pub per_mailbox_seconds: f64,
    /// History: seconds of a pass that copied nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_mailbox_seconds: Option<f64>,
    /// Sample: seconds to create a target folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_folder_seconds: Option<f64>,
    /// Sample: seconds to open a folder on both sides and list its messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_folder_seconds: Option<f64>,
    /// Sample: seconds of one APPEND group beyond its bytes (the target's commit, the
    /// round trips), fitted with the rate from the sample's streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_seconds: Option<f64>,
    /// Sample: bytes per second of one copy stream under the batch's concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_bytes_per_second: Option<f64>,
    /// History: bytes per second of one mailbox's pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_bytes_per_second: Option<f64>,
}

/// The estimate of a pass over a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEstimate {
    pub batch: String,
    pub status: String,
    /// What the pass would copy: messages and bytes not yet migrated.
    pub messages: u64,
    pub bytes: u64,
    pub too_large: u64,
    pub already_migrated: u64,
    pub source_messages: u64,
    /// The predicted duration of the pass, in whole seconds (rounded up).
    pub estimated_seconds: u64,
    /// `history` (the batch's earlier passes) or `sample` (a sample copy just made).
    pub basis: String,
    /// Mailboxes run at once (the endpoints' limit, at most the mailboxes there are).
    pub concurrency: usize,
    /// Folders of one mailbox copied at once.
    pub connections_per_mailbox: usize,
    pub model: RateModel,
    /// Earlier passes the history basis used.
    pub history_passes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleReport>,
    pub mailboxes: Vec<MailboxEstimate>,
    pub failed: Vec<PlanFailure>,
}

/// Estimates a pass over batch `name` (see the module docs).
pub async fn estimate(
    runtime: &BatchRuntime,
    name: &str,
    cancel: &CancellationToken,
) -> Result<BatchEstimate, Error> {
    let jobs = runtime.planning_jobs(name).await?;
    let planned = plan_mailboxes(runtime, &jobs, cancel).await;
    if cancel.is_cancelled() {
        return Err(Error::Stopped {
            mailbox: format!("the estimate of batch {name}"),
        });
    }
    let mut plans: Vec<(usize, MailboxPlan)> = Vec::new();
    let mut failed = Vec::new();
    for (index, result) in planned.into_iter().enumerate() {
        match result {
            Ok(p) => plans.push((index, p)),
            Err(f) => failed.push(f),
        }
    }
    let at_once = if any_initial(&jobs) {
        jobs.migrations
    } else {
        jobs.syncs
    };
    let concurrency = at_once.min(plans.len()).max(1);
    let k = jobs.connections.max(1);

    let history = history_points(runtime, &jobs).await?;
    let to_copy = plans.iter().any(|(_, p)| p.bytes > 0);
    let (basis, model, sample) = match fit_history(&history, to_copy) {
        Some(model) => ("history", model, None),
        None if !to_copy => {
            let model = RateModel {
                per_mailbox_seconds: mean(plans.iter().map(|(_, p)| p.connect_seconds)),
                idle_mailbox_seconds: None,
                create_folder_seconds: Some(0.0),
                open_folder_seconds: Some(0.0),
                group_seconds: None,
                stream_bytes_per_second: None,
                mailbox_bytes_per_second: None,
            };
            ("sample", model, None)
        }
        None => {
            let (model, report) =
                sample(runtime.store(), &jobs, &plans, concurrency, k, name, cancel).await?;
            ("sample", model, Some(report))
        }
    };

    let mut mailboxes = Vec::with_capacity(plans.len());
    let mut total = 0.0f64;
    let mut longest = 0.0f64;
    for (_, p) in &plans {
        let seconds = mailbox_seconds(p, &model, k);
        total += seconds;
        longest = longest.max(seconds);
        mailboxes.push(MailboxEstimate {
            email: p.email.clone(),
            status: p.status.clone(),
            folders: p.folders.len(),
            messages: p.messages,
            bytes: p.bytes,
            too_large: p.too_large,
            already_migrated: p.already_migrated,
            source_messages: p.source_messages,
            estimated_seconds: seconds,
        });
    }
    let batch_seconds = (total / concurrency as f64).max(longest);
    let sum = |f: fn(&MailboxPlan) -> u64| plans.iter().map(|(_, p)| f(p)).sum::<u64>();
    Ok(BatchEstimate {
        batch: jobs.batch.settings.name.clone(),
        status: jobs.batch.status.as_str().to_owned(),
        messages: sum(|p| p.messages),
        bytes: sum(|p| p.bytes),
        too_large: sum(|p| p.too_large),
        already_migrated: sum(|p| p.already_migrated),
        source_messages: sum(|p| p.source_messages),
        estimated_seconds: batch_seconds.ceil() as u64,
        basis: basis.to_owned(),
        concurrency,
        connections_per_mailbox: k,
        model,
        history_passes: history.len(),
        sample,
        mailboxes,
        failed,
    })
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// One mailbox's pass, in seconds, under `model` (see the module docs).
fn mailbox_seconds(p: &MailboxPlan, model: &RateModel, connections: usize) -> f64 {
    if let Some(rate) = model.mailbox_bytes_per_second {
        if p.bytes == 0 {
            return model
                .idle_mailbox_seconds
                .unwrap_or(model.per_mailbox_seconds);
        }
        return model.per_mailbox_seconds + p.bytes as f64 / rate;
    }
    let create = model.create_folder_seconds.unwrap_or(0.0);
    let open = model.open_folder_seconds.unwrap_or(0.0);
    let fixed = p.connect_seconds + p.folders_to_create as f64 * create;
    let folder_times: Vec<f64> = p
        .folders
        .iter()
        .filter(|f| f.messages > 0)
        .map(|f| {
            let groups = f.groups as f64 * model.group_seconds.unwrap_or(0.0);
            match model.stream_bytes_per_second {
                Some(rate) if rate > 0.0 => open + groups + f.bytes as f64 / rate,
                _ => open + groups,
            }
        })
        .collect();
    if folder_times.is_empty() {
        return fixed;
    }
    // As many pairs as the pass would open for this many new messages.
    let workers = connection_pairs(p.messages, folder_times.len(), connections);
    let spread = folder_times.iter().sum::<f64>() / workers as f64;
    let largest = folder_times.iter().copied().fold(0.0, f64::max);
    // Each worker past the first logs in on a pair of its own, all at once.
    let logins = if workers > 1 { p.connect_seconds } else { 0.0 };
    fixed + logins + spread.max(largest)
}

// ---------------------------------------------------------------- history

/// A stream's seconds as `groups × g + bytes / r`, fitted over the sample's streams by
/// least squares: small folders are priced by their groups' commits, large ones by their
/// bytes. Where the streams cannot tell the two apart (or the fit is not physical), all
/// time goes to the bytes: `g = 0`, `r` the mean rate.
fn stream_fit(streams: &[StreamSample]) -> (f64, f64) {
    let copied: Vec<(f64, f64, f64)> = streams
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| (s.groups as f64, s.bytes as f64, s.copy_seconds))
        .collect();
    let bytes: f64 = copied.iter().map(|c| c.1).sum();
    let seconds: f64 = copied.iter().map(|c| c.2).sum();
    let mean_rate = if seconds > 0.0 { bytes / seconds } else { 0.0 };
    let (mut gg, mut gb, mut bb, mut gt, mut bt) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (g, b, t) in &copied {
        gg += g * g;
        gb += g * b;
        bb += b * b;
        gt += g * t;
        bt += b * t;
    }
    let det = gg * bb - gb * gb;
    if copied.len() >= 3 && det > 1e-9 * gg * bb {
        let g = (gt * bb - bt * gb) / det;
        let h = (gg * bt - gb * gt) / det;
        if g >= 0.0 && h > 0.0 {
            return (g, 1.0 / h);
        }
    }
    (0.0, mean_rate)
}

/// A finished pass of a mailbox: bytes copied, seconds taken.
type HistoryPoint = (u64, f64);

async fn history_points(
    runtime: &BatchRuntime,
    jobs: &PlanningJobs,
) -> Result<Vec<HistoryPoint>, Error> {
    let ids: Vec<_> = jobs.jobs.iter().map(|j| j.id).collect();
    let name = jobs.batch.settings.name.clone();
    runtime
        .store()
        .run(move |db| {
            let mut points = Vec::new();
            for id in ids {
                let history: Vec<PassRecord> = db.pass_history(id)?;
                points.extend(
                    history
                        .iter()
                        .rev()
                        .filter(|r| r.outcome == PassOutcome::Succeeded)
                        .take(HISTORY_PASSES_PER_MAILBOX)
                        .map(|r| {
                            let ms = r
                                .finished
                                .unix_millis()
                                .saturating_sub(r.started.unix_millis());
                            (r.bytes_copied, ms as f64 / 1000.0)
                        }),
                );
            }
            Ok(points)
        })
        .await
        .map_err(|source| Error::State {
            action: format!("reading the pass history of batch {name}"),
            source,
        })
}

/// The history basis, when the batch's passes give one: a rate needs a pass that copied
/// something; with nothing to copy now, passes that copied nothing suffice.
fn fit_history(points: &[HistoryPoint], to_copy: bool) -> Option<RateModel> {
    let copying: Vec<(f64, f64)> = points
        .iter()
        .filter(|(b, _)| *b > 0)
        .map(|(b, s)| (*b as f64, *s))
        .collect();
    let idle = median(
        points
            .iter()
            .filter(|(b, _)| *b == 0)
            .map(|(_, s)| *s)
            .collect(),
    );
    if copying.is_empty() {
        if to_copy {
            return None;
        }
        let idle = idle?;
        return Some(RateModel {
            per_mailbox_seconds: idle,
            idle_mailbox_seconds: Some(idle),
            create_folder_seconds: None,
            open_folder_seconds: None,
            group_seconds: None,
            stream_bytes_per_second: None,
            mailbox_bytes_per_second: Some(f64::INFINITY),
        });
    }
    let shortest = copying
        .iter()
        .map(|(_, s)| *s)
        .fold(f64::INFINITY, f64::min);
    let (small, large) = copying
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), (b, _)| {
            (lo.min(*b), hi.max(*b))
        });
    // Least squares only where the sizes spread enough to tell the fixed cost from the
    // rate; mailboxes of one size fit any line through their mean.
    let fitted = (copying.len() >= 3 && large >= 2.0 * small)
        .then(|| least_squares(&copying))
        .flatten()
        .filter(|(a, slope)| *slope > 0.0 && *a >= 0.0 && *a <= shortest);
    let (a, slope) = match fitted {
        Some(fit) => fit,
        None => {
            let a = idle.unwrap_or(0.0).min(shortest);
            let bytes: f64 = copying.iter().map(|(b, _)| b).sum();
            let seconds: f64 = copying.iter().map(|(_, s)| (s - a).max(0.0)).sum();
            (a, seconds / bytes)
        }
    };
    let rate = if slope > 0.0 {
        1.0 / slope
    } else {
        f64::INFINITY
    };
    Some(RateModel {
        per_mailbox_seconds: a,
        idle_mailbox_seconds: Some(idle.unwrap_or(a)),
        create_folder_seconds: None,
        open_folder_seconds: None,
        group_seconds: None,
        stream_bytes_per_second: None,
        mailbox_bytes_per_second: Some(rate),
    })
}

/// `seconds = a + slope × bytes`, or `None` when the bytes do not vary.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mx = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let my = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

// ---------------------------------------------------------------- sample

/// The sample copy: the mailboxes with the most to copy, as many at once as the pass
/// would run, each with up to `k` folders at once.
async fn sample(
    store: &Store,
    jobs: &PlanningJobs,
    plans: &[(usize, MailboxPlan)],
    concurrency: usize,
    k: usize,
    batch: &str,
    cancel: &CancellationToken,
) -> Result<(RateModel, SampleReport), Error> {
    let mut candidates: Vec<&(usize, MailboxPlan)> =
        plans.iter().filter(|(_, p)| p.bytes > 0).collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1.bytes));
    candidates.truncate(concurrency);
    let runs = candidates.iter().filter_map(|(index, plan)| {
        let job = match jobs.jobs.get(*index).map(|j| &j.job) {
            Some(Ok((_, job))) => job,
            _ => return None,
        };
        Some(sample_mailbox(store, job, plan, k, cancel))
    });
    let results = join_all(runs).await;
    let mut samples = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(s) => samples.push(s),
            Err(e) => {
                tracing::warn!(error = %e, "a mailbox of the estimate's sample failed");
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        // A scratch folder that could not be deleted must be reported, never hidden
        // behind an estimate made without it.
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(Error::Stopped {
            mailbox: format!("the estimate of batch {batch}"),
        });
    }
    let streams: Vec<StreamSample> = samples.iter().flat_map(|s| s.streams.clone()).collect();
    let bytes: u64 = streams.iter().map(|s| s.bytes).sum();
    let messages: u64 = streams.iter().map(|s| s.messages).sum();
    let stream_seconds: f64 = streams.iter().map(|s| s.copy_seconds).sum();
    if bytes == 0 || stream_seconds <= 0.0 {
        return Err(Error::Estimate {
            batch: batch.to_owned(),
            problem: "the sample copy to the target's scratch folder moved no message (the target refused them, or the sample had nothing to send); run `imapmirror batch start --dry-run` to see what the pass would copy".to_owned(),
        });
    }
    let (group_seconds, rate) = stream_fit(&streams);
    let model = RateModel {
        per_mailbox_seconds: mean(plans.iter().map(|(_, p)| p.connect_seconds)),
        idle_mailbox_seconds: None,
        create_folder_seconds: Some(mean(streams.iter().map(|s| s.create_seconds))),
        open_folder_seconds: Some(mean(streams.iter().map(|s| s.open_seconds))),
        group_seconds: Some(group_seconds),
        stream_bytes_per_second: Some(rate),
        mailbox_bytes_per_second: None,
    };
    let report = SampleReport {
        mailboxes: samples.len(),
        streams: streams.len(),
        messages,
        bytes,
        stream_seconds,
        scratch_folders_deleted: samples.iter().map(|s| s.deleted).sum(),
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::mailbox_plan::FolderPlanRow;

    fn plan(connect: f64, folders: &[(u64, u64)], creates: u64) -> MailboxPlan {
        MailboxPlan {
            email: "a@example.test".into(),
            status: "Queued".into(),
            folders: folders
                .iter()
                .enumerate()
                .map(|(i, (messages, bytes))| FolderPlanRow {
                    source: format!("F{i}"),
                    target: format!("F{i}"),
                    create: true,
                    state: "new".into(),
                    source_messages: *messages,
                    messages: *messages,
                    bytes: *bytes,
                    groups: 1,
                    already_migrated: 0,
                    too_large: 0,
                    too_large_bytes: 0,
                    size_limit: None,
                    sized_by: "fetch".into(),
                })
                .collect(),
            skipped_folders: Vec::new(),
            messages: folders.iter().map(|f| f.0).sum(),
            bytes: folders.iter().map(|f| f.1).sum(),
            too_large: 0,
            already_migrated: 0,
            source_messages: 0,
            folders_to_create: creates,
            connect_seconds: connect,
            target_prefix: String::new(),
            leftover_scratch: Vec::new(),
        }
    }

    fn sample_model() -> RateModel {
        RateModel {
            per_mailbox_seconds: 0.1,
            idle_mailbox_seconds: None,
            create_folder_seconds: Some(0.01),
            open_folder_seconds: Some(0.02),
            group_seconds: Some(0.0),
            stream_bytes_per_second: Some(1_000_000.0),
            mailbox_bytes_per_second: None,
        }
    }

    #[test]
    fn a_mailbox_spreads_its_folders_over_its_connections_but_waits_for_the_largest() {
        // Four equal folders with enough mail for four connections: one folder's time.
        let even = mailbox_seconds(&plan(0.1, &[(300, 1_000_000); 4], 4), &sample_model(), 4);
        assert!((even - (0.1 + 0.04 + 0.1 + 1.02)).abs() < 1e-9, "{even}");
        // The same bytes in few messages: the pass keeps to its first pair, folder after
        // folder, as `connection_pairs` decides.
        let few = mailbox_seconds(&plan(0.1, &[(10, 1_000_000); 4], 4), &sample_model(), 4);
        assert!((few - (0.1 + 0.04 + 4.0 * 1.02)).abs() < 1e-9, "{few}");
        // One large folder and small ones: the large one sets the time.
        let skewed = mailbox_seconds(
            &plan(0.1, &[(600, 4_000_000), (1, 1000), (1, 1000)], 0),
            &sample_model(),
            4,
        );
        assert!((skewed - (0.1 + 0.1 + 4.02)).abs() < 1e-9, "{skewed}");
        // Nothing to copy: the fixed costs alone.
        let idle = mailbox_seconds(&plan(0.3, &[], 0), &sample_model(), 4);
        assert!((idle - 0.3).abs() < 1e-9, "{idle}");
    }

    #[test]
    fn streams_give_a_group_cost_and_a_rate() {
        let stream = |groups: u64, bytes: u64| StreamSample {
            create_seconds: 0.0,
            open_seconds: 0.0,
            copy_seconds: groups as f64 * 0.05 + bytes as f64 / 2_000_000.0,
            messages: groups * 10,
            bytes,
            groups,
        };
        let (g, r) = stream_fit(&[
            stream(1, 30_000),
            stream(4, 1_000_000),
            stream(2, 90_000),
            stream(3, 600_000),
        ]);
        assert!((g - 0.05).abs() < 1e-6, "{g}");
        assert!((r - 2_000_000.0).abs() < 1.0, "{r}");
        // Streams that cannot separate the two: the mean rate.
        let (g, r) = stream_fit(&[stream(2, 100_000)]);
        assert_eq!(g, 0.0);
        assert!((r - 100_000.0 / 0.15).abs() < 1e-6, "{r}");
    }

    #[test]
    fn history_fits_a_fixed_cost_and_a_rate_when_sizes_differ() {
        // 0.5 s per mailbox plus 1 MB/s, exactly.
        let points: Vec<HistoryPoint> = [1_000_000u64, 3_000_000, 6_000_000, 10_000_000]
            .iter()
            .map(|b| (*b, 0.5 + *b as f64 / 1_000_000.0))
            .collect();
        let model = fit_history(&points, true).expect("a model");
        assert!((model.per_mailbox_seconds - 0.5).abs() < 1e-6, "{model:?}");
        let rate = model.mailbox_bytes_per_second.expect("a rate");
        assert!((rate - 1_000_000.0).abs() < 1.0, "{model:?}");
    }

    #[test]
    fn history_of_equal_mailboxes_gives_the_mean_rate_after_the_idle_cost() {
        let points = vec![(2_000_000, 2.2), (2_000_000, 2.2), (0, 0.2)];
        let model = fit_history(&points, true).expect("a model");
        assert!((model.per_mailbox_seconds - 0.2).abs() < 1e-9);
        assert!((model.mailbox_bytes_per_second.unwrap_or(0.0) - 1_000_000.0).abs() < 1.0);
        assert_eq!(model.idle_mailbox_seconds, Some(0.2));
    }

    #[test]
    fn history_without_a_copying_pass_gives_no_rate() {
        assert_eq!(fit_history(&[(0, 0.2)], true), None);
        assert_eq!(fit_history(&[], false), None);
        // Nothing to copy now: idle passes are enough.
        let model = fit_history(&[(0, 0.2), (0, 0.4), (0, 0.3)], false).expect("a model");
        assert_eq!(model.idle_mailbox_seconds, Some(0.3));
    }
}
