//! The engine's one error type. Every message is one sentence that names the file, line and
//! column, or the server and folder, and says what to do; none ever contains a password.

/// Whose fault an error is, which decides the remedy and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request is wrong (a migration file, a flag, an exclusion pattern): exit code 2,
    /// the user fixes the input.
    UserInput,
    /// A server sent something we cannot use, refused us or went away: the mailbox fails
    /// (or the pass is retried), the report names the server.
    Peer,
    /// Our side failed: the state directory, the machine, a stop request, or a bug in
    /// imapmirror.
    Local,
}

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- The migration file (user input) ----
    #[error(
        "The migration file {file} is empty: add the header row `EmailAddress,UserName,Password` and one row per mailbox."
    )]
    FileEmpty { file: String },

    #[error(
        "The migration file {file} has a header but no mailbox rows: add one row per mailbox below the header."
    )]
    NoMailboxRows { file: String },

    #[error(
        "The migration file {file} is {size} bytes, more than the {limit} bytes allowed: split it into several batches."
    )]
    FileTooLarge {
        file: String,
        size: usize,
        limit: usize,
    },

    #[error(
        "Line {line} of the migration file {file} is not UTF-8 text: save the file as \"CSV UTF-8\"."
    )]
    FileNotUtf8 { file: String, line: u64 },

    #[error(
        "Line {line} of the migration file {file} could not be read because {problem}: save it again as \"CSV UTF-8 (comma delimited)\"."
    )]
    MalformedCsv {
        file: String,
        line: u64,
        problem: String,
    },

    #[error("The header on line {line} of the migration file {file} is not comma-separated{}: save the file as \"CSV UTF-8 (comma delimited)\".", found.map(|c| format!(" (it uses `{}`)", c.escape_debug())).unwrap_or_default())]
    NotCommaSeparated {
        file: String,
        line: u64,
        found: Option<char>,
    },

    #[error(
        "The migration file {file} has more than {limit} mailbox rows (line {line} is one too many): split it into several batches."
    )]
    TooManyRows {
        file: String,
        line: u64,
        limit: usize,
    },

    #[error(
        "The header on line {line} of the migration file {file} has no `{header}` column: add it (the required headers are EmailAddress, UserName and Password)."
    )]
    MissingHeader {
        file: String,
        line: u64,
        header: &'static str,
    },

    #[error(
        "The header `{found}` in column {column} on line {line} of the migration file {file} is probably a typo of `{expected}`: spell it exactly `{expected}`."
    )]
    MisspelledHeader {
        file: String,
        line: u64,
        column: usize,
        found: String,
        expected: &'static str,
    },

    #[error(
        "The header `{header}` appears twice on line {line} of the migration file {file}, in column {first_column} and column {column}: keep one."
    )]
    DuplicateHeader {
        file: String,
        line: u64,
        header: &'static str,
        first_column: usize,
        column: usize,
    },

    #[error(
        "Line {line} of the migration file {file} has {found} columns but the header has {expected} columns: make the row match the header (quote cells that contain commas)."
    )]
    WrongColumnCount {
        file: String,
        line: u64,
        found: usize,
        expected: usize,
    },

    #[error(
        "The EmailAddress `{email}` on line {line} of the migration file {file} already appears on line {first_line} (addresses are compared ignoring case): keep one row per mailbox."
    )]
    DuplicateEmailAddress {
        file: String,
        line: u64,
        email: String,
        first_line: u64,
    },

    #[error(
        "The EmailAddress `{}` on line {line}, column {column} of the migration file {file} is not an address because {problem}: write the target mailbox's address, like alberta@contoso.com.",
        value.escape_debug()
    )]
    InvalidEmailAddress {
        file: String,
        line: u64,
        column: usize,
        value: String,
        problem: &'static str,
    },

    #[error(
        "The {header} cell on line {line}, column {column} of the migration file {file} is empty: fill it in."
    )]
    EmptyCell {
        file: String,
        line: u64,
        column: usize,
        header: &'static str,
    },

    #[error(
        "The {header} cell on line {line}, column {column} of the migration file {file} contains the control character {} that IMAP cannot send: remove it.",
        character.escape_unicode()
    )]
    ControlCharacterInCell {
        file: String,
        line: u64,
        column: usize,
        header: &'static str,
        character: char,
    },

    // ---- Folder selection (user input) ----
    #[error("The folder exclusion `{}` is not usable because {problem}: fix the --exclude value.", pattern.escape_debug())]
    InvalidExclusion {
        pattern: String,
        problem: &'static str,
    },

    #[error("The folder inclusion `{}` is not usable because {problem}: fix the --include value (the full name of a shared or another user's folder, as the source lists it).", pattern.escape_debug())]
    InvalidInclusion {
        pattern: String,
        problem: &'static str,
    },

    // ---- Credentials (user input) ----
    #[error(
        "The {format} admin format needs a non-empty {role}: set it on the endpoint or in the migration file."
    )]
    EmptyLoginName {
        format: &'static str,
        role: &'static str,
    },

    #[error(
        "The {format} admin format cannot carry the {role} `{name}` because it contains {}: use the plain name (without admin part) or another --admin-format.",
        character.escape_debug()
    )]
    AmbiguousLoginName {
        format: &'static str,
        role: &'static str,
        name: String,
        character: char,
    },

    #[error(
        "The exchange admin format needs the admin user as `Domain/Admin`, not `{admin}`: set --admin-user to, for example, CONTOSO/mailadmin."
    )]
    ExchangeAdminWithoutDomain { admin: String },

    #[error("The login for {email} (line {line} of the migration file) cannot be built because {}", lowercase_first(&problem.to_string()))]
    RowLogin {
        line: u64,
        email: String,
        problem: Box<Error>,
    },

    #[error(
        "The Password cell for {email} on line {line} of the migration file is empty and the source endpoint {endpoint} has no admin credentials: fill in the password or add admin credentials to the endpoint."
    )]
    NoSourcePassword {
        line: u64,
        email: String,
        endpoint: String,
    },

    #[error(
        "There is no way to open the target mailbox of {email} (line {line} of the migration file): add TargetUserName and TargetPassword to the row, or admin credentials or XOAUTH2 to the target endpoint {endpoint}."
    )]
    NoTargetLogin {
        line: u64,
        email: String,
        endpoint: String,
    },

    // ---- Running a pass ----
    #[error("While {action} for {mailbox}, {source}")]
    Imap {
        mailbox: String,
        /// What the engine was doing, e.g. "copying the source folder `INBOX.Sent`".
        action: String,
        #[source]
        source: Box<imapmirror_protocol::Error>,
    },

    #[error(
        "The {role} server {server} refused the login of {user} ({text:?}): check the user name and password (or the admin credentials) for that server."
    )]
    LoginRefused {
        role: &'static str,
        server: String,
        user: String,
        text: String,
    },

    #[error(
        "The {role} login of {user} uses XOAUTH2 but no access token was given: configure an OAuth access token for the {role} endpoint."
    )]
    MissingAccessToken { role: &'static str, user: String },

    #[error(
        "The OAuth token command of endpoint {endpoint} failed for {user}: {detail}; run it by hand with IMAPMIRROR_OAUTH_USER={user} to see why, and fix it with `imapmirror endpoint add ... --oauth-token-command`."
    )]
    OAuthToken {
        endpoint: String,
        user: String,
        detail: String,
    },

    #[error(
        "Endpoint {endpoint} could not get an OAuth access token from {provider}{}: {detail}; check the endpoint's --oauth-provider settings and the app's grant at the provider.",
        if user.is_empty() { String::new() } else { format!(" for {user}") }
    )]
    OAuthGrant {
        endpoint: String,
        provider: &'static str,
        user: String,
        /// The provider's answer (error and error_description) or what failed.
        detail: String,
    },

    #[error(
        "The {role} server {server} refused the OAuth token from {provider} for {user} twice, a fresh one included: {text}; check that the app may use IMAP for this mailbox (Microsoft: an Exchange service principal with FullAccess; Google: domain-wide delegation of https://mail.google.com/)."
    )]
    OAuthRefused {
        role: &'static str,
        server: String,
        provider: &'static str,
        user: String,
        text: String,
    },

    #[error("While {action} for {mailbox}, {source}")]
    Store {
        mailbox: String,
        action: String,
        #[source]
        source: Box<imapmirror_storage::StoreError>,
    },

    #[error(
        "The target server {server} refused {count} messages of {mailbox}, more than the bad-item limit of {limit} (the last in folder `{folder}`: {text:?}): see the skipped items in the report, fix the cause on the target or raise --bad-item-limit, then sync again."
    )]
    BadItemLimit {
        server: String,
        mailbox: String,
        folder: String,
        count: u64,
        limit: u64,
        text: String,
    },

    #[error(
        "The target server {server} answered an APPEND into `{folder}` of {mailbox} inconsistently ({problem}): nothing was recorded for that group; report this server's behaviour, the next pass reconciles it by fingerprint."
    )]
    InconsistentTarget {
        server: String,
        mailbox: String,
        folder: String,
        problem: String,
    },

    #[error(
        "The pass over {mailbox} was stopped on request; start it again to resume where it stopped."
    )]
    Stopped { mailbox: String },

    #[error(
        "The engine was given an invalid setting: {problem}; fix the batch or endpoint settings."
    )]
    InvalidSetting { problem: String },

    // ---- Endpoints, batches and the control socket (the batch layer) ----
    #[error("While {action} of the endpoint {endpoint}, {source}")]
    Endpoint {
        endpoint: String,
        /// What was being done, e.g. "connecting to 127.0.0.1:993 for a test".
        action: String,
        #[source]
        source: Box<imapmirror_protocol::Error>,
    },

    #[error("While {action}, {source}")]
    State {
        /// What was being done, e.g. "starting batch wave-1".
        action: String,
        #[source]
        source: imapmirror_storage::StoreError,
    },

    /// `batch add --if-exists update` of a file that does not fit the batch it names.
    #[error("Batch {batch} exists already and {detail}.")]
    BatchDiffers { batch: String, detail: String },

    #[error("Batch {batch} is {status}, so it cannot be {action}: {remedy}.")]
    BatchState {
        batch: String,
        status: &'static str,
        action: &'static str,
        remedy: &'static str,
    },

    #[error(
        "The control socket {path} could not be used while {action} ({detail}): check that the process owning the state directory is imapmirror and still running, or stop it and retry."
    )]
    ControlSocket {
        path: String,
        action: &'static str,
        detail: String,
    },

    /// An error the owning process reported over the control socket, passed on as it was.
    #[error("{message}")]
    Relayed { message: String, fault: Fault },

    // ---- What a server listed (the peer's fault) ----
    #[error("The server {server} listed the folder `{}`, which {problem}: check the server's namespace configuration.", folder.escape_debug())]
    InvalidFolderListing {
        server: String,
        folder: String,
        problem: &'static str,
    },

    // ---- Estimating a batch ----
    #[error("The estimate of batch {batch} could not be made: {problem}.")]
    Estimate { batch: String, problem: String },

    // ---- A row's UserRoot (user input) ----
    #[error("The UserRoot `{}` matches no folder on the source server {server} ({listed_with} listed nothing there): correct the row's UserRoot in the migration file, or give the source login access to that user's folders.", user_root.escape_debug())]
    UserRootMatchesNothing {
        server: String,
        user_root: String,
        /// The LIST commands tried, e.g. `LIST "" "#shared.alberta"`.
        listed_with: String,
    },
}

