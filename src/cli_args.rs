//! The command line of CLI.md, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Mirror mailboxes from one IMAP server to another: batches, incremental passes,
/// byte-exact, resumable.
#[derive(Debug, Parser)]
#[command(name = "imapmirror", version, about)]
pub struct Cli {
    /// The state directory: the store, reports and control socket
    /// [default: $IMAPMIRROR_STATE_DIR, else $XDG_STATE_HOME/imapmirror, else
    /// ~/.local/state/imapmirror].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// How log lines are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "IMAPMIRROR_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More log detail (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// IMAP servers mail comes from and goes to (New-MigrationEndpoint).
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Batches of mailboxes from a migration file (New-/Start-/Complete-MigrationBatch).
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Run started batches: the initial pass, then an incremental pass every sync interval.
    Serve(ServeArgs),
    /// Route each user's IMAP logins to the source or the target of their batch, so that
    /// clients keep one server name through the migration and move at `batch complete`.
    Proxy(ProxyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecurityArg {
    Ssl,
    Starttls,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    Plain,
    Login,
    Xoauth2,
}

/// `endpoint add --provider`: the hosted-service profile to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// Whatever the server's ID, greeting and capabilities say (the default).
    Auto,
    Gmail,
    Microsoft365,
    /// No hosted-service profile, whatever the server says.
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OAuthProviderArg {
    Microsoft,
    Google,
    Generic,
}

// Parsed once per run: the size of `Add` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Add an endpoint; tests the connection first unless --no-test.
    Add(EndpointAddArgs),
    /// Connect, negotiate TLS, read CAPABILITY and ID; with admin credentials also log in.
    /// Names the server family, says how the certificate was checked, judges login methods
    /// by the capabilities before login (after STARTTLS) and lists those after login apart.
    Test {
        name: String,
        /// The mailbox to log in as through the admin credentials
        /// [default: the first mailbox of a batch that uses the endpoint].
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List endpoints.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an endpoint (refused while a batch uses it).
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct EndpointAddArgs {
    /// Letters, digits, `-` and `_`.
    pub name: String,
    /// When an endpoint of that name exists: `error` refuses; `update` replaces its
    /// settings and admin password with these (after the same connection test).
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = IfExistsArg::Error)]
    pub if_exists: IfExistsArg,
    #[arg(long)]
    pub host: String,
    /// [default: 993 with ssl, 143 otherwise]
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long, value_enum, default_value_t = SecurityArg::Ssl)]
    pub security: SecurityArg,
    #[arg(long, value_enum, default_value_t = AuthArg::Plain)]
    pub auth: AuthArg,
    /// With --auth xoauth2: a shell command that prints an OAuth access token for the
    /// user in $IMAPMIRROR_OAUTH_USER (also $1); run for each new connection. Keep its
    /// secrets in files it reads, not in the command line.
    #[arg(long, value_name = "COMMAND")]
    pub oauth_token_command: Option<String>,
    /// With --auth xoauth2: get access tokens from this provider instead of a command.
    /// microsoft: the app's client-credentials grant (--tenant, --client-id,
    /// --client-secret-file); google: a service account with domain-wide delegation
    /// (--service-account-file); generic: client credentials at --token-url.
    #[arg(
        long,
        value_enum,
        value_name = "PROVIDER",
        conflicts_with = "oauth_token_command"
    )]
    pub oauth_provider: Option<OAuthProviderArg>,
    /// Microsoft's directory (tenant) id or domain.
    #[arg(long, value_name = "TENANT", requires = "oauth_provider")]
    pub tenant: Option<String>,
    /// The app's (client's) id at the provider.
    #[arg(long, value_name = "ID", requires = "oauth_provider")]
    pub client_id: Option<String>,
    /// A file holding the app's client secret; read whenever a token is fetched, never
    /// stored.
    #[arg(long, value_name = "FILE", requires = "oauth_provider")]
    pub client_secret_file: Option<PathBuf>,
    /// Google: the service account's JSON key file; read whenever a token is fetched.
    #[arg(long, value_name = "FILE", requires = "oauth_provider")]
    pub service_account_file: Option<PathBuf>,
    /// The token endpoint, instead of the provider's own.
    #[arg(long, value_name = "URL", requires = "oauth_provider")]
    pub token_url: Option<String>,
    /// The admin (master) user that opens every mailbox.
    #[arg(long, value_name = "USER", requires = "admin_format")]
    pub admin_user: Option<String>,
    /// A file holding the admin password (else $IMAPMIRROR_ADMIN_PASSWORD).
    #[arg(long, value_name = "FILE", requires = "admin_user")]
    pub admin_password_file: Option<PathBuf>,
    /// How admin and user combine into one login: dovecot (`user*admin`; dovecot:SEP for
    /// another auth_master_user_separator, e.g. dovecot:%), sasl (AUTHENTICATE PLAIN with
    /// an authorization identity), exchange (`Domain/Admin/user`) or mirapoint
    /// (`#user#admin#`).
    #[arg(long, value_name = "FORMAT", requires = "admin_user", value_parser = parse_admin_format)]
    pub admin_format: Option<imapmirror_protocol::admin_login::AdminFormat>,
    /// Folders of one mailbox synced at once, each over its own connection [default: 4];
    /// lower it for servers that limit connections per account. A mailbox uses the lower
    /// of its source's and target's value.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub connections_per_mailbox: Option<u32>,
    /// Mailboxes in their initial pass at once, across all batches.
    #[arg(long, default_value_t = imapmirror_storage::DEFAULT_MAX_CONCURRENT_MIGRATIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_migrations: u32,
    /// Mailboxes in an incremental or final pass at once, across all batches.
    #[arg(long, default_value_t = imapmirror_storage::DEFAULT_MAX_CONCURRENT_SYNCS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_syncs: u32,
    /// CA certificates (PEM) to trust for this endpoint.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate (anyone in the path can read passwords).
    #[arg(long, conflicts_with_all = ["ca_file", "pin_cert"])]
    pub insecure_skip_verify: bool,
    /// Trust exactly this server certificate, and no CA: a PEM file holding it (e.g. an
    /// old server's self-signed one, which --ca-file refuses as CA:TRUE), or sha256:HEX
    /// of its DER as `openssl x509 -noout -fingerprint -sha256` prints it. Verification
    /// stays on: the server must present that certificate and hold its key; its name,
    /// issuer and dates are not checked. The digest is stored with the endpoint.
    #[arg(long, value_name = "PEM|sha256:HEX", conflicts_with = "ca_file")]
    pub pin_cert: Option<String>,
    /// The hosted service this endpoint is: its profile sets the connection and
    /// message-size limits, the system-folder map and the identity used against
    /// duplicates (`endpoint test` shows them). auto: as the server's ID, greeting and
    /// capabilities tell.
    #[arg(long, value_enum, default_value_t = ProviderArg::Auto)]
    pub provider: ProviderArg,
    /// The most this endpoint takes in all, across every shard: a message rate
    /// (`50msg/s`, `600msg/min`) and/or a byte rate (`3MB/s`, `10GB/h`; KB, MB, GB are
    /// powers of 1000, KiB, MiB, GiB of 1024), per s, min or h. Give the flag twice for
    /// both. Each process keeps to this divided by its batches' shard count (`batch add
    /// --shard I/N`), so N shards together stay within it. Without it: no limit.
    #[arg(long, value_name = "RATE", value_parser = parse_max_rate)]
    pub max_rate: Vec<imapmirror_engine::endpoint::rate_budget::RateArg>,
    /// Add without testing the connection.
    #[arg(long, conflicts_with = "test_user")]
    pub no_test: bool,
    /// During the test, also log in as this mailbox through the admin credentials.
    #[arg(long, value_name = "USER", requires = "admin_user")]
    pub test_user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
}

