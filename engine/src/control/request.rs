//! The requests every CLI command makes, and their one set of handlers.
//!
//! A command runs its request either in its own process (when it could open the state
//! directory) or in the process that owns the directory, over the control socket
//! (`socket.rs`); both go through [`Control::execute`], so the output and the exit
//! code do not depend on which process did the work. Replies carry data, never text: the
//! CLI renders them.

use std::sync::Arc;

use imapmirror_storage::{
    self as storage, BatchSettings, Database, EndpointRecord, EndpointSettings, MigrationRow,
    NewMailbox,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::batch::batch_merge::{self, MergeSummary};
use crate::batch::dry_run::{BatchPlan, dry_run};
use crate::batch::estimate::{BatchEstimate, estimate};
use crate::batch::notification::check_url;
use crate::batch::report::{
    BatchReport, BatchSummary, MailboxSummary, batch_report, batch_summary, mailbox_summaries,
    rfc3339,
};
use crate::batch::report_delivery;
use crate::batch::runner::{BatchRuntime, PassIntent, mark_for_pass, mark_stopped};
use crate::endpoint::connection::endpoint_access;
use crate::endpoint::credentials::{self, Secret, source_login, target_login};
use crate::endpoint::probe::{ProbeReport, probe};
use crate::endpoint::rate_budget::{RateShare, check_max_rates};
use crate::error::{Error, Fault};
use crate::migration_file::MailboxRow;
use crate::pass::folder_plan::Exclusion;

/// A password in a request. It crosses only the owner-only control socket; `Debug`
/// hides it so that a logged request cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireSecret(String);

impl WireSecret {
    pub fn new(value: impl Into<String>) -> Self {
        WireSecret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WireSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A migration-file row as a request carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowInput {
    pub line: u64,
    pub email: String,
    pub user_name: String,
    pub password: WireSecret,
    pub user_root: Option<String>,
    pub target_user_name: Option<String>,
    pub target_password: Option<WireSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<WireSecret>,
}

impl From<&MailboxRow> for RowInput {
    fn from(r: &MailboxRow) -> Self {
        RowInput {
            line: r.line,
            email: r.email.clone(),
            user_name: r.user_name.clone(),
            password: WireSecret::new(r.password.expose()),
            user_root: r.user_root.clone(),
            target_user_name: r.target_user_name.clone(),
            target_password: r
                .target_password
                .as_ref()
                .map(|p| WireSecret::new(p.expose())),
            refresh_token: r
                .refresh_token
                .as_ref()
                .map(|p| WireSecret::new(p.expose())),
        }
    }
}

impl RowInput {
    fn to_row(&self) -> MailboxRow {
        MailboxRow {
            line: self.line,
            email: self.email.clone(),
            user_name: self.user_name.clone(),
            password: Secret::new(self.password.expose()),
            user_root: self.user_root.clone(),
            target_user_name: self.target_user_name.clone(),
            target_password: self
                .target_password
                .as_ref()
                .map(|p| Secret::new(p.expose())),
            refresh_token: self.refresh_token.as_ref().map(|p| Secret::new(p.expose())),
        }
    }
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    EndpointAdd {
        settings: EndpointSettings,
        admin_password: Option<WireSecret>,
        /// Test the connection first and refuse to add an endpoint that cannot be reached.
        test: bool,
        /// A mailbox to log in as through the admin credentials during that test.
        #[serde(default)]
        test_user: Option<String>,
        /// When the name is taken: replace that endpoint's settings and admin password
        /// (`--if-exists update`) instead of refusing.
        #[serde(default)]
        update_existing: bool,
    },
    EndpointTest {
        name: String,
        /// A mailbox to log in as through the admin credentials.
        user: Option<String>,
    },
    EndpointList,
    EndpointRemove {
        name: String,
    },
    BatchAdd {
        settings: BatchSettings,
        rows: Vec<RowInput>,
        notify_url: Option<String>,
        start: bool,
        /// The shard of the migration file these rows are (`--shard`), stored with the batch.
        #[serde(default)]
        shard: Option<storage::BatchShard>,
        /// When the batch exists: merge the file into it (`--if-exists update`) instead of
        /// refusing; see [`crate::batch::batch_merge`].
        #[serde(default)]
        update_existing: bool,
        /// Deliver the report after every pass into this address's INBOX on the target.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report_mailbox: Option<String>,
        /// And a copy into each of these addresses' INBOXes (with `report_mailbox` only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        report_copies: Vec<String>,
    },
    BatchStart {
        name: String,
    },
    BatchSync {
        name: String,
    },
    /// `batch start --dry-run`: what a pass would do, found without writing anything.
    BatchDryRun {
        name: String,
    },
    /// `batch estimate`: what a pass would copy and how long it would take.
    BatchEstimate {
        name: String,
    },
    BatchStop {
        name: String,
    },
    BatchComplete {
        name: String,
    },
    BatchStatus {
        name: Option<String>,
    },
    BatchUsers {
        name: String,
    },
    BatchReport {
        name: String,
    },
    BatchRemove {
        name: String,
    },
    /// Where the proxy sends a login: the batches it belongs to, newest first.
    Routes {
        login: String,
    },
    /// Everything a proxy routes by, unless `known_version` is still current; with the
    /// endpoints' admin passwords only when `with_secrets` (`proxy --target-admin-login`).
    RoutingSnapshot {
        known_version: Option<String>,
        with_secrets: bool,
    },
    /// Who owns the state directory and whether a scheduler runs there.
    Ping,
}

/// An endpoint as listed (never its password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    #[serde(flatten)]
    pub settings: EndpointSettings,
    pub has_admin_password: bool,
    pub created: String,
    /// `--max-rate` and this process's share of it, when the endpoint has one
    /// ([`EndpointView::with_rate_budget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_budget: Option<Box<RateShare>>,
}

impl From<&EndpointRecord> for EndpointView {
    fn from(r: &EndpointRecord) -> Self {
        EndpointView {
            settings: r.settings.clone(),
            has_admin_password: r.has_admin_password,
            created: rfc3339(r.created),
            rate_budget: None,
        }
    }
}

impl EndpointView {
    /// The view with this process's share of the endpoint's rate. Runs inside a storage job.
    fn with_rate_budget(r: &EndpointRecord, db: &Database) -> Result<Self, Error> {
        let shards = db
            .endpoint_shard_count(&r.settings.name)
            .map_err(state_err(format!(
                "reading the batches of {}",
                r.settings.name
            )))?;
        Ok(EndpointView {
            rate_budget: RateShare::of(&r.settings.max_rate, shards).map(Box::new),
            ..EndpointView::from(r)
        })
    }
}

/// One route of a login (for the proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub batch: String,
    pub batch_status: String,
    pub mailbox_status: String,
    pub email: String,
    pub source_endpoint: String,
    pub target_endpoint: String,
}

/// What a request produced.
// One reply per request, moved once to be rendered: its size costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    EndpointAdded {
        endpoint: EndpointView,
        probe: Option<ProbeReport>,
        /// Whether an endpoint of that name existed and was updated.
        #[serde(default)]
        updated: bool,
    },
    EndpointTested {
        probe: ProbeReport,
    },
    Endpoints {
        endpoints: Vec<EndpointView>,
    },
    EndpointRemoved {
        name: String,
    },
    BatchAdded {
        batch: BatchSummary,
        mailboxes: usize,
        started: bool,
        scheduler: bool,
        /// Set when the batch existed and the file was merged into it.
        #[serde(default)]
        merged: Option<MergeSummary>,
    },
    /// A batch was marked for a pass (`start`, `sync`, `complete`).
    BatchMarked {
        batch: BatchSummary,
        /// Mailboxes waiting for the pass.
        queued: usize,
        /// Whether a scheduler in the owning process will run it.
        scheduler: bool,
    },
    DryRun {
        plan: BatchPlan,
    },
    Estimate {
        estimate: BatchEstimate,
    },
    BatchStopped {
        batch: BatchSummary,
    },
    Batches {
        batches: Vec<BatchSummary>,
    },
    Users {
        users: Vec<MailboxSummary>,
    },
    Report {
        report: BatchReport,
    },
    BatchRemoved {
        name: String,
    },
    Routes {
        routes: Vec<RouteView>,
    },
    /// `None`: the version the proxy knows is current.
    RoutingSnapshot {
        snapshot: Option<storage::RoutingSnapshot>,
    },
    Pong {
        pid: u32,
        scheduler: bool,
        active_batches: Vec<String>,
    },
}