impl Error {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidFolderListing { .. }
            | Self::Estimate { .. }
            | Self::BadItemLimit { .. }
            | Self::InconsistentTarget { .. } => Fault::Peer,
            Self::Imap { source, .. } => {
                if source.is_invalid_input() {
                    Fault::UserInput
                } else if matches!(**source, imapmirror_protocol::Error::Misuse(_)) {
                    Fault::Local
                } else {
                    Fault::Peer
                }
            }
            Self::LoginRefused { .. }
            | Self::MissingAccessToken { .. }
            | Self::OAuthToken { .. }
            | Self::OAuthGrant { .. }
            | Self::OAuthRefused { .. }
            | Self::InvalidSetting { .. } => Fault::UserInput,
            Self::Store { source, .. } => match source.kind() {
                imapmirror_storage::ErrorKind::UserInput => Fault::UserInput,
                _ => Fault::Local,
            },
            Self::Stopped { .. } => Fault::Local,
            Self::Endpoint { source, .. } => {
                if source.is_invalid_input() {
                    Fault::UserInput
                } else {
                    Fault::Peer
                }
            }
            Self::State { source, .. } => match source.kind() {
                imapmirror_storage::ErrorKind::UserInput => Fault::UserInput,
                _ => Fault::Local,
            },
            Self::BatchState { .. } => Fault::UserInput,
            Self::ControlSocket { .. } => Fault::Local,
            Self::Relayed { fault, .. } => *fault,
            Self::RowLogin { problem, .. } => problem.fault(),
            _ => Fault::UserInput,
        }
    }
}