// Parsed once per run: the size of `batch add`'s arguments costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Create a batch from a migration file; prints how many mailboxes it will migrate.
    Add(BatchAddArgs),
    /// Initial sync (or resume it).
    Start {
        name: String,
        /// Run it in the foreground with progress, without `serve`.
        #[arg(long)]
        wait: bool,
        /// Plan the pass without making it: per mailbox the folder map (source → target),
        /// the messages and bytes that would be copied, what would be skipped and why.
        /// Nothing is written to the target or to the batch's state.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// With --dry-run: print the plan as JSON.
        #[arg(long, requires = "dry_run")]
        json: bool,
    },
    /// Size every mailbox on the source and predict how long a pass would take at the
    /// endpoints' concurrency, from the batch's earlier passes or, without any, from a
    /// short sample copy into a scratch folder on the target that is deleted again.
    Estimate {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// An incremental pass now.
    Sync {
        name: String,
        /// Run it in the foreground with progress, without `serve`.
        #[arg(long)]
        wait: bool,
    },
    /// Stop syncing; start resumes.
    Stop { name: String },
    /// One batch, or every batch.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The mailboxes of a batch (Get-MigrationUser).
    Users {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Per-mailbox statistics and skipped items.
    Report {
        name: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The fleet report: merge the reports of the batch's shards, each a shard's `serve
        /// --http` URL (http://imapmirror-0.imapmirror:8080) or its state directory, into one
        /// with a Shard column; names the shards that did not answer (exit 1 if any).
        #[arg(long, value_name = "SOURCE", num_args = 1..)]
        merge: Vec<String>,
        /// With --merge: a file holding the token of the shards' --http-token-file.
        #[arg(long, value_name = "FILE", requires = "merge")]
        http_token_file: Option<PathBuf>,
        /// With --merge: how long each shard may take to answer (30s, 2m).
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration_arg::parse_duration, requires = "merge")]
        timeout: std::time::Duration,
    },
    /// A final pass, then the batch is Completed (the proxy routes its users to the target).
    Complete { name: String },
    /// Stop syncing and delete the batch's records and stored credentials.
    Remove { name: String },
}