/// An error as it crosses the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub message: String,
    /// `user_input`, `peer` or `local`.
    pub fault: String,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        WireError {
            message: e.to_string(),
            fault: match e.fault() {
                Fault::UserInput => "user_input",
                Fault::Peer => "peer",
                Fault::Local => "local",
            }
            .to_owned(),
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        let fault = match w.fault.as_str() {
            "user_input" => Fault::UserInput,
            "peer" => Fault::Peer,
            _ => Fault::Local,
        };
        Error::Relayed {
            message: w.message,
            fault,
        }
    }
}

fn state_err(action: String) -> impl FnOnce(storage::StoreError) -> Error {
    move |source| Error::State { action, source }
}

/// A stored endpoint, or the error that names it as missing. Runs inside a storage job.
fn endpoint_record(db: &Database, name: &str) -> Result<EndpointRecord, Error> {
    db.endpoint(name)
        .map_err(state_err(format!("reading endpoint {name}")))?
        .ok_or_else(|| Error::State {
            action: format!("looking up endpoint {name}"),
            source: storage::StoreError::NotFound {
                kind: "endpoint",
                name: name.to_owned(),
                dir: db.path().to_path_buf(),
            },
        })
}

/// A stored batch. Runs inside a storage job.
fn batch_record(db: &Database, name: &str) -> Result<storage::BatchRecord, Error> {
    db.batch(name)
        .map_err(state_err(format!("looking up batch {name}")))
}

