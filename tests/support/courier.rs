//! Private Courier-IMAP 5.0 instances (Debian's courier-imap, unpacked by
//! scripts/install-mail-servers into /opt/imapmirror-kit/courier), one temp dir each.
//!
//! Courier's daemons read fixed paths: authdaemond and makeuserdb `/etc/courier`, the
//! authentication client of imaplogin the socket in `/run/courier/authdaemon`. An instance
//! therefore runs in its own mount and PID namespaces (see private_server.rs) where its
//! `etc/` is bind-mounted over `/etc/courier` and its `run/` over `/run/courier`; nothing of
//! the machine's own Courier configuration is read or changed. In that namespace:
//!
//! - `etc/userdb` (one line per account, passwords as `userdbpw -md5` hashes) is compiled by
//!   `makeuserdb`, and `authdaemond` serves it (`authmodulelist="authuserdb"`);
//! - `etc/imapd` and `etc/imapd-ssl` are Debian's files as shipped; `etc/imapmirror-kit` is
//!   read after them and holds the kit's few overrides (see `render_overrides`);
//! - `etc/shared/index` lists every account, so virtual shared folders work: the admin is in
//!   the account group `administrators` and sees each user's mail as
//!   `#shared.<user with . and / as spaces>` (and only under `#shared.`, not in `LIST "" "*"`);
//! - two `couriertcpd` on 127.0.0.1, as Debian's `imapd` and `imapd-ssl` start scripts run
//!   them: the plain port (STARTTLS offered) and the implicit-TLS port (`couriertls`), both
//!   with Debian's `MAXPERIP=20` unless the builder says otherwise.
//!
//! Mail belongs to the system user `courier` (created by Debian's courier-base).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustls::RootCertStore;

use super::dovecot::{
    TlsMode, chown, create_dir, free_port_pair, getent, greets, passwd_ids, set_mode, write_file,
};
use super::imap_client::{Credentials, DEFAULT_TIMEOUT, Endpoint, ImapClient, Security};
use super::kit_error::KitError;
use super::private_server::{
    Sandbox, StartFailure, SyslogSink, installed, kit_prefix, log_len, log_since, log_tail,
    private_dev_script, require_root, run_with_input, says_port_taken, sh_quote,
};
use super::process_table::ProcessId;
use super::tls_material::TlsMaterial;

pub const COURIER_DEFAULT_USER: &str = "user@example.test";
pub const COURIER_DEFAULT_PASSWORD: &str = "user-secret";
pub const COURIER_ADMIN: &str = "mailadmin";
pub const COURIER_ADMIN_PASSWORD: &str = "admin-secret";

/// Set to keep instance directories (config, logs, Maildirs) after the test, for debugging.
pub const KEEP_DIRS_ENV: &str = "IMAPMIRROR_KEEP_COURIER";

/// Debian's `MAXPERIP` in /etc/courier/imapd.
pub const DEBIAN_MAX_PER_IP: u32 = 20;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Clone)]
pub struct CourierBuilder {
    label: String,
    users: Vec<(String, String)>,
    admin: (String, String),
    max_per_ip: u32,
    extra_config: Vec<String>,
}

impl CourierBuilder {
    /// A label for logs and reports ("source", "target").
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }

    /// Adds a user (if none is added, `COURIER_DEFAULT_USER` exists).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// The account in group `administrators`.
    pub fn admin(mut self, name: &str, password: &str) -> Self {
        self.admin = (name.to_owned(), password.to_owned());
        self
    }

    /// Connections accepted from one IP address (`MAXPERIP`, Debian: 20).
    pub fn max_per_ip(mut self, n: u32) -> Self {
        self.max_per_ip = n;
        self
    }

    /// A shell assignment for imapd's environment, read after Debian's files, e.g.
    /// `IMAP_EMPTYTRASH=` (Debian: `Trash:7`, which purges Trash at login).
    pub fn extra_config(mut self, line: &str) -> Self {
        self.extra_config.push(line.to_owned());
        self
    }

    pub fn start(self) -> Result<Courier, KitError> {
        Courier::start_with(self)
    }
}