/// What kind of failure an error is, coarser than the variants and across the layers (a
/// server's `[THROTTLED]` is throttled whether it came at login or mid-copy): the `kind`
/// label of `imapmirror_errors_total` ([`crate::migration_metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server asked us to slow down or come back later.
    Throttled,
    /// The connection ended (BYE, closed, reset, network error).
    ConnectionLost,
    /// The server went silent past the response timeout.
    Timeout,
    /// The server answered a command with NO or BAD.
    Refused,
    /// A login, admin login or OAuth token was refused or missing.
    Auth,
    /// TLS could not be set up or the certificate was not accepted.
    Tls,
    /// The server sent something we cannot use or broke the protocol.
    Protocol,
    /// The target refused more messages than the bad-item limit.
    BadItems,
    /// The state directory (our side).
    State,
    /// A setting, a migration file or a request is wrong.
    Config,
    /// Stopped on request: not a failure, and never counted as one in the metrics.
    Stopped,
    /// A bug in imapmirror.
    Internal,
}

impl FailureKind {
    /// Every kind, for metrics that start every series at zero.
    pub const ALL: [FailureKind; 12] = [
        FailureKind::Throttled,
        FailureKind::ConnectionLost,
        FailureKind::Timeout,
        FailureKind::Refused,
        FailureKind::Auth,
        FailureKind::Tls,
        FailureKind::Protocol,
        FailureKind::BadItems,
        FailureKind::State,
        FailureKind::Config,
        FailureKind::Stopped,
        FailureKind::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Throttled => "throttled",
            FailureKind::ConnectionLost => "connection_lost",
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Auth => "auth",
            FailureKind::Tls => "tls",
            FailureKind::Protocol => "protocol",
            FailureKind::BadItems => "bad_items",
            FailureKind::State => "state",
            FailureKind::Config => "config",
            FailureKind::Stopped => "stopped",
            FailureKind::Internal => "internal",
        }
    }

    /// The kind of a wire-level error.
    pub fn of_imap(e: &imapmirror_protocol::Error) -> FailureKind {
        use imapmirror_protocol::Error as E;
        match e {
            E::Backoff { .. } => FailureKind::Throttled,
            E::Bye { .. }
            | E::ConnectionClosed { .. }
            | E::UnexpectedEof { .. }
            | E::Network { .. }
            | E::Io(_) => FailureKind::ConnectionLost,
            E::Timeout { .. } => FailureKind::Timeout,
            E::Refused { .. } => FailureKind::Refused,
            E::Tls { .. } | E::CertificateRefused { .. } => FailureKind::Tls,
            E::InvalidInput { .. } | E::CaFile { .. } | E::CertificatePin { .. } => {
                FailureKind::Config
            }
            E::Misuse(_) => FailureKind::Internal,
            _ => FailureKind::Protocol,
        }
    }
}