/// The EmailAddress of the first mailbox of a batch that uses `endpoint`, to test its
/// admin credentials with when no `--user` was given. Runs inside a storage job.
fn some_mailbox_of(db: &Database, endpoint: &str) -> Result<Option<String>, Error> {
    for b in db
        .batches()
        .map_err(state_err("listing batches".to_owned()))?
    {
        let s = &b.settings;
        if s.source_endpoint != endpoint && s.target_endpoint != endpoint {
            continue;
        }
        let mailboxes = db.mailboxes(b.id).map_err(state_err(format!(
            "reading the mailboxes of batch {}",
            s.name
        )))?;
        if let Some(m) = mailboxes.first() {
            let user = if s.source_endpoint == endpoint {
                m.row.user_name.clone()
            } else {
                m.row
                    .target_user_name
                    .clone()
                    .unwrap_or_else(|| m.row.email_address.clone())
            };
            return Ok(Some(user));
        }
    }
    Ok(None)
}

/// Executes requests against one state directory.
#[derive(Debug, Clone)]
pub struct Control {
    runtime: Arc<BatchRuntime>,
    /// Set when a scheduler runs in this process; woken when a batch is marked.
    scheduler: Option<Arc<Notify>>,
}

/// What `batch add` does besides storing the rows (the fields of [`Request::BatchAdd`]).
struct BatchAddOptions {
    notify_url: Option<String>,
    start: bool,
    shard: Option<storage::BatchShard>,
    update_existing: bool,
    report_mailbox: Option<String>,
    report_copies: Vec<String>,
}

impl Control {
    /// `scheduler`: the scheduler's wake-up, when this process runs one (`serve`).
    pub fn new(runtime: Arc<BatchRuntime>, scheduler: Option<Arc<Notify>>) -> Self {
        Control { runtime, scheduler }
    }

    /// The runtime requests run on.
    pub fn runtime(&self) -> &Arc<BatchRuntime> {
        &self.runtime
    }