pub struct Courier {
    label: String,
    instance_name: String,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    log_path: PathBuf,
    syslog_path: PathBuf,
    plain_addr: SocketAddr,
    tls_addr: SocketAddr,
    tls: TlsMaterial,
    users: Vec<(String, String)>,
    admin: (String, String),
    max_per_ip: u32,
    mail_ids: (u32, u32),
    sandbox: Option<Sandbox>,
    syslog: Option<SyslogSink>,
}

impl Courier {
    pub fn builder() -> CourierBuilder {
        CourierBuilder {
            label: "courier".to_owned(),
            users: Vec::new(),
            admin: (COURIER_ADMIN.to_owned(), COURIER_ADMIN_PASSWORD.to_owned()),
            max_per_ip: DEBIAN_MAX_PER_IP,
            extra_config: Vec::new(),
        }
    }

    fn start_with(mut builder: CourierBuilder) -> Result<Courier, KitError> {
        if builder.users.is_empty() {
            builder.users.push((
                COURIER_DEFAULT_USER.to_owned(),
                COURIER_DEFAULT_PASSWORD.to_owned(),
            ));
        }
        for (name, password) in builder.users.iter().chain([&builder.admin]) {
            validate_account(name, password)?;
        }
        if builder
            .users
            .iter()
            .any(|(name, _)| *name == builder.admin.0)
        {
            return Err(KitError::Usage(format!(
                "Courier admin {:?} is also a user; give the admin its own name",
                builder.admin.0
            )));
        }
        require_root("Courier")?;
        let prefix = kit_prefix().join("courier");
        let imapd = installed(&prefix.join("usr/bin/imapd"))?;
        let imaplogin = installed(&prefix.join("usr/lib/courier/courier/imaplogin"))?;
        let couriertcpd = installed(Path::new("/usr/sbin/couriertcpd"))?;
        let authdaemond = installed(Path::new("/usr/lib/courier/courier-authlib/authdaemond"))?;
        installed(Path::new("/usr/sbin/makeuserdb"))?;
        installed(Path::new("/usr/lib/courier-authlib/libauthuserdb.so.0"))?;
        let mail_ids = match getent("passwd", "courier")? {
            Some(line) => passwd_ids(&line)?,
            None => {
                return Err(KitError::Environment {
                    what: "the system user courier does not exist".to_owned(),
                    remedy: "run scripts/install-mail-servers (Debian's courier-base creates it)"
                        .to_owned(),
                });
            }
        };

        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let instance_name = format!("imapmirror-kit-{}-courier{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{instance_name}-"))
            .tempdir()
            .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;
        let root = dir.path().to_path_buf();
        // The courier user must traverse the instance directory to reach its home.
        set_mode(&root, 0o755)?;
        for sub in [
            "etc",
            "etc/shared",
            "run",
            "log",
            "tls",
            "home",
            "dev",
            "bin",
        ] {
            create_dir(&root.join(sub), 0o755)?;
        }
        create_dir(&root.join("run/authdaemon"), 0o750)?;
        let tls = TlsMaterial::generate(&root.join("tls"), &instance_name)?;

        // Processes started through these links carry the instance name in their command
        // line, so a leftover is found by `pgrep -f imapmirror-kit-`.
        for (link, target) in [
            ("couriertcpd", &couriertcpd),
            ("imaplogin", &imaplogin),
            ("imapd", &imapd),
            ("authdaemond", &authdaemond),
        ] {
            std::os::unix::fs::symlink(target, root.join("bin").join(link))
                .map_err(|e| KitError::file("link", root.join("bin").join(link), e))?;
        }

