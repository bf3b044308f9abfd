//! The Kubernetes deployment's shard entrypoint (deploy/kubernetes/base/shard-entrypoint.sh)
//! run here the way the StatefulSet runs it: four pods at once, each with its own state
//! directory (its volume), its hostname `imapmirror-0` … `imapmirror-3`, the migration file
//! and admin passwords as Secret files, the settings as environment, against the kit's
//! Dovecots. The union of the shards is the whole file, each mailbox in exactly one shard,
//! every mailbox exact on the target; a restarted pod repeats its setup (`--if-exists
//! update`) and copies nothing twice; a pod whose ordinal is beyond the shard count refuses
//! to start.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_harness::{bin, migration_file};
use support::{
    Corpus, CorpusSpec, Dovecot, MANY_USERS_CONFIG, MASTER_PASSWORD, MASTER_USER, SeedMessage,
    Verifier, verify_users,
};

const USERS: usize = 100;
const MESSAGES: usize = 5;
const SHARDS: usize = 4;
const BATCH: &str = "fleet";

fn user(i: usize) -> String {
    format!("shard-user{i:03}@example.test")
}

fn password(i: usize) -> String {
    format!("Pw-{i:03}-x7")
}

fn entrypoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base/shard-entrypoint.sh")
}

fn server(label: &str, users: &[String]) -> Dovecot {
    Dovecot::builder()
        .label(label)
        .extra_config(MANY_USERS_CONFIG)
        .users(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.clone(), password(i))),
        )
        .start()
        .expect("kit Dovecot starts")
}

fn endpoint_args(server: &Dovecot) -> String {
    format!(
        "--host 127.0.0.1 --port {} --security none --admin-user {MASTER_USER} --admin-format dovecot",
        server.plain_addr().port()
    )
}

/// One pod: its volume, its Secret, its log.
struct Pod {
    index: usize,
    state: tempfile::TempDir,
    secrets: tempfile::TempDir,
    log: PathBuf,
}

impl Pod {
    fn new(index: usize, csv: &[u8]) -> Pod {
        let secrets = tempfile::tempdir().expect("secrets dir");
        std::fs::write(secrets.path().join("migration.csv"), csv).expect("migration file");
        for name in ["source-admin-password", "target-admin-password"] {
            std::fs::write(secrets.path().join(name), format!("{MASTER_PASSWORD}\n"))
                .expect("password file");
        }
        let state = tempfile::tempdir().expect("state dir");
        let log = secrets.path().join("pod.log");
        Pod {
            index,
            state,
            secrets,
            log,
        }
    }