    /// Executes one request.
    pub async fn execute(&self, request: Request) -> Result<Reply, Error> {
        let store = self.runtime.store();
        match request {
            Request::EndpointAdd {
                settings,
                admin_password,
                test,
                test_user,
                update_existing,
            } => {
                self.endpoint_add(settings, admin_password, test, test_user, update_existing)
                    .await
            }
            Request::EndpointTest { name, user } => {
                let action = format!("reading endpoint {name}");
                let (record, password, user, share) = store
                    .run_value(move |db| {
                        let record = endpoint_record(db, &name)?;
                        let share = EndpointView::with_rate_budget(&record, db)?.rate_budget;
                        let password = db
                            .endpoint_admin_password(&name)
                            .map_err(state_err(format!(
                                "reading the admin password of endpoint {name}"
                            )))?
                            .map(|p| Secret::new(p.expose()));
                        let user = match user {
                            Some(u) => Some(u),
                            None => some_mailbox_of(db, &name)?,
                        };
                        Ok::<_, Error>((record, password, user, share))
                    })
                    .await
                    .map_err(state_err(action))??;
                let mut probe = probe(&record, password.as_ref(), user.as_deref()).await?;
                probe.rate_budget = share;
                Ok(Reply::EndpointTested { probe })
            }
            Request::EndpointList => Ok(Reply::Endpoints {
                endpoints: store
                    .run_value(|db| {
                        db.endpoints()
                            .map_err(state_err("listing endpoints".to_owned()))?
                            .iter()
                            .map(|r| EndpointView::with_rate_budget(r, db))
                            .collect::<Result<Vec<_>, Error>>()
                    })
                    .await
                    .map_err(state_err("listing endpoints".to_owned()))??,
            }),
            Request::EndpointRemove { name } => {
                let owned = name.clone();
                store
                    .run(move |db| db.remove_endpoint(&owned))
                    .await
                    .map_err(state_err(format!("removing endpoint {name}")))?;
                self.runtime.forget_endpoint(&name);
                Ok(Reply::EndpointRemoved { name })
            }
            Request::BatchAdd {
                settings,
                rows,
                notify_url,
                start,
                shard,
                update_existing,
                report_mailbox,
                report_copies,
            } => {
                let options = BatchAddOptions {
                    notify_url,
                    start,
                    shard,
                    update_existing,
                    report_mailbox,
                    report_copies,
                };
                self.batch_add(settings, rows, options).await
            }
            Request::BatchStart { name } => self.mark(&name, PassIntent::Start).await,
            Request::BatchSync { name } => self.mark(&name, PassIntent::Sync).await,
            Request::BatchComplete { name } => self.mark(&name, PassIntent::Complete).await,
            Request::BatchDryRun { name } => Ok(Reply::DryRun {
                plan: dry_run(&self.runtime, &name, self.runtime.shutdown_token()).await?,
            }),
            Request::BatchEstimate { name } => Ok(Reply::Estimate {
                estimate: estimate(&self.runtime, &name, self.runtime.shutdown_token()).await?,
            }),
            Request::BatchStop { name } => {
                self.batch(&name).await?;
                let _hold = self.runtime.hold(&name);
                self.runtime.cancel_batch(&name).await;
                let action = format!("stopping batch {name}");
                let batch = store
                    .run_value(move |db| {
                        let batch = mark_stopped(db, &name)?;
                        batch_summary(db, &batch)
                    })
                    .await
                    .map_err(state_err(action))??;
                Ok(Reply::BatchStopped { batch })
            }
            Request::BatchStatus { name } => {
                let batches = store
                    .run_value(move |db| {
                        let batches = match name {
                            Some(n) => vec![batch_record(db, &n)?],
                            None => db
                                .batches()
                                .map_err(state_err("listing batches".to_owned()))?,
                        };
                        batches
                            .iter()
                            .map(|b| batch_summary(db, b))
                            .collect::<Result<_, _>>()
                    })
                    .await
                    .map_err(state_err("listing batches".to_owned()))??;
                Ok(Reply::Batches { batches })
            }
            Request::BatchUsers { name } => {
                let action = format!("reading the mailboxes of batch {name}");
                let users = store
                    .run_value(move |db| mailbox_summaries(db, &batch_record(db, &name)?))
                    .await
                    .map_err(state_err(action))??;
                Ok(Reply::Users { users })
            }
            Request::BatchReport { name } => {
                let action = format!("reading the report of batch {name}");
                let report = store
                    .run_value(move |db| batch_report(db, &batch_record(db, &name)?))
                    .await
                    .map_err(state_err(action))??;
                Ok(Reply::Report { report })
            }
            Request::BatchRemove { name } => {
                self.batch(&name).await?;
                let _hold = self.runtime.hold(&name);
                self.runtime.cancel_batch(&name).await;
                let owned = name.clone();
                store
                    .run_value(move |db| {
                        let name = owned;
                        db.remove_batch(&name)
                            .map_err(state_err(format!("removing batch {name}")))?;
                        // The shredded credentials must not linger in unflushed pages.
                        db.flush()
                            .map_err(state_err(format!("flushing the removal of batch {name}")))?;
                        Ok::<_, Error>(())
                    })
                    .await
                    .map_err(state_err(format!("removing batch {name}")))??;
                Ok(Reply::BatchRemoved { name })
            }
            Request::Routes { login } => {
                let action = format!("looking up the routes of {login}");
                Ok(Reply::Routes {
                    routes: store
                        .run(move |db| db.login_routes(&login))
                        .await
                        .map_err(state_err(action))?
                        .into_iter()
                        .map(|r| RouteView {
                            batch: r.batch_name,
                            batch_status: r.batch_status.as_str().to_owned(),
                            mailbox_status: r.mailbox_status.as_str().to_owned(),
                            email: r.email_address,
                            source_endpoint: r.source_endpoint,
                            target_endpoint: r.target_endpoint,
                        })
                        .collect(),
                })
            }
            Request::RoutingSnapshot {
                known_version,
                with_secrets,
            } => {
                let snapshot = store
                    .run_value(move |db| {
                        let current = db
                            .routing_version()
                            .map_err(state_err("reading the routing version".to_owned()))?;
                        if known_version.as_deref() == Some(current.as_str()) {
                            return Ok(None);
                        }
                        db.routing_snapshot(with_secrets)
                            .map(Some)
                            .map_err(state_err("reading the routes".to_owned()))
                    })
                    .await
                    .map_err(state_err("reading the routes".to_owned()))??;
                Ok(Reply::RoutingSnapshot { snapshot })
            }
            Request::Ping => Ok(Reply::Pong {
                pid: std::process::id(),
                scheduler: self.scheduler.is_some(),
                active_batches: self.runtime.active_batches(),
            }),
        }
    }