        let mut server = Courier {
            label: builder.label.clone(),
            instance_name,
            dir: Some(dir),
            log_path: root.join("log").join("courier.log"),
            syslog_path: root.join("log").join("syslog.log"),
            plain_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls,
            users: builder.users.clone(),
            admin: builder.admin.clone(),
            max_per_ip: builder.max_per_ip,
            mail_ids,
            sandbox: None,
            syslog: None,
            root,
        };
        server.write_accounts()?;
        server.write_config(&prefix, &builder)?;
        let socket = server.root.join("log").join("syslog.sock");
        server.syslog = Some(SyslogSink::start(&socket, &server.syslog_path)?);
        let script = server.root.join("start.sh");
        write_file(&script, &server.render_script(&socket), 0o644)?;

        // A port found free may be taken by someone else before Courier binds it; retry.
        let mut last_error = None;
        for _attempt in 0..5 {
            (server.plain_addr, server.tls_addr) = free_port_pair()?;
            write_file(
                &server.root.join("ports"),
                &format!(
                    "PLAIN_PORT={}\nTLS_PORT={}\n",
                    server.plain_addr.port(),
                    server.tls_addr.port()
                ),
                0o644,
            )?;
            match server.spawn_and_wait(&script) {
                Ok(()) => return Ok(server),
                Err(failure) => {
                    server.stop_quietly();
                    if !failure.port_taken {
                        return Err(*failure.error);
                    }
                    last_error = Some(*failure.error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| server.error("start", "no attempt was made".to_owned())))
    }

    /// Homes with Maildirs, `etc/userdb`, `etc/authdaemonrc` and `etc/shared/index`.
    fn write_accounts(&self) -> Result<(), KitError> {
        let (uid, gid) = self.mail_ids;
        let mut userdb = String::new();
        let mut index = String::new();
        for (name, password, admin) in self.users.iter().map(|(n, p)| (n, p, false)).chain([(
            &self.admin.0,
            &self.admin.1,
            true,
        )]) {
            let home = self.root.join("home").join(home_dir_name(name));
            create_dir(&home, 0o700)?;
            chown(&home, uid, gid)?;
            for sub in ["Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"] {
                let path = home.join(sub);
                create_dir(&path, 0o700)?;
                chown(&path, uid, gid)?;
            }
            let hash = run_with_input(
                Command::new("userdbpw").arg("-md5"),
                format!("{password}\n").as_bytes(),
            )?;
            let hash = String::from_utf8_lossy(&hash).trim().to_owned();
            userdb.push_str(&format!(
                "{name}\tuid={uid}|gid={gid}|home={home}|mail={home}/Maildir|systempw={hash}{options}\n",
                home = home.display(),
                options = if admin {
                    "|options=group=administrators"
                } else {
                    ""
                },
            ));
            index.push_str(&format!(
                "{name}\t{uid}\t{gid}\t{home}\tMaildir\n",
                home = home.display()
            ));
        }
        let etc = self.root.join("etc");
        write_file(&etc.join("userdb"), &userdb, 0o600)?;
        write_file(&etc.join("shared").join("index"), &index, 0o644)?;
        write_file(
            &etc.join("authdaemonrc"),
            "# Written by the imapmirror test kit; see tests/support/courier.rs.
authmodulelist=\"authuserdb\"
daemons=2
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=\"\"
LOGGEROPTS=\"\"
",
            0o640,
        )
    }

    /// Debian's imapd and imapd-ssl, the kit's overrides, TLS certificate and DH parameters.
    fn write_config(&self, prefix: &Path, builder: &CourierBuilder) -> Result<(), KitError> {
        let etc = self.root.join("etc");
        for name in ["imapd", "imapd-ssl"] {
            let from = installed(&prefix.join("etc/courier").join(name))?;
            std::fs::copy(&from, etc.join(name)).map_err(|e| KitError::file("copy", &from, e))?;
        }
        // couriertls wants the key and the certificate in one file, and reads it (and the DH
        // parameters) as the user courier: root:courier 0640, as Debian installs them.
        let courier_gid = self.mail_ids.1;
        let pem = etc.join("imapd.pem");
        write_file(
            &pem,
            &format!("{}{}", self.tls.server_key_pem, self.tls.server_cert_pem),
            0o640,
        )?;
        chown(&pem, 0, courier_gid)?;
        // Debian's courier-base makes DH parameters at install; take them if there.
        let dhparams = Path::new("/etc/courier/dhparams.pem");
        let copy = etc.join("dhparams.pem");
        let have_dhparams = dhparams.is_file()
            && std::fs::copy(dhparams, &copy).is_ok()
            && set_mode(&copy, 0o640).is_ok()
            && chown(&copy, 0, courier_gid).is_ok();
        write_file(
            &etc.join("imapmirror-kit"),
            &self.render_overrides(builder, have_dhparams),
            0o644,
        )
    }

    fn render_overrides(&self, builder: &CourierBuilder, have_dhparams: bool) -> String {
        let mut c = format!(
            "# Written by the imapmirror test kit; read after Debian's imapd and imapd-ssl.
MAXPERIP={max_per_ip}
# Per instance, not Debian's /var/lib/courier/couriersslpop3cache.
TLS_CACHEFILE=/run/courier/tlscache
",
            max_per_ip = self.max_per_ip,
        );
        if !have_dhparams {
            c.push_str("TLS_DHPARAMS=\n");
        }
        for line in &builder.extra_config {
            c.push_str(line);
            c.push('\n');
        }
        c
    }

    /// The namespace's first process: mounts, userdb, authdaemond, then the two listeners
    /// as Debian's start scripts run them (`env -i`, their config files sourced,
    /// `ulimit -v $IMAP_ULIMITD`).
    fn render_script(&self, socket: &Path) -> String {
        let root = sh_quote(&self.root);
        format!(
            "# Written by the imapmirror test kit; runs in the instance's own namespaces.
set -e
R={root}
. \"$R/ports\"
# Missing only where Debian's tmpfiles never ran; empty directories, as the packages make them.
mkdir -p /etc/courier /run/courier
mount --bind \"$R/etc\" /etc/courier
mount --bind \"$R/run\" /run/courier
{dev}
makeuserdb
# As Debian's start scripts do: couriertls (as courier) keeps its session cache here.
rm -f /run/courier/tlscache
touch /run/courier/tlscache
chown courier:courier /run/courier/tlscache
chmod 600 /run/courier/tlscache
\"$R/bin/authdaemond\" &
i=0
until [ -S /run/courier/authdaemon/socket ]; do
  i=$((i + 1))
  if [ $i -gt 600 ]; then echo 'authdaemond made no socket in 30 s' >&2; exit 1; fi
  sleep 0.05
done
env -i R=\"$R\" KIT_PORT=\"$PLAIN_PORT\" /bin/sh -c 'set -a
  prefix=/usr; exec_prefix=/usr; sbindir=/usr/sbin; bindir=/usr/bin
  . /etc/courier/imapd; . /etc/courier/imapd-ssl; . /etc/courier/imapmirror-kit
  IMAP_STARTTLS=$IMAPDSTARTTLS
  ulimit -v $IMAP_ULIMITD
  exec \"$R/bin/couriertcpd\" -address=127.0.0.1 -maxprocs=$MAXDAEMONS -maxperip=$MAXPERIP \\
    $TCPDOPTS $KIT_PORT \"$R/bin/imaplogin\" \"$R/bin/imapd\" $MAILDIRPATH' &
env -i R=\"$R\" KIT_PORT=\"$TLS_PORT\" /bin/sh -c 'set -a
  prefix=/usr; exec_prefix=/usr; sbindir=/usr/sbin; bindir=/usr/bin
  . /etc/courier/imapd; . /etc/courier/imapd-ssl; . /etc/courier/imapmirror-kit
  IMAP_TLS=1
  ulimit -v $IMAP_ULIMITD
  exec \"$R/bin/couriertcpd\" -address=127.0.0.1 -maxprocs=$MAXDAEMONS -maxperip=$MAXPERIP \\
    $TCPDOPTS $KIT_PORT $COURIERTLS -server -tcpd -user=courier \\
    \"$R/bin/imaplogin\" \"$R/bin/imapd\" $MAILDIRPATH' &
wait
",
            dev = private_dev_script(&self.root.join("dev"), socket),
        )
    }

    fn spawn_and_wait(&mut self, script: &Path) -> Result<(), StartFailure> {
        let log_start = log_len(&self.log_path);
        let failed = |server: &Courier, detail: String| StartFailure {
            error: Box::new(server.error("start", detail)),
            port_taken: says_port_taken(&log_since(&server.log_path, log_start)),
        };
        match Sandbox::spawn(script, &self.log_path) {
            Ok(sandbox) => self.sandbox = Some(sandbox),
            Err(error) => {
                return Err(StartFailure {
                    error: Box::new(error),
                    port_taken: false,
                });
            }
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.sandbox.as_mut().and_then(Sandbox::exited) {
                return Err(failed(
                    self,
                    format!("the namespace exited with {status} before listening"),
                ));
            }
            if greets(self.plain_addr) && TcpStream::connect(self.tls_addr).is_ok() {
                return Ok(());
            }
            if says_port_taken(&log_since(&self.log_path, log_start)) {
                return Err(failed(self, "a port was taken".to_owned()));
            }
            if Instant::now() > deadline {
                return Err(failed(
                    self,
                    format!(
                        "not listening on {} and {} after {} s",
                        self.plain_addr,
                        self.tls_addr,
                        STARTUP_TIMEOUT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the instance: kills its namespace and waits until every process is gone.
    pub fn stop(&mut self) -> Result<(), KitError> {
        let Some(mut sandbox) = self.sandbox.take() else {
            return Ok(());
        };
        sandbox.stop().map_err(|detail| self.error("stop", detail))
    }

    fn stop_quietly(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("imapmirror test kit: {e}");
        }
    }

    /// Every process of the instance (`unshare`, the shell, authdaemond, couriertcpd,
    /// imaplogin/imapd per connection), as running now.
    pub fn processes(&self) -> Vec<ProcessId> {
        self.sandbox
            .as_ref()
            .map(Sandbox::processes)
            .unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.sandbox.as_ref().is_some_and(Sandbox::is_running)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    /// Courier's hierarchy separator (personal folders are `INBOX.a.b`).
    pub fn separator(&self) -> char {
        '.'
    }

    /// The name a user gives a personal folder: `INBOX.a.b`.
    pub fn personal_folder(&self, path: &[&str]) -> String {
        format!("INBOX.{}", path.join("."))
    }

    /// Where the admin sees `user`'s INBOX: `#shared.` and the account name with `.` and
    /// `/` as spaces (`#shared.user@example test`); its folders are below, `.`-separated.
    /// This is the `UserRoot` of a migration read through the admin.
    pub fn shared_root(&self, user: &str) -> String {
        format!("#shared.{}", user.replace(['.', '/'], " "))
    }

    pub fn max_per_ip(&self) -> u32 {
        self.max_per_ip
    }

    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
    }

    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// PEM of the CA that signed this instance's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// A file holding `ca_pem()`, for a `--ca-file` option.
    pub fn ca_file(&self) -> &Path {
        &self.tls.ca_file
    }

    /// Trusts this instance's CA only.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        self.tls.root_store()
    }

    /// What Courier's daemons print (authdaemond, couriertcpd, imapd: LOGIN, LOGOUT, errors).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What they send to syslog (`/dev/log` of the instance).
    pub fn syslog_path(&self) -> &Path {
        &self.syslog_path
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// (user, password) pairs.
    pub fn users(&self) -> &[(String, String)] {
        &self.users
    }

    /// (admin, password): the account in group `administrators`.
    pub fn admin(&self) -> (&str, &str) {
        (&self.admin.0, &self.admin.1)
    }

    /// The uid and gid that own the Maildirs (the system user `courier`).
    pub fn mail_owner(&self) -> (u32, u32) {
        self.mail_ids
    }

    pub fn password(&self, user: &str) -> Result<&str, KitError> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, password)| password.as_str())
            .ok_or_else(|| {
                KitError::Usage(format!(
                    "user {user} does not exist on Courier instance {}; add it with CourierBuilder::user",
                    self.instance_name
                ))
            })
    }

    /// `user`'s Maildir.
    pub fn maildir(&self, user: &str) -> Result<PathBuf, KitError> {
        self.password(user)?;
        Ok(self
            .root
            .join("home")
            .join(home_dir_name(user))
            .join("Maildir"))
    }

    /// Address and security for one of the three ways in.
    pub fn endpoint(&self, mode: TlsMode, credentials: Credentials) -> Endpoint {
        let (addr, security) = match mode {
            TlsMode::None => (self.plain_addr, Security::Plain),
            TlsMode::StartTls => (self.plain_addr, Security::StartTls(self.root_store())),
            TlsMode::Implicit => (self.tls_addr, Security::Tls(self.root_store())),
        };
        Endpoint {
            label: self.label.clone(),
            addr,
            security,
            credentials,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `user`'s own LOGIN, over the plain port.
    pub fn user_endpoint(&self, user: &str) -> Result<Endpoint, KitError> {
        let password = self.password(user)?;
        Ok(self.endpoint(TlsMode::None, Credentials::login(user, password)))
    }

    /// The admin's LOGIN, over the plain port; users' mail is under `shared_root(user)`.
    /// (Courier has no login as another user: its admin reads through `#shared.`.)
    pub fn admin_endpoint(&self) -> Endpoint {
        self.endpoint(
            TlsMode::None,
            Credentials::login(&self.admin.0, &self.admin.1),
        )
    }

    pub fn connect_user(&self, user: &str) -> Result<ImapClient, KitError> {
        self.user_endpoint(user)?.connect()
    }

    /// The last `lines` lines of the daemons' output.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    fn error(&self, action: &str, detail: String) -> KitError {
        let syslog = log_tail(&self.syslog_path, 5);
        let detail = if syslog.is_empty() {
            detail
        } else {
            format!("{detail}; syslog ends with: {syslog}")
        };
        KitError::Server {
            instance: format!("Courier instance {} ({})", self.instance_name, self.label),
            action: action.to_owned(),
            detail,
            log_path: self.log_path.clone(),
            log_tail: self.log_tail(15),
        }
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.stop_quietly();
        // The syslog thread ends after the last process that could write to it.
        self.syslog = None;
        if std::env::var_os(KEEP_DIRS_ENV).is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "imapmirror test kit: kept Courier instance {} in {}",
                self.instance_name,
                dir.keep().display()
            );
        }
    }
}

/// userdb is tab- and `|`-separated, one account a line; the shared index is tab-separated.
fn validate_account(name: &str, password: &str) -> Result<(), KitError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control() || c == '|') {
        return Err(KitError::Usage(format!(
            "Courier account {name:?} is empty or has a space, control character or |; use another name"
        )));
    }
    if password.is_empty() || password.contains(['\n', '\r', '\0']) {
        return Err(KitError::Usage(format!(
            "the password of Courier account {name:?} is empty or has a line break"
        )));
    }
    Ok(())
}

fn home_dir_name(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_checked() {
        assert!(validate_account("a|b", "pw").is_err());
        assert!(validate_account("a b", "pw").is_err());
        assert!(validate_account("a@example.test", "").is_err());
        assert!(validate_account("a.b@example.test", "pw with spaces").is_ok());
    }
}