/// What `endpoint add` and `batch add` do when the name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IfExistsArg {
    /// Refuse, and change nothing (the default).
    Error,
    /// Make the stored one match: an endpoint takes the new settings and password; a batch
    /// takes the file's new rows and changed credentials (same endpoints and shard only),
    /// so a worker can repeat its setup at every start.
    Update,
}

#[derive(Debug, Args)]
pub struct BatchAddArgs {
    /// Letters, digits, `-` and `_`; without it, the migration file's name without its
    /// extension (`wave-1.csv` adds batch `wave-1`), as Exchange names a new batch.
    pub name: Option<String>,
    /// The migration file (CSV: EmailAddress, UserName, Password, ...).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// The source endpoint.
    #[arg(long, value_name = "EP")]
    pub source: String,
    /// The target endpoint.
    #[arg(long, value_name = "EP")]
    pub target: String,
    /// A source folder not to migrate: a name, a glob (`Archive*`) or a special use (`\Junk`).
    #[arg(long, value_name = "FOLDER")]
    pub exclude: Vec<String>,
    /// A shared or another user's folder to migrate into every mailbox of the batch, by its
    /// full source name (`Other Users/bob/Projects`, `shared.News`, a glob): such folders
    /// are skipped and reported otherwise.
    #[arg(long, value_name = "FOLDER")]
    pub include: Vec<String>,
    /// From a Gmail source: the target folder for archived mail (All Mail's messages in no
    /// label). Default: the target's `\Archive` folder, else a folder named `Archive`.
    #[arg(long, value_name = "FOLDER")]
    pub gmail_archive_folder: Option<String>,
    /// How long after a pass that looked at the target a later pass may skip it when the
    /// source shows nothing to do (a mailbox nobody wrote to then costs one login, not
    /// two): 12h by default; 0 makes every pass look at the target. The final pass always
    /// does.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration_arg::parse_duration_or_zero)]
    pub target_recheck: Option<std::time::Duration>,
    /// Start the batch once added.
    #[arg(long)]
    pub start: bool,
    /// Messages larger than this many bytes are skipped (and reported).
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<u64>,
    /// A mailbox fails once the target has refused more than N of its messages, over all
    /// passes; without it a refused message is reported and the pass goes on.
    #[arg(long, value_name = "N")]
    pub bad_item_limit: Option<u64>,
    /// Time between incremental passes: 24h, 30m, 1d12h, 90s, or seconds.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::duration_arg::parse_duration)]
    pub sync_interval: std::time::Duration,
    /// POST the batch summary (JSON) here when a pass finishes or fails.
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<String>,
    /// After every pass, deliver the batch report into this address's INBOX on the target
    /// endpoint (logged in with its admin credentials): a text summary, with the CSV of
    /// `batch report NAME --format csv` attached as NAME-report.csv. No SMTP needed; a
    /// failed delivery is logged and shown by `batch status`, and never fails the pass.
    /// Give it again to send copies to other addresses (each into its own INBOX).
    #[arg(long, value_name = "ADDRESS")]
    pub report_mailbox: Vec<String>,
    /// Keep only this shard of the file's rows (by a fixed hash of EmailAddress), to split
    /// one batch over COUNT machines, each with its own state directory: 0/4 ... 3/4.
    #[arg(long, value_name = "INDEX/COUNT", env = "IMAPMIRROR_SHARD", value_parser = parse_shard)]
    pub shard: Option<imapmirror_engine::batch::shard::Shard>,
    /// When the batch exists: `error` refuses; `update` adds the file's new rows, replaces
    /// changed passwords and later-pass settings, and refuses other endpoints, another
    /// shard or a row naming another account. Safe to repeat at every start of a worker.
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = IfExistsArg::Error)]
    pub if_exists: IfExistsArg,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Also answer HTTP on this address (a bare PORT means 127.0.0.1:PORT): the status
    /// pages at / and /batch/NAME, GET /healthz, /batches, /batches/NAME,
    /// /batches/NAME/users (the JSON of `batch status`/`users --json`),
    /// /batches/NAME/report.csv, /batches/NAME/report.json (what `batch report --merge`
    /// reads) and Prometheus metrics at /metrics. Read-only.
    #[arg(long, value_name = "ADDR", value_parser = http_addr)]
    pub http: Option<std::net::SocketAddr>,
    /// A file holding a token that every HTTP request but /healthz must carry
    /// (`Authorization: Bearer TOKEN`, or HTTP Basic with the token as password).
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_token_file: Option<std::path::PathBuf>,
}