    async fn batch(&self, name: &str) -> Result<storage::BatchRecord, Error> {
        let owned = name.to_owned();
        self.runtime
            .store()
            .run_value(move |db| batch_record(db, &owned))
            .await
            .map_err(state_err(format!("looking up batch {name}")))?
    }

    async fn endpoint_add(
        &self,
        settings: EndpointSettings,
        admin_password: Option<WireSecret>,
        test: bool,
        test_user: Option<String>,
        update_existing: bool,
    ) -> Result<Reply, Error> {
        let store = self.runtime.store();
        let name = settings.name.clone();
        let exists = store
            .run(move |db| db.endpoint(&name))
            .await
            .map_err(state_err(format!("reading endpoint {}", settings.name)))?
            .is_some();
        if exists && !update_existing {
            return Err(Error::State {
                action: format!("adding endpoint {}", settings.name),
                source: storage::StoreError::AlreadyExists {
                    kind: "endpoint",
                    name: settings.name.clone(),
                    dir: store.path().to_path_buf(),
                },
            });
        }
        check_max_rates(&settings.max_rate)?;
        let xoauth2 = settings.auth == storage::AuthMechanism::Xoauth2;
        match (&settings.oauth_token_command, &settings.oauth, xoauth2) {
            (None, None, true) => {
                return Err(Error::InvalidSetting {
                    problem: "--auth xoauth2 needs --oauth-provider (microsoft, google or generic) or --oauth-token-command, the command that prints an access token for each user".to_owned(),
                });
            }
            (Some(_), _, false) => {
                return Err(Error::InvalidSetting {
                    problem: "--oauth-token-command is used only with --auth xoauth2".to_owned(),
                });
            }
            (_, Some(_), false) => {
                return Err(Error::InvalidSetting {
                    problem: "--oauth-provider is used only with --auth xoauth2".to_owned(),
                });
            }
            (Some(_), Some(_), _) => {
                return Err(Error::InvalidSetting {
                    problem: "give --oauth-provider or --oauth-token-command, not both".to_owned(),
                });
            }
            (None, Some(oauth), true) => {
                if let Some(problem) = oauth_problem(oauth) {
                    return Err(Error::InvalidSetting { problem });
                }
            }
            _ => {}
        }
        if let Some(user) = &settings.admin_user {
            let format = settings
                .admin_format
                .map(|f| crate::endpoint::connection::admin_format(f, settings.admin_separator))
                .ok_or_else(|| Error::InvalidSetting {
                    problem:
                        "--admin-user needs --admin-format (dovecot, sasl, exchange or mirapoint)"
                            .to_owned(),
                })?;
            // Refuse a combination that can never build a login, before storing it.
            let password = Secret::new(
                admin_password
                    .as_ref()
                    .map(WireSecret::expose)
                    .unwrap_or(""),
            );
            credentials::admin_login(format, user, &password, "check@example.invalid")?;
        }
        let probe = if test {
            // Test before storing, like New-MigrationEndpoint: a typo is caught now.
            let record = EndpointRecord {
                settings: settings.clone(),
                has_admin_password: admin_password.is_some(),
                created: storage::Timestamp::now(),
            };
            let password = admin_password.as_ref().map(|p| Secret::new(p.expose()));
            let report = probe(&record, password.as_ref(), test_user.as_deref()).await?;
            if let crate::endpoint::probe::LoginCheck::Refused { user, text } = &report.login {
                return Err(Error::LoginRefused {
                    role: "test",
                    server: report.server.clone(),
                    user: user.clone(),
                    text: text.clone(),
                });
            }
            Some(report)
        } else {
            None
        };
        let secret = admin_password.map(|p| storage::Secret::new(p.expose()));
        let name = settings.name.clone();
        let record = if exists {
            let action = format!("updating endpoint {name}");
            let record = store
                .run(move |db| db.update_endpoint(&settings, secret.as_ref()))
                .await
                .map_err(state_err(action))?;
            // Connections opened with the old settings are not reused.
            self.runtime.forget_endpoint(&name);
            record
        } else {
            let action = format!("adding endpoint {name}");
            store
                .run(move |db| db.add_endpoint(&settings, secret.as_ref()))
                .await
                .map_err(state_err(action))?
        };
        let endpoint = store
            .run_value(move |db| EndpointView::with_rate_budget(&record, db))
            .await
            .map_err(state_err(format!("reading endpoint {name}")))??;
        // Passes running now draw from the endpoint's budget: the new rate applies at once.
        self.runtime
            .rate_budget(&name)
            .set_share(endpoint.rate_budget.as_deref());
        Ok(Reply::EndpointAdded {
            endpoint,
            probe,
            updated: exists,
        })
    }