impl Error {
    /// What kind of failure this is (see [`FailureKind`]).
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Imap { source, .. } | Self::Endpoint { source, .. } => {
                FailureKind::of_imap(source)
            }
            Self::LoginRefused { .. }
            | Self::MissingAccessToken { .. }
            | Self::OAuthToken { .. }
            | Self::OAuthGrant { .. }
            | Self::OAuthRefused { .. } => FailureKind::Auth,
            Self::BadItemLimit { .. } => FailureKind::BadItems,
            Self::InconsistentTarget { .. } | Self::InvalidFolderListing { .. } => {
                FailureKind::Protocol
            }
            Self::Store { .. } | Self::State { .. } | Self::ControlSocket { .. } => {
                FailureKind::State
            }
            Self::Stopped { .. } => FailureKind::Stopped,
            Self::RowLogin { problem, .. } => problem.failure_kind(),
            Self::Relayed { fault, .. } => match fault {
                Fault::UserInput => FailureKind::Config,
                Fault::Peer => FailureKind::Protocol,
                Fault::Local => FailureKind::State,
            },
            _ => FailureKind::Config,
        }
    }
}

/// Lets a nested error's sentence continue the outer one.
fn lowercase_first(sentence: &str) -> String {
    let mut chars = sentence.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_protocol::Error as ImapError;

    fn imap(source: ImapError) -> Error {
        Error::Imap {
            mailbox: "a@example.test".into(),
            action: "copying".into(),
            source: Box::new(source),
        }
    }

    #[test]
    fn failure_kinds_name_what_went_wrong_across_the_layers() {
        let server = || "127.0.0.1:143".to_owned();
        let throttled = imap(ImapError::Backoff {
            server: server(),
            command: "APPEND".into(),
            delay: std::time::Duration::from_secs(3),
            text: "[THROTTLED]".into(),
        });
        assert_eq!(throttled.failure_kind(), FailureKind::Throttled);
        let closed = imap(ImapError::ConnectionClosed {
            server: server(),
            during: "reading a response",
        });
        assert_eq!(closed.failure_kind(), FailureKind::ConnectionLost);
        let bye = Error::Endpoint {
            endpoint: "src".into(),
            action: "testing".into(),
            source: Box::new(ImapError::Bye {
                server: server(),
                text: "shutting down".into(),
            }),
        };
        assert_eq!(bye.failure_kind(), FailureKind::ConnectionLost);
        let silent = imap(ImapError::Timeout {
            server: server(),
            during: "waiting",
            waited: std::time::Duration::from_secs(60),
        });
        assert_eq!(silent.failure_kind(), FailureKind::Timeout);
        let refused = imap(ImapError::Refused {
            server: server(),
            command: "SELECT \"x\"".into(),
            status: imapmirror_protocol::StatusKind::No,
            code: None,
            text: "no such folder".into(),
        });
        assert_eq!(refused.failure_kind(), FailureKind::Refused);
        let login = Error::LoginRefused {
            role: "source",
            server: server(),
            user: "a@example.test".into(),
            text: "[AUTHENTICATIONFAILED]".into(),
        };
        assert_eq!(login.failure_kind(), FailureKind::Auth);
        // A row's login problem is the problem's kind.
        let row = Error::RowLogin {
            line: 2,
            email: "a@example.test".into(),
            problem: Box::new(login),
        };
        assert_eq!(row.failure_kind(), FailureKind::Auth);
        let stopped = Error::Stopped {
            mailbox: "a@example.test".into(),
        };
        assert_eq!(stopped.failure_kind(), FailureKind::Stopped);
        assert_eq!(
            Error::FileEmpty { file: "f".into() }.failure_kind(),
            FailureKind::Config
        );
        // Label values are distinct and in Prometheus's label-value style.
        let labels: std::collections::BTreeSet<_> =
            FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), FailureKind::ALL.len());
        assert!(
            labels
                .iter()
                .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