/// `--http`: an address, or a port on loopback.
fn http_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("`{text}` is neither an address (127.0.0.1:8080, [::1]:8080) nor a port")
    })
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Plain IMAP on this address, with STARTTLS when a certificate is given (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<std::net::SocketAddr>,
    /// Implicit TLS (IMAPS) on this address (repeatable); needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    pub listen_tls: Vec<std::net::SocketAddr>,
    /// The proxy's certificate chain (PEM); re-read on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); re-read on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept LOGIN and AUTHENTICATE without TLS (loopback and tests only).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Send logins that no batch and no route-file line knows to this endpoint.
    #[arg(long, value_name = "ENDPOINT")]
    pub default_backend: Option<String>,
    /// Static routes, `LOGIN HOST:PORT ssl|starttls|none [ca-file=PEM |
    /// pin-cert=sha256:HEX] [insecure-skip-verify]` per line; they add to and override the
    /// batches' routes.
    #[arg(long, value_name = "FILE")]
    pub route_file: Option<PathBuf>,
    /// After cut-over, log users in to the target with the target endpoint's admin
    /// credentials (for targets where users' passwords differ); the client's own
    /// credentials are first verified by a login on the source.
    #[arg(long)]
    pub target_admin_login: bool,
    /// Tell backends the client's address with ID (x-originating-ip/-port, x-proxy-ttl).
    #[arg(long)]
    pub forward_id: bool,
    /// The most client connections at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Also answer HTTP on this address (a bare PORT means 127.0.0.1:PORT): Prometheus
    /// metrics at /metrics (sessions, logins, routes) and GET /healthz.
    #[arg(long, value_name = "ADDR", value_parser = http_addr)]
    pub http: Option<std::net::SocketAddr>,
}

fn parse_admin_format(text: &str) -> Result<imapmirror_protocol::admin_login::AdminFormat, String> {
    text.parse()
        .map_err(|e: imapmirror_protocol::admin_login::UnknownAdminFormat| e.to_string())
}

fn parse_shard(text: &str) -> Result<imapmirror_engine::batch::shard::Shard, String> {
    text.parse()
        .map_err(|e: imapmirror_engine::batch::shard::InvalidShard| e.to_string())
}

fn parse_max_rate(text: &str) -> Result<imapmirror_engine::endpoint::rate_budget::RateArg, String> {
    text.parse()
        .map_err(|e: imapmirror_engine::endpoint::rate_budget::InvalidRate| e.to_string())
}