    /// Runs the entrypoint as the container would, with `hostname`.
    fn start(&self, hostname: &str, source: &Dovecot, target: &Dovecot) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("pod log");
        let bin_dir = bin().parent().expect("binary's directory").to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg(entrypoint())
            .env("PATH", path)
            .env("HOSTNAME", hostname)
            .env("IMAPMIRROR_SHARD_COUNT", SHARDS.to_string())
            .env("IMAPMIRROR_BATCH", BATCH)
            .env("SOURCE_ENDPOINT_ARGS", endpoint_args(source))
            .env("TARGET_ENDPOINT_ARGS", endpoint_args(target))
            .env("BATCH_ARGS", "--sync-interval 24h")
            .env("IMAPMIRROR_SECRETS_DIR", self.secrets.path())
            .env("IMAPMIRROR_STATE_DIR", self.state.path())
            .env("IMAPMIRROR_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
            .env_remove("IMAPMIRROR_SHARD")
            .env_remove("JOB_COMPLETION_INDEX")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the entrypoint starts")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `imapmirror ARGS --json` against this pod's state directory (through its running
    /// `serve`), or `None` while the pod is still setting up.
    fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = Command::new(bin())
            .args(args)
            .arg("--json")
            .env("IMAPMIRROR_STATE_DIR", self.state.path())
            .stdin(Stdio::null())
            .output()
            .expect("imapmirror runs");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Waits until the batch on this pod has finished a pass after `after` (a
    /// `last_sync_finished`, or none) with every mailbox synced.
    fn wait_synced(&self, child: &mut Child, after: Option<&str>) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "pod {} exited with {status} before its batch synced:\n{}",
                    self.index,
                    self.log()
                );
            }
            if let Some(s) = self.json(&["batch", "status", BATCH]) {
                let finished = s["last_sync_finished"].as_str();
                if s["status"] == "Synced"
                    && s["mailboxes_synced"] == s["mailboxes_total"]
                    && finished.is_some()
                    && finished != after
                {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pod {} did not sync within 240 s:\n{}",
                self.index,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn emails(&self) -> BTreeSet<String> {
        self.json(&["batch", "users", BATCH])
            .expect("batch users")
            .as_array()
            .expect("an array")
            .iter()
            .map(|u| u["email"].as_str().expect("email").to_owned())
            .collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// SIGTERM, as Kubernetes stops a pod; serve (exec'd by the entrypoint) exits 0.
fn stop(pod: &Pod, child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert_eq!(
                status.code(),
                Some(0),
                "pod {} log:\n{}",
                pod.index,
                pod.log()
            );
            return;
        }
        assert!(Instant::now() < deadline, "pod {} did not stop", pod.index);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn four_shard_pods_migrate_the_whole_file_exactly_once() {
    let users: Vec<String> = (0..USERS).map(user).collect();
    let source = server("k8s-source", &users);
    let target = server("k8s-target", &users);
    let spec = |i: usize| CorpusSpec::realistic(9100 + i as u64).with_messages(MESSAGES);
    let folders = Corpus::generate(spec(0)).folders().to_vec();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    source
        .seed_many(&names, &folders, |i, _| -> Vec<SeedMessage> {
            Corpus::generate(spec(i)).messages().collect()
        })
        .expect("seed");
    let rows: Vec<(String, String, String)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.clone(), u.clone(), password(i)))
        .collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let csv = migration_file(&rows);

    let pods: Vec<Pod> = (0..SHARDS).map(|i| Pod::new(i, &csv)).collect();
    let mut children: Vec<Child> = pods
        .iter()
        .map(|p| p.start(&format!("imapmirror-{}", p.index), &source, &target))
        .collect();
    let mut finished = Vec::new();
    for (pod, child) in pods.iter().zip(children.iter_mut()) {
        finished.push(pod.wait_synced(child, None));
    }
    for (pod, child) in pods.iter().zip(children.iter_mut()) {
        stop(pod, child);
    }

    // Every row in exactly one shard, and each shard says which it is.
    let mut union = BTreeSet::new();
    for pod in &pods {
        let emails = pod.emails();
        assert!(!emails.is_empty(), "shard {} got no mailbox", pod.index);
        for e in &emails {
            assert!(union.insert(e.clone()), "{e} is in two shards");
        }
        assert!(
            pod.log()
                .contains(&format!("shard {}/{SHARDS} of batch {BATCH}", pod.index)),
            "{}",
            pod.log()
        );
    }
    let all: BTreeSet<String> = users.iter().cloned().collect();
    assert_eq!(union, all, "the shards together hold the whole file");

    let verifier = Verifier::new();
    for u in &users {
        verify_users(&source, u, &target, u, &verifier)
            .expect("verify")
            .assert_equal();
    }

    // A restarted pod (same volume) repeats its setup: nothing added, nothing doubled;
    // every mailbox is synced already, so no pass is queued and serve just waits for the
    // next interval.
    let pod = &pods[0];
    let mut child = pod.start("imapmirror-0", &source, &target);
    let deadline = Instant::now() + Duration::from_secs(120);
    while pod
        .log()
        .matches("serving: running started batches")
        .count()
        < 2
        || pod.json(&["batch", "status", BATCH]).is_none()
    {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the restarted pod exited with {status}:\n{}", pod.log());
        }
        assert!(
            Instant::now() < deadline,
            "the restarted pod did not serve:\n{}",
            pod.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = pod.json(&["batch", "status", BATCH]).expect("status");
    assert_eq!(status["status"], "Synced", "{status:#}");
    assert_eq!(
        status["items_synced"], finished[0]["items_synced"],
        "nothing copied again: {status:#}"
    );
    stop(pod, &mut child);
    let log = pod.log();
    assert!(
        log.contains("Endpoint source updated") && log.contains("Endpoint target updated"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Batch {BATCH} exists already ({} mailboxes): 0 new mailboxes added",
            pod.emails().len()
        )),
        "{log}"
    );
    for u in &pod.emails() {
        verify_users(&source, u, &target, u, &verifier)
            .expect("verify")
            .assert_equal();
    }
}

#[test]
fn a_pod_beyond_the_shard_count_refuses_to_start() {
    let pod = Pod::new(4, b"EmailAddress,UserName,Password\r\n");
    let out = Command::new("sh")
        .arg(entrypoint())
        .env("HOSTNAME", "imapmirror-4")
        .env("IMAPMIRROR_SHARD_COUNT", SHARDS.to_string())
        .env("IMAPMIRROR_SECRETS_DIR", pod.secrets.path())
        .env("IMAPMIRROR_STATE_DIR", pod.state.path())
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .expect("sh runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this pod is shard 4 but IMAPMIRROR_SHARD_COUNT is 4"),
        "{stderr}"
    );

    // Under an Indexed Job the index is JOB_COMPLETION_INDEX, whatever the hostname.
    let out = Command::new("sh")
        .arg(entrypoint())
        .env("HOSTNAME", "imapmirror-job-x7k2p")
        .env("JOB_COMPLETION_INDEX", "1")
        .env("IMAPMIRROR_SHARD_COUNT", SHARDS.to_string())
        .env_remove("IMAPMIRROR_BATCH")
        .env("IMAPMIRROR_SECRETS_DIR", pod.secrets.path())
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("IMAPMIRROR_BATCH"), "{stderr}");
}