    async fn batch_add(
        &self,
        settings: BatchSettings,
        rows: Vec<RowInput>,
        options: BatchAddOptions,
    ) -> Result<Reply, Error> {
        let BatchAddOptions {
            notify_url,
            start,
            shard,
            update_existing,
            report_mailbox,
            report_copies,
        } = options;
        let store = self.runtime.store();
        let name = settings.name.clone();
        let (source_name, target_name) = (
            settings.source_endpoint.clone(),
            settings.target_endpoint.clone(),
        );
        // The endpoints and their admin credentials, read in one job; a failure to read
        // the credentials is reported after the checks below, as it always was.
        let access = store
            .run_value(move |db| {
                let source = endpoint_record(db, &source_name)?;
                let target = endpoint_record(db, &target_name)?;
                Ok::<_, Error>(
                    endpoint_access(db, &source)
                        .and_then(|s| Ok((s, endpoint_access(db, &target)?))),
                )
            })
            .await
            .map_err(state_err(format!("reading the endpoints of batch {name}")))??;
        for pattern in &settings.excluded_folders {
            pattern.parse::<Exclusion>()?;
        }
        for pattern in &settings.included_folders {
            Exclusion::parse_inclusion(pattern)?;
        }
        if let Some(url) = &notify_url {
            check_url(url)?;
        }
        // Every row must be able to log in on both sides before anything is stored.
        let (source_access, target_access) = access?;
        let report_mailboxes = report_delivery::report_mailboxes(report_mailbox, report_copies)?;
        for address in &report_mailboxes {
            report_delivery::check_address(address)?;
            report_delivery::report_login(address, &target_access)?;
        }
        let mut mailboxes = Vec::with_capacity(rows.len());
        for input in &rows {
            let row = input.to_row();
            source_login(&row, &source_access)?;
            target_login(&row, &target_access)?;
            mailboxes.push(NewMailbox {
                row: MigrationRow {
                    email_address: row.email.clone(),
                    user_name: row.user_name.clone(),
                    user_root: row.user_root.clone(),
                    target_user_name: row.target_user_name.clone(),
                },
                password: storage::Secret::new(row.password.expose()),
                target_password: row
                    .target_password
                    .as_ref()
                    .map(|p| storage::Secret::new(p.expose())),
                refresh_token: row
                    .refresh_token
                    .as_ref()
                    .map(|p| storage::Secret::new(p.expose())),
            });
        }
        let count = mailboxes.len();
        if update_existing {
            let lookup = name.clone();
            let exists = store
                .run(move |db| db.batches())
                .await
                .map_err(state_err(format!("reading batch {name}")))?
                .iter()
                .any(|b| b.settings.name == lookup);
            if exists {
                return self
                    .merge_into_batch(
                        settings,
                        mailboxes,
                        shard,
                        notify_url,
                        report_mailboxes,
                        start,
                    )
                    .await;
            }
        }
        let batch = store
            .run_value(move |db| {
                let name = &settings.name;
                let mut batch = db
                    .create_batch(&settings, &mailboxes)
                    .map_err(state_err(format!("adding batch {name}")))?;
                if shard.is_some() {
                    batch = db
                        .update_batch(name, |b| b.shard = shard)
                        .map_err(state_err(format!("storing the shard of batch {name}")))?;
                }
                if let Some(url) = &notify_url
                    && let Err(e) =
                        db.set_batch_notify_url(name, Some(&storage::Secret::new(url.as_str())))
                {
                    // Do not leave a half-made batch behind.
                    let _ = db.remove_batch(name);
                    return Err(state_err(format!(
                        "storing the notification URL of batch {name}"
                    ))(e));
                }
                if !report_mailboxes.is_empty()
                    && let Err(e) = db.update_batch(name, |b| {
                        report_delivery::set_report_mailboxes(b, report_mailboxes);
                    })
                {
                    let _ = db.remove_batch(name);
                    return Err(state_err(format!(
                        "storing the report mailbox of batch {name}"
                    ))(e));
                }
                if start {
                    Ok(mark_for_pass(db, name, PassIntent::Start)?.0)
                } else {
                    Ok(batch)
                }
            })
            .await
            .map_err(state_err(format!("adding batch {name}")))??;
        if start {
            self.wake();
        }
        let summary = store
            .run_value(move |db| {
                db.flush()
                    .map_err(state_err(format!("saving batch {}", batch.settings.name)))?;
                batch_summary(db, &batch)
            })
            .await
            .map_err(state_err(format!("saving batch {name}")))??;
        Ok(Reply::BatchAdded {
            batch: summary,
            mailboxes: count,
            started: start,
            scheduler: self.scheduler.is_some(),
            merged: None,
        })
    }

