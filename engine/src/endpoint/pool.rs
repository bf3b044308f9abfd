//! Connections to one IMAP endpoint: a limit on how many are open at once (shared by
//! every mailbox job that uses the endpoint), connecting and logging in with exponential
//! back-off, and a count of the commands each connection sends.
//!
//! Connections are not reused across mailboxes: each logs in as one user. The pool's job
//! is the limit (Exchange's `MaxConcurrentMigrations` per endpoint) and the retry policy,
//! so that a server saying "too many connections" or `[UNAVAILABLE]` is waited for, not
//! hammered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use imapmirror_protocol::Error as ImapError;
use imapmirror_protocol::client::{
    self, ConnectOptions, Credentials, ImapStream, Security, Session, SessionConfig, TlsSettings,
    UnansweredCommands,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::endpoint::credentials::LoginMethod;
use crate::endpoint::rate_budget::RateBudget;
use crate::endpoint::reconnect_policy::{Jitter, ReconnectPolicy};
use crate::endpoint::server_family::{self, ServerFamily};
use crate::endpoint::server_quirks::LearntQuirks;
use crate::error::Error;

/// Which side of the migration an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    /// `source` or `target`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

/// How to reach an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The endpoint's name, for logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// TLS trust (unused with [`Security::None`]).
    pub tls: TlsSettings,
    pub connect_timeout: Duration,
    pub session: SessionConfig,
    /// Most connections open to this endpoint at once, across all jobs.
    pub max_connections: usize,
    /// Retries of connect and login.
    pub reconnect: ReconnectPolicy,
    /// An OAuth access token for XOAUTH2 logins.
    pub access_token: Option<client::Secret>,
    /// Else a command that prints one for a user ([`crate::endpoint::oauth_token`]).
    pub token_command: Option<String>,
    /// Else the endpoint's own OAuth grant ([`crate::endpoint::oauth`]).
    pub oauth_grant: Option<Arc<crate::endpoint::oauth::TokenGrant>>,
}

impl EndpointConfig {
    /// `host:port`.
    pub fn server(&self) -> String {
        self.connect_options().server()
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            host: self.host.clone(),
            port: self.port,
            security: self.security,
            tls: self.tls.clone(),
            connect_timeout: self.connect_timeout,
            session: self.session,
        }
    }
}

/// Commands sent, by kind: what a pass cost in round trips.
#[derive(Debug, Default)]
pub struct CommandCounters {
    pub connects: AtomicU64,
    pub logins: AtomicU64,
    pub lists: AtomicU64,
    pub statuses: AtomicU64,
    pub selects: AtomicU64,
    pub fetches: AtomicU64,
    pub appends: AtomicU64,
    pub stores: AtomicU64,
    pub creates: AtomicU64,
    pub other: AtomicU64,
    /// The most bytes any one connection's read buffer held (the decoder's accounting).
    pub peak_buffer: AtomicU64,
    /// Commands the server refused with a suggested back-off that a session waited out
    /// and sent again, and the nanoseconds it waited: added as each connection ends.
    pub session_throttle_waits: AtomicU64,
    pub session_throttle_wait_ns: AtomicU64,
}

/// A snapshot of [`CommandCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCounts {
    pub connects: u64,
    pub logins: u64,
    pub lists: u64,
    pub statuses: u64,
    pub selects: u64,
    pub fetches: u64,
    pub appends: u64,
    pub stores: u64,
    pub creates: u64,
    pub other: u64,
    /// The most bytes any one connection's read buffer held: bounded by the stream
    /// threshold and read size, whatever the message sizes.
    pub peak_buffer: u64,
}

impl CommandCounts {
    /// Commands that touch a folder's content (SELECT, FETCH, APPEND, STORE).
    pub fn content_commands(&self) -> u64 {
        self.selects + self.fetches + self.appends + self.stores
    }
}