    /// `batch add --if-exists update` of a batch that exists: the file's new rows are
    /// added and changed credentials replaced, or the whole request is refused before
    /// anything is written ([`batch_merge::plan_merge`]).
    async fn merge_into_batch(
        &self,
        settings: BatchSettings,
        rows: Vec<storage::NewMailbox>,
        shard: Option<storage::BatchShard>,
        notify_url: Option<String>,
        report_mailboxes: Vec<String>,
        start: bool,
    ) -> Result<Reply, Error> {
        let store = self.runtime.store();
        let name = settings.name.clone();
        let job_name = name.clone();
        let (batch, merged, total, started) = store
            .run_value(move |db| {
                let name = job_name;
                let batch = db
                    .batch(&name)
                    .map_err(state_err(format!("reading batch {name}")))?;
                // A batch an administrator stopped stays stopped when a worker repeats
                // its setup (a restarted pod); `batch start` resumes it.
                let start = start && batch.status != storage::BatchStatus::Stopped;
                let held = db
                    .mailboxes(batch.id)
                    .map_err(state_err(format!("reading the mailboxes of batch {name}")))?;
                let plan = batch_merge::plan_merge(
                    &batch,
                    &held,
                    |id| {
                        db.mailbox_credentials(id)
                            .map_err(state_err(format!("reading the credentials of {id}")))
                    },
                    settings,
                    shard,
                    rows,
                )?;
                let write = state_err(format!("adding the new rows to batch {name}"));
                db.add_mailboxes(batch.id, &plan.new_rows).map_err(write)?;
                for (id, credentials) in &plan.credential_updates {
                    db.replace_mailbox_credentials(*id, credentials)
                        .map_err(state_err(format!("replacing the credentials of {id}")))?;
                }
                if plan.summary.settings_changed {
                    let new = plan.settings.clone();
                    db.update_batch(&name, |b| b.settings = new)
                        .map_err(state_err(format!("updating the settings of batch {name}")))?;
                }
                if let Some(url) = &notify_url {
                    db.set_batch_notify_url(&name, Some(&storage::Secret::new(url.as_str())))
                        .map_err(state_err(format!(
                            "storing the notification URL of batch {name}"
                        )))?;
                }
                // New addresses replace the old ones; an address kept keeps its last
                // delivery, so a repeated setup does not hide a failed one.
                let reported_to: Vec<&str> = batch
                    .report_mailboxes()
                    .map(|r| r.address.as_str())
                    .collect();
                if !report_mailboxes.is_empty() && reported_to != report_mailboxes {
                    db.update_batch(&name, |b| {
                        report_delivery::set_report_mailboxes(b, report_mailboxes);
                    })
                    .map_err(state_err(format!(
                        "storing the report mailboxes of batch {name}"
                    )))?;
                }
                let batch = if start {
                    mark_for_pass(db, &name, PassIntent::Start)?.0
                } else {
                    db.batch(&name)
                        .map_err(state_err(format!("reading batch {name}")))?
                };
                db.flush()
                    .map_err(state_err(format!("saving batch {name}")))?;
                let total = held.len() + plan.summary.added;
                Ok::<_, Error>((batch, plan.summary, total, start))
            })
            .await
            .map_err(state_err(format!("adding to batch {name}")))??;
        if started {
            self.wake();
        }
        let summary = store
            .run_value(move |db| batch_summary(db, &batch))
            .await
            .map_err(state_err(format!("reading batch {name}")))??;
        Ok(Reply::BatchAdded {
            batch: summary,
            mailboxes: total,
            started,
            scheduler: self.scheduler.is_some(),
            merged: Some(merged),
        })
    }

    async fn mark(&self, name: &str, intent: PassIntent) -> Result<Reply, Error> {
        let store = self.runtime.store();
        let owned = name.to_owned();
        let (batch, queued) = store
            .run_value(move |db| {
                let name = owned;
                let marked = mark_for_pass(db, &name, intent)?;
                db.flush()
                    .map_err(state_err(format!("saving batch {name}")))?;
                Ok::<_, Error>(marked)
            })
            .await
            .map_err(state_err(format!("marking batch {name}")))??;
        self.wake();
        let batch = store
            .run_value(move |db| batch_summary(db, &batch))
            .await
            .map_err(state_err(format!("reading batch {name}")))??;
        Ok(Reply::BatchMarked {
            batch,
            queued,
            scheduler: self.scheduler.is_some(),
        })
    }

    fn wake(&self) {
        if let Some(n) = &self.scheduler {
            n.notify_one();
        }
    }
}

/// What an `--oauth-provider` setting lacks or has too much of, if anything.
fn oauth_problem(o: &storage::OAuthSettings) -> Option<String> {
    use storage::OAuthProvider::{Generic, Google, Microsoft};
    let need = |flag: &str, has: bool| {
        (!has).then(|| format!("--oauth-provider {} needs {flag}", o.provider.as_str()))
    };
    let refuse = |flag: &str, has: bool| {
        has.then(|| {
            format!(
                "--oauth-provider {} does not use {flag}",
                o.provider.as_str()
            )
        })
    };
    match o.provider {
        Microsoft => need("--tenant", o.tenant.is_some())
            .or_else(|| need("--client-id", o.client_id.is_some()))
            .or_else(|| need("--client-secret-file", o.client_secret_file.is_some()))
            .or_else(|| refuse("--service-account-file", o.service_account_file.is_some())),
        Google => need(
            "--service-account-file (the service account's JSON key)",
            o.service_account_file.is_some(),
        )
        .or_else(|| refuse("--client-secret-file", o.client_secret_file.is_some()))
        .or_else(|| refuse("--tenant", o.tenant.is_some())),
        Generic => need("--token-url", o.token_url.is_some())
            .or_else(|| need("--client-id", o.client_id.is_some()))
            .or_else(|| refuse("--service-account-file", o.service_account_file.is_some()))
            .or_else(|| refuse("--tenant", o.tenant.is_some())),
    }
    .or_else(|| {
        o.token_url
            .as_deref()
            .filter(|u| !(u.starts_with("https://") || u.starts_with("http://")))
            .map(|u| format!("--token-url {u} is not an http(s) URL"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_hide_passwords_in_debug_but_carry_them_on_the_wire() {
        let request = Request::EndpointAdd {
            settings: EndpointSettings {
                admin_user: Some("mailadmin".into()),
                admin_format: Some(storage::AdminFormat::Dovecot),
                ..EndpointSettings::new("src", "imap.example.test", 993, storage::Security::Ssl)
            },
            admin_password: Some(WireSecret::new("hunter2")),
            test: false,
            test_user: None,
            update_existing: false,
        };
        assert!(!format!("{request:?}").contains("hunter2"));
        let json = serde_json::to_string(&request).expect("encode");
        assert!(json.contains("\"request\":\"endpoint_add\""), "{json}");
        let back: Request = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, request);
    }

    #[test]
    fn errors_keep_their_fault_across_the_socket() {
        let e = Error::BatchState {
            batch: "b".into(),
            status: "Completed",
            action: "started",
            remedy: "add a new batch",
        };
        let wire = WireError::from(&e);
        let back = Error::from(wire);
        assert_eq!(back.fault(), Fault::UserInput);
        assert_eq!(back.to_string(), e.to_string());
    }

    #[test]
    fn oauth_providers_name_what_they_lack() {
        let base = storage::OAuthSettings {
            provider: storage::OAuthProvider::Microsoft,
            tenant: Some("t".into()),
            client_id: Some("c".into()),
            client_secret_file: Some("/s".into()),
            service_account_file: None,
            token_url: None,
        };
        assert_eq!(oauth_problem(&base), None);
        let no_tenant = storage::OAuthSettings {
            tenant: None,
            ..base.clone()
        };
        assert_eq!(
            oauth_problem(&no_tenant).as_deref(),
            Some("--oauth-provider microsoft needs --tenant")
        );
        let google = storage::OAuthSettings {
            provider: storage::OAuthProvider::Google,
            tenant: None,
            client_secret_file: None,
            ..base.clone()
        };
        assert!(
            oauth_problem(&google)
                .expect("no key")
                .contains("--service-account-file")
        );
        let generic = storage::OAuthSettings {
            provider: storage::OAuthProvider::Generic,
            tenant: None,
            token_url: Some("ftp://x".into()),
            ..base
        };
        assert_eq!(
            oauth_problem(&generic).as_deref(),
            Some("--token-url ftp://x is not an http(s) URL")
        );
    }
}