impl CommandCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> CommandCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CommandCounts {
            connects: l(&self.connects),
            logins: l(&self.logins),
            lists: l(&self.lists),
            statuses: l(&self.statuses),
            selects: l(&self.selects),
            fetches: l(&self.fetches),
            appends: l(&self.appends),
            stores: l(&self.stores),
            creates: l(&self.creates),
            other: l(&self.other),
            peak_buffer: l(&self.peak_buffer),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The connection limit and connector of one endpoint; share it (in an `Arc`) between
/// all jobs that use the endpoint.
#[derive(Debug)]
pub struct EndpointPool {
    config: EndpointConfig,
    role: Role,
    limit: Arc<Semaphore>,
    /// What the endpoint's answers taught, for every later connection.
    learnt: Arc<LearntQuirks>,
    /// Open connections and the connection cap learnt from the server.
    cap: Arc<ConnectionCap>,
    /// The endpoint's rate budget in this process, shared with its pool on the other side.
    budget: Arc<RateBudget>,
}

/// The connections a pool holds open, and how many slots it still has to give up after
/// the server showed a lower cap than the endpoint's setting (Courier's `MAXPERIP`: a
/// connection beyond it is closed before the greeting).
#[derive(Debug)]
struct ConnectionCap {
    open: AtomicUsize,
    /// `open` as the metrics show it (`imapmirror_connections_open`).
    open_gauge: metrics::Gauge,
    /// Slots to drop for good as connections close.
    to_forget: AtomicUsize,
    /// The pool's current number of slots.
    slots: AtomicUsize,
}

impl ConnectionCap {
    /// Lowers the pool to `cap` slots: the free ones go now, busy ones as they close.
    /// Returns true when this lowered the cap (logged by the caller).
    fn lower_to(&self, cap: usize, limit: &Semaphore) -> bool {
        let cap = cap.max(1);
        let slots = self.slots.load(Ordering::Acquire);
        if cap >= slots
            || self
                .slots
                .compare_exchange(slots, cap, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let excess = slots - cap;
        let now = limit.forget_permits(excess);
        self.to_forget.fetch_add(excess - now, Ordering::AcqRel);
        true
    }

    /// Whether a closing connection's slot is to be dropped for good.
    fn take_one_to_forget(&self) -> bool {
        self.to_forget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Whose connection a pool opens: the mailbox (for errors) and its batch (for the
/// metrics).
#[derive(Debug, Clone, Copy)]
pub struct JobLabel<'a> {
    pub batch: &'a str,
    pub mailbox: &'a str,
}

/// One of an endpoint's connection slots, reserved and not yet connected.
#[derive(Debug)]
pub struct Slot(OwnedSemaphorePermit);

/// A logged-in session holding one of its endpoint's connection slots.
#[derive(Debug)]
pub struct Connection {
    pub(crate) session: Session<ImapStream>,
    pub(crate) counters: Arc<CommandCounters>,
    pub(crate) role: Role,
    /// The server software, told from its greeting and capabilities.
    pub(crate) family: ServerFamily,
    /// Shared with the endpoint's pool.
    pub(crate) learnt: Arc<LearntQuirks>,
    /// Set by [`Connection::close`]; a connection dropped without it may have had a
    /// command in flight.
    closed: bool,
    cap: Arc<ConnectionCap>,
    /// The endpoint's rate budget (`--max-rate`), shared by all its connections.
    pub(crate) budget: Arc<RateBudget>,
    /// The pool slot, given back (or dropped for good, see [`ConnectionCap`]) on drop.
    permit: Option<OwnedSemaphorePermit>,
}

/// When this process last dropped a target connection whose link broke with commands
/// unanswered and no word from the server (Unix ms; 0: never). The server may still be
/// committing an APPEND it had read in full, so a journal reconcile waits the whole
/// settle time counted from here. Process-wide and only ever raised: a later drop of
/// another mailbox's connection can only lengthen a wait.
static LAST_CUT_TARGET_MS: AtomicU64 = AtomicU64::new(0);

/// The same for a target connection the server closed itself (BYE) while commands it
/// may have started were unanswered: a short settle time counts from here.
static LAST_CLOSED_TARGET_MS: AtomicU64 = AtomicU64::new(0);

/// When this process last gave up target connections that may have left an APPEND
/// undecided: `cut` when the link broke without a word from the server, `closed` when
/// the server had said BYE. A connection whose every command was answered, or that the
/// server closed after refusing the command in flight (Exchange Online's drop), leaves
/// nothing to settle and is in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AbandonedTargets {
    pub cut: Option<imapmirror_storage::Timestamp>,
    pub closed: Option<imapmirror_storage::Timestamp>,
}

pub(crate) fn abandoned_target_connections() -> AbandonedTargets {
    let at = |ms: u64| (ms > 0).then(|| imapmirror_storage::Timestamp::from_unix_millis(ms));
    AbandonedTargets {
        cut: at(LAST_CUT_TARGET_MS.load(Ordering::Acquire)),
        closed: at(LAST_CLOSED_TARGET_MS.load(Ordering::Acquire)),
    }
}

impl Connection {
    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        self.session.server()
    }

    /// Which side this connection is on.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True when the server announced `name`.
    pub fn has(&self, name: &str) -> bool {
        self.session.capabilities().contains(name)
    }

    /// The APPENDLIMIT the server announced for all mailboxes, or else the one its family
    /// applies unannounced ([`Quirk::ExchangeLimitsMessageSize`]), if any.
    ///
    /// [`Quirk::ExchangeLimitsMessageSize`]: crate::endpoint::server_quirks::Quirk::ExchangeLimitsMessageSize
    pub fn append_limit(&self) -> Option<u64> {
        self.session
            .capabilities()
            .iter()
            .find_map(|c| c.strip_prefix("APPENDLIMIT="))
            .and_then(|n| n.parse().ok())
            .or_else(|| crate::endpoint::server_quirks::unannounced_append_limit(self.family))
    }

    /// Whether to ask APPENDLIMIT per folder (LIST-STATUS): only of a server that
    /// announces it and is not known to refuse it ([`Quirk::CyrusRefusesAppendLimitStatus`]).
    ///
    /// [`Quirk::CyrusRefusesAppendLimitStatus`]: crate::endpoint::server_quirks::Quirk::CyrusRefusesAppendLimitStatus
    pub(crate) fn asks_append_limit_status(&self) -> bool {
        self.session
            .capabilities()
            .iter()
            .any(|c| c.starts_with("APPENDLIMIT"))
            && self.learnt.asks_append_limit_status(self.family)
    }

    /// Logs out politely; errors are irrelevant at this point.
    pub async fn close(mut self) {
        match tokio::time::timeout(Duration::from_secs(5), self.session.logout()).await {
            // LOGOUT is answered after every command before it: nothing is left in flight.
            Ok(Ok(())) => self.closed = true,
            Ok(Err(e)) => tracing::debug!(server = %self.server(), error = %e, "LOGOUT failed"),
            Err(_) => tracing::debug!(server = %self.server(), "LOGOUT timed out"),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.cap.open.fetch_sub(1, Ordering::AcqRel);
        self.cap.open_gauge.decrement(1.0);
        if self.cap.take_one_to_forget()
            && let Some(permit) = self.permit.take()
        {
            permit.forget();
        }
        let peak = self.session.buffer_high_water_mark() as u64;
        self.counters.peak_buffer.fetch_max(peak, Ordering::Relaxed);
        let (waits, waited) = self.session.throttle_waited();
        if waits > 0 {
            self.counters
                .session_throttle_waits
                .fetch_add(u64::from(waits), Ordering::Relaxed);
            let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.counters
                .session_throttle_wait_ns
                .fetch_add(ns, Ordering::Relaxed);
        }
        if self.role == Role::Target && !self.closed {
            let mark = match self.session.state().unanswered_commands() {
                UnansweredCommands::None => None,
                UnansweredCommands::AfterBye => Some(&LAST_CLOSED_TARGET_MS),
                UnansweredCommands::Unknown => Some(&LAST_CUT_TARGET_MS),
            };
            if let Some(mark) = mark {
                let now = imapmirror_storage::Timestamp::now().unix_millis();
                mark.fetch_max(now.max(1), Ordering::AcqRel);
            }
        }
    }
}

/// Errors after which a new connection may succeed.
pub(crate) fn is_transient(e: &ImapError) -> bool {
    matches!(
        e,
        ImapError::Backoff { .. }
            | ImapError::Bye { .. }
            | ImapError::ConnectionClosed { .. }
            | ImapError::Timeout { .. }
            | ImapError::Network { .. }
            | ImapError::UnexpectedEof { .. }
            | ImapError::Io(_)
    )
}

/// The server's own wait, if the error carries one.
pub(crate) fn server_hint(e: &ImapError) -> Option<Duration> {
    match e {
        ImapError::Backoff { delay, .. } => Some(*delay),
        _ => None,
    }
}

impl EndpointPool {
    /// A pool for `config`.
    pub fn new(config: EndpointConfig, role: Role) -> Result<Self, Error> {
        if config.max_connections == 0 {
            return Err(Error::InvalidSetting {
                problem: format!(
                    "the {} endpoint {} allows 0 connections (it needs at least 1)",
                    role.as_str(),
                    config.name
                ),
            });
        }
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let cap = Arc::new(ConnectionCap {
            open: AtomicUsize::new(0),
            open_gauge: crate::migration_metrics::connections_open(&config.name, role.as_str()),
            to_forget: AtomicUsize::new(0),
            slots: AtomicUsize::new(config.max_connections),
        });
        let budget = Arc::new(RateBudget::unlimited(&config.name));
        Ok(EndpointPool {
            config,
            role,
            limit,
            learnt: Arc::default(),
            cap,
            budget,
        })
    }

    /// Shares `budget` (the endpoint's, in this process) with every connection of the pool.
    pub fn with_rate_budget(mut self, budget: Arc<RateBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The endpoint's rate budget.
    pub fn rate_budget(&self) -> &Arc<RateBudget> {
        &self.budget
    }

    /// The endpoint's settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Which side it is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Connection slots free right now.
    pub fn available(&self) -> usize {
        self.limit.available_permits()
    }

    /// Waits for a slot, connects and logs in as `login`, retrying transient failures
    /// with back-off. `who` names the mailbox in errors and its batch in the metrics.
    pub async fn connect(
        &self,
        login: &LoginMethod,
        counters: &Arc<CommandCounters>,
        who: &JobLabel<'_>,
        cancel: &CancellationToken,
    ) -> Result<Connection, Error> {
        // Checked before waiting for a slot: a missing token is the user's to fix.
        self.check_login(login)?;
        let slot = self.reserve(who.mailbox, cancel).await?;
        self.connect_in(slot, login, counters, who, cancel).await
    }

    /// Waits for one of the endpoint's connection slots. A job that needs a slot on both
    /// sides reserves them first, always in the same order, and then logs in to both at
    /// once ([`EndpointPool::connect_in`]): waiting for slots in a fixed order keeps two
    /// jobs from each holding the slot the other waits for.
    pub async fn reserve(&self, mailbox: &str, cancel: &CancellationToken) -> Result<Slot, Error> {
        tokio::select! {
            p = self.limit.clone().acquire_owned() => p
                .map(Slot)
                .map_err(|_| Error::Stopped { mailbox: mailbox.to_owned() }),
            () = cancel.cancelled() => Err(Error::Stopped { mailbox: mailbox.to_owned() }),
        }
    }

    /// Connects and logs in as `login` in `slot` (reserved from this pool), retrying
    /// transient failures with back-off. `who` names the mailbox in errors and its batch
    /// in the metrics (the pool is shared by every batch using the endpoint).
    pub async fn connect_in(
        &self,
        slot: Slot,
        login: &LoginMethod,
        counters: &Arc<CommandCounters>,
        who: &JobLabel<'_>,
        cancel: &CancellationToken,
    ) -> Result<Connection, Error> {
        let mailbox = who.mailbox;
        debug_assert!(
            Arc::ptr_eq(slot.0.semaphore(), &self.limit),
            "a slot is used with the pool it was reserved from"
        );
        // Fails before connecting when the login can never work (no token source).
        self.check_login(login)?;
        // A cached OAuth token the server refuses (revoked, or the grant changed) earns
        // one retry with a fresh one.
        let mut fresh_token = false;
        let permit = slot.0;
        let options = self.config.connect_options();
        let mut jitter = Jitter::seeded(self.limit.available_permits() as u64);
        let mut attempt = 0u32;
        loop {
            CommandCounters::bump(&counters.connects);
            // Whether it failed before the greeting (connect, TLS, greeting) or after.
            let result = match client::connect(&options).await {
                Err(e) => Err((true, e)),
                Ok(mut session) => {
                    // The credentials (an OAuth token) are taken once the server has
                    // greeted: a slow connect or a reconnect after a long pass must not
                    // carry a token that lapsed on the way.
                    let credentials = self.credentials(login).await?;
                    CommandCounters::bump(&counters.logins);
                    match session.authenticate(&credentials).await {
                        Ok(()) => Ok(session),
                        Err(e) => Err((false, e)),
                    }
                }
            };
            let (before_greeting, e) = match result {
                Ok(session) => {
                    let capabilities: Vec<String> =
                        session.capabilities().iter().map(str::to_owned).collect();
                    let family =
                        server_family::detect(session.state().greeting_text(), &[], &capabilities);
                    self.cap.open.fetch_add(1, Ordering::AcqRel);
                    self.cap.open_gauge.increment(1.0);
                    return Ok(Connection {
                        session,
                        counters: counters.clone(),
                        role: self.role,
                        family,
                        learnt: Arc::clone(&self.learnt),
                        closed: false,
                        cap: Arc::clone(&self.cap),
                        budget: Arc::clone(&self.budget),
                        permit: Some(permit),
                    });
                }
                Err(e) => e,
            };
            // Closed unanswered while this pool holds others open: not an outage but the
            // server's cap on connections from this address (Courier's MAXPERIP). The
            // pool keeps to what is open now, and this connection waits for one of them
            // to close; such waits do not use up the attempts.
            let open = self.cap.open.load(Ordering::Acquire);
            if before_greeting
                && open > 0
                && matches!(
                    e,
                    ImapError::ConnectionClosed { .. } | ImapError::UnexpectedEof { .. }
                )
            {
                if self.cap.lower_to(open, &self.limit) {
                    tracing::warn!(
                        server = %self.config.server(),
                        role = self.role.as_str(),
                        connections = open,
                        "the server closes connections beyond {open} from this address; the endpoint keeps at most {open} open"
                    );
                }
                let delay = self.config.reconnect.delay(1, None, jitter.next_u64());
                let waiting = std::time::Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => return Err(Error::Stopped { mailbox: mailbox.to_owned() }),
                }
                crate::migration_metrics::throttle_wait(who.batch, waiting.elapsed());
                continue;
            }
            if let (
                ImapError::Refused { server, text, .. },
                LoginMethod::XOAuth2 {
                    user,
                    refresh_token,
                },
                Some(grant),
            ) = (&e, login, &self.config.oauth_grant)
            {
                if !fresh_token {
                    tracing::warn!(
                        server = %self.config.server(),
                        role = self.role.as_str(),
                        user = %user,
                        "the server refused the OAuth token; retrying once with a fresh one"
                    );
                    grant.forget(user, refresh_token.as_ref()).await;
                    fresh_token = true;
                    continue;
                }
                return Err(Error::OAuthRefused {
                    role: self.role.as_str(),
                    server: server.clone(),
                    provider: grant.provider().as_str(),
                    user: user.clone(),
                    text: text.clone(),
                });
            }
            if let ImapError::Refused { server, text, .. } = &e {
                return Err(Error::LoginRefused {
                    role: self.role.as_str(),
                    server: server.clone(),
                    user: login.mailbox_user().to_owned(),
                    text: text.clone(),
                });
            }
            attempt += 1;
            if !is_transient(&e) || !self.config.reconnect.allows(attempt) {
                return Err(Error::Imap {
                    mailbox: mailbox.to_owned(),
                    action: format!(
                        "connecting to the {} server {} (attempt {attempt})",
                        self.role.as_str(),
                        self.config.name
                    ),
                    source: Box::new(e),
                });
            }
            // Counted when retried; the last failure is counted by whoever it reaches.
            crate::migration_metrics::imap_error(who.batch, &e);
            let delay = self
                .config
                .reconnect
                .delay(attempt, server_hint(&e), jitter.next_u64());
            tracing::warn!(
                server = %self.config.server(),
                role = self.role.as_str(),
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %e,
                "connecting failed; retrying"
            );
            let waiting = std::time::Instant::now();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(Error::Stopped { mailbox: mailbox.to_owned() }),
            }
            if server_hint(&e).is_some() {
                crate::migration_metrics::throttle_wait(who.batch, waiting.elapsed());
            }
        }
    }

    /// Fails when `login` can never work here (XOAUTH2 without a token or token command).
    fn check_login(&self, login: &LoginMethod) -> Result<(), Error> {
        match login {
            LoginMethod::XOAuth2 { user, .. }
                if self.config.access_token.is_none()
                    && self.config.token_command.is_none()
                    && self.config.oauth_grant.is_none() =>
            {
                Err(Error::MissingAccessToken {
                    role: self.role.as_str(),
                    user: user.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The wire credentials of `login`; for XOAUTH2 a fresh token from the endpoint's
    /// command when it has one.
    async fn credentials(&self, login: &LoginMethod) -> Result<Credentials, Error> {
        self.check_login(login)?;
        let token = match (login, &self.config.access_token, &self.config.token_command) {
            (
                LoginMethod::XOAuth2 {
                    user,
                    refresh_token,
                },
                None,
                None,
            ) if self.config.oauth_grant.is_some() => {
                let grant = self.config.oauth_grant.as_ref().expect("checked");
                let token = grant.token(user, refresh_token.as_ref()).await?;
                Some(client::Secret::new(token.expose()))
            }
            (LoginMethod::XOAuth2 { user, .. }, None, Some(command)) => {
                let token =
                    crate::endpoint::oauth_token::fetch_token(&self.config.name, command, user)
                        .await?;
                Some(client::Secret::new(token.expose()))
            }
            (_, token, _) => token.clone(),
        };
        login
            .to_wire(token)
            .ok_or_else(|| Error::MissingAccessToken {
                role: self.role.as_str(),
                user: login.mailbox_user().to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_ones_a_new_connection_can_fix() {
        let bye = ImapError::Bye {
            server: "s".into(),
            text: "shutting down".into(),
        };
        assert!(is_transient(&bye));
        let backoff = ImapError::Backoff {
            server: "s".into(),
            command: "connection".into(),
            delay: Duration::from_secs(3),
            text: "Too many connections".into(),
        };
        assert!(is_transient(&backoff));
        assert_eq!(server_hint(&backoff), Some(Duration::from_secs(3)));
        let garbage = ImapError::Misuse("x");
        assert!(!is_transient(&garbage));
    }

    #[test]
    fn zero_connections_is_a_setting_error() {
        let tls = TlsSettings::new(&client::TlsOptions::default());
        let Ok(tls) = tls else {
            // No usable root store on this machine: nothing to test here.
            return;
        };
        let config = EndpointConfig {
            name: "src".into(),
            host: "127.0.0.1".into(),
            port: 143,
            security: Security::None,
            tls,
            connect_timeout: Duration::from_secs(1),
            session: SessionConfig::default(),
            max_connections: 0,
            reconnect: ReconnectPolicy::default(),
            access_token: None,
            token_command: None,
            oauth_grant: None,
        };
        let err = EndpointPool::new(config, Role::Source).expect_err("zero is refused");
        assert_eq!(err.fault(), crate::Fault::UserInput);
    }
}
