//! OAuth2 built in (`endpoint add --oauth-provider`): imapmirror gets XOAUTH2 access
//! tokens itself from a local token endpoint (tests/support/token_server.rs) that checks
//! client secrets, scopes and the service account's RS256 signatures, and a real Dovecot
//! accepts them through `passdb oauth2` introspection. Microsoft's app token (one for all
//! mailboxes), Google's delegated tokens (one per mailbox) and the generic grant migrate
//! mail; a bad client secret fails with the provider's words; tokens expire and are
//! fetched anew; no token or secret reaches the log or the state.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;
#[path = "support/token_server.rs"]
mod token_server;

use std::time::Duration;

use cli_harness::Cli;
use support::{Corpus, CorpusSpec, Dovecot, Layout, Verifier, separator_mapping, verify_users};
use token_server::{CLIENT_ID, CLIENT_SECRET, TokenServer, TokenServerConfig};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ALICE_REFRESH: &str = "refresh-alice-7f3e9c";
const BOB_REFRESH: &str = "refresh-bob-1d8a4b";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The service account of the fixture key file, and its public key.
fn service_account() -> (String, String, Vec<u8>) {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("oauth-test-service-account.json")).expect("key file"),
    )
    .expect("key JSON");
    (
        json["client_email"].as_str().expect("email").to_owned(),
        json["token_uri"].as_str().expect("token_uri").to_owned(),
        std::fs::read(fixture("oauth-test-service-account.pub.der")).expect("public key"),
    )
}

/// A token server for Alice's and Bob's mailboxes; app tokens introspect as Alice.
fn token_server(lifetime: Duration, scope: Option<&str>) -> TokenServer {
    TokenServer::start(TokenServerConfig {
        required_scope: scope.map(str::to_owned),
        service_account: Some(service_account()),
        mailboxes: vec![ALICE.to_owned(), BOB.to_owned()],
        refresh_tokens: vec![
            (ALICE_REFRESH.to_owned(), ALICE.to_owned()),
            (BOB_REFRESH.to_owned(), BOB.to_owned()),
        ],
        app_user: Some(ALICE.to_owned()),
        lifetime,
        rotate_refresh_tokens: false,
    })
}

/// A source Dovecot that takes tokens `tokens` grants, seeded for Alice and Bob, and a
/// target added as endpoint `tgt`.
fn servers(cli: &Cli, tokens: &TokenServer, seed: u64) -> (Dovecot, Dovecot) {
    let source = Dovecot::builder()
        .label("oauth-source")
        .oauth2_introspection(&tokens.url("/introspect?token="))
        .user(ALICE, "alice-password-unused")
        .user(BOB, "bob-password-unused")
        .start()
        .expect("source starts");
    for (i, user) in [ALICE, BOB].into_iter().enumerate() {
        let corpus = Corpus::generate(CorpusSpec::small(seed + i as u64).with_messages(15));
        source
            .seed(user, corpus.folders(), corpus.messages())
            .expect("seed");
    }
    let target = Dovecot::builder()
        .label("oauth-target")
        .layout(Layout::Fs)
        .extra_config("mail_max_keyword_length = 200")
        .user(ALICE, "t1")
        .user(BOB, "t2")
        .start()
        .expect("target starts");
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    (source, target)
}

fn add_oauth_source(cli: &Cli, name: &str, source: &Dovecot, oauth: &[&str]) -> cli_harness::Run {
    let port = source.plain_addr().port().to_string();
    let mut args = vec![
        "endpoint",
        "add",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "none",
        "--auth",
        "xoauth2",
    ];
    args.extend_from_slice(oauth);
    cli.run(&args)
}

/// Migrates `users` with batch `b` in one `batch start --wait`, and verifies them.
fn migrate_and_verify(
    cli: &Cli,
    source_endpoint: &str,
    users: &[&str],
    source: &Dovecot,
    target: &Dovecot,
) {
    let rows: String = users.iter().map(|u| format!("{u},{u},\n")).collect();
    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\n{rows}").as_bytes(),
    );
    cli.ok(&[
        "batch",
        "add",
        "b",
        "--csv",
        &csv,
        "--source",
        source_endpoint,
        "--target",
        "tgt",
    ]);
    cli.ok(&["batch", "start", "b", "--wait"]);
    for &user in users {
        verify_users(
            source,
            user,
            target,
            user,
            &Verifier::new().with_folder_map(separator_mapping),
        )
        .expect("verifier reads both sides")
        .assert_equal();
    }
}

/// Neither a token nor the client secret in any output or state file.
fn assert_no_secrets(cli: &Cli, tokens: &TokenServer, outputs: &[&str]) {
    let mut secrets = tokens.tokens();
    secrets.push(CLIENT_SECRET.to_owned());
    assert!(!secrets.is_empty());
    for secret in &secrets {
        for out in outputs {
            assert!(!out.contains(secret.as_str()), "{secret} in output:\n{out}");
        }
        assert!(
            cli.state_files_containing(secret.as_bytes()).is_empty(),
            "{secret} in the state"
        );
    }
}

#[test]
fn microsoft_app_token_migrates_every_mailbox() {
    let tokens = token_server(
        Duration::from_secs(3600),
        Some(token_server::MICROSOFT_SCOPE),
    );
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 71);
    let secret = cli.file("client.secret", format!("{CLIENT_SECRET}\n").as_bytes());
    let url = tokens.url("/contoso.onmicrosoft.com/oauth2/v2.0/token");
    let add = add_oauth_source(
        &cli,
        "m365",
        &source,
        &[
            "--oauth-provider",
            "microsoft",
            "--tenant",
            "contoso.onmicrosoft.com",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &secret,
            "--token-url",
            &url,
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let test = cli.ok(&["endpoint", "test", "m365", "--user", ALICE]);
    assert!(
        test.contains("Login as alice@example.test with an OAuth token from microsoft: succeeded."),
        "{test}"
    );
    let list = cli.ok(&["endpoint", "list"]);
    assert!(list.contains("xoauth2 (microsoft)"), "{list}");

    let before = tokens.issued();
    migrate_and_verify(&cli, "m365", &[ALICE], &source, &target);
    // The app's token serves every connection (several folders at once).
    assert_eq!(tokens.issued() - before, 1);
    assert_no_secrets(&cli, &tokens, &[&add.stdout, &add.stderr, &test, &list]);
}

/// Google: the service account signs one assertion per mailbox (`sub`), so each of the two
/// mailboxes gets its own token; the token server checks the RS256 signature.
#[test]
fn google_service_account_gets_a_token_per_mailbox() {
    let tokens = token_server(Duration::from_secs(3600), None);
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 73);
    let key = fixture("oauth-test-service-account.json");
    let url = tokens.url("/token");
    let add = add_oauth_source(
        &cli,
        "gws",
        &source,
        &[
            "--oauth-provider",
            "google",
            "--service-account-file",
            &key,
            "--token-url",
            &url,
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let test = cli.ok(&["endpoint", "test", "gws", "--user", BOB]);
    assert!(test.contains("succeeded"), "{test}");
    // A mailbox outside the delegation: Google's words, exit 2 (the user's to fix).
    let outsider = cli.fails(
        &["endpoint", "test", "gws", "--user", "eve@example.test"],
        2,
    );
    assert!(
        outsider.contains("gws")
            && outsider.contains("google")
            && outsider.contains("unauthorized_client"),
        "{outsider}"
    );
    let before = tokens.issued();
    migrate_and_verify(&cli, "gws", &[ALICE, BOB], &source, &target);
    assert_eq!(tokens.issued() - before, 2, "one token per mailbox");
    assert_no_secrets(&cli, &tokens, &[&add.stdout, &add.stderr, &test, &outsider]);
    let key_text = std::fs::read_to_string(&key).expect("key");
    let private_key = key_text
        .lines()
        .find(|l| l.contains("private_key\""))
        .expect("private_key line");
    let body = &private_key[private_key.len() - 40..private_key.len() - 10];
    assert!(cli.state_files_containing(body.as_bytes()).is_empty());
}

const SAID: &str = "Endpoint corp could not get an OAuth access token from generic for alice@example.test: HTTP 401, invalid_client: AADSTS7000215: Invalid client secret provided; check the endpoint's --oauth-provider settings";

/// The generic grant with the wrong client secret: `endpoint test` and the batch fail
/// with one sentence naming the endpoint, the provider and its answer; nothing retries
/// the refused grant over and over. With the right secret the mailbox migrates.
#[test]
fn a_bad_client_secret_fails_with_the_providers_answer() {
    let tokens = token_server(Duration::from_secs(3600), None);
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 79);
    let wrong = cli.file("wrong.secret", b"not-the-secret\n");
    let url = tokens.url("/token");
    let add = add_oauth_source(
        &cli,
        "corp",
        &source,
        &[
            "--oauth-provider",
            "generic",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &wrong,
            "--token-url",
            &url,
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let said = cli.fails(&["endpoint", "test", "corp", "--user", ALICE], 2);
    assert!(said.contains(SAID), "{said}");
    assert!(!said.contains("not-the-secret"), "{said}");

    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\n{ALICE},{ALICE},\n").as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "corp", "--target", "tgt",
    ]);
    let refused_before = tokens.refused();
    let run = cli.run(&["batch", "start", "b", "--wait"]);
    // A failed mailbox: exit 1, its error in one sentence.
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(SAID), "{}", run.stderr);
    let users = cli.ok(&["batch", "users", "b"]);
    assert!(users.contains("Invalid client secret provided"), "{users}");
    assert!(
        tokens.refused() - refused_before <= 2,
        "a refused grant is not asked again and again: {}",
        tokens.refused() - refused_before
    );
    assert!(!run.stdout.contains("not-the-secret") && !run.stderr.contains("not-the-secret"));

    // The right secret: a new endpoint, the same mailbox.
    let right = cli.file("right.secret", CLIENT_SECRET.as_bytes());
    let add = add_oauth_source(
        &cli,
        "corp2",
        &source,
        &[
            "--oauth-provider",
            "generic",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &right,
            "--token-url",
            &url,
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let csv = cli.file(
        "users2.csv",
        format!("EmailAddress,UserName,Password\n{ALICE},{ALICE},\n").as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b2", "--csv", &csv, "--source", "corp2", "--target", "tgt",
    ]);
    cli.ok(&["batch", "start", "b2", "--wait"]);
    verify_users(
        &source,
        ALICE,
        &target,
        ALICE,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
}

/// Waits until batch `b` has finished a pass that started after `since` (a status's
/// `last_sync_finished`), and says it synced.
fn wait_for_pass(cli: &Cli, since: &serde_json::Value) {
    let done = cli.wait_for("b", Duration::from_secs(120), |s| {
        s["last_sync_finished"] != *since
            && s["mailboxes_syncing"] == 0
            && s["mailboxes_queued"] == 0
            && s["last_sync_finished"].is_string()
    });
    assert_eq!(done["mailboxes_failed"], 0, "{done:#}\n{}", cli.serve_log());
}

/// Under `serve`, tokens live across passes: Google's 3-second tokens have expired by the
/// next pass and are fetched anew (new mail arrives, nothing is lost).
#[test]
fn expired_tokens_are_fetched_anew_for_the_next_pass() {
    let tokens = token_server(Duration::from_secs(3), None);
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 83);
    let key = fixture("oauth-test-service-account.json");
    let url = tokens.url("/token");
    let add = add_oauth_source(
        &cli,
        "gws",
        &source,
        &[
            "--oauth-provider",
            "google",
            "--service-account-file",
            &key,
            "--token-url",
            &url,
            "--no-test",
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\n{ALICE},{ALICE},\n{BOB},{BOB},\n").as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "gws", "--target", "tgt",
    ]);
    let mut serve = cli.start_serve(&[]);
    let before = cli.status("b")["last_sync_finished"].clone();
    cli.ok(&["batch", "start", "b"]);
    wait_for_pass(&cli, &before);
    let first = tokens.issued();
    assert!(first >= 2, "{first}");

    // Past the tokens' life: new mail, a second pass, new tokens.
    std::thread::sleep(Duration::from_secs(4));
    for (i, user) in [ALICE, BOB].into_iter().enumerate() {
        let more = Corpus::generate(CorpusSpec::small(900 + i as u64).with_messages(5));
        source
            .append_messages(user, more.messages())
            .expect("new mail");
    }
    let before = cli.status("b")["last_sync_finished"].clone();
    cli.ok(&["batch", "sync", "b"]);
    wait_for_pass(&cli, &before);
    assert!(
        tokens.issued() >= first + 2,
        "expired tokens were fetched anew"
    );
    for user in [ALICE, BOB] {
        verify_users(
            &source,
            user,
            &target,
            user,
            &Verifier::new().with_folder_map(separator_mapping),
        )
        .expect("verifier reads both sides")
        .assert_equal();
    }
    let log = cli.serve_log();
    assert_no_secrets(&cli, &tokens, &[&log]);
    let _ = serve.kill();
    let _ = serve.wait();
}

/// A cached token the server no longer accepts (revoked): one retry with a fresh token,
/// and the pass goes on.
#[test]
fn a_revoked_token_is_retried_once_with_a_fresh_one() {
    let tokens = token_server(
        Duration::from_secs(3600),
        Some(token_server::MICROSOFT_SCOPE),
    );
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 89);
    let secret = cli.file("client.secret", CLIENT_SECRET.as_bytes());
    let url = tokens.url("/t/oauth2/v2.0/token");
    let add = add_oauth_source(
        &cli,
        "m365",
        &source,
        &[
            "--oauth-provider",
            "microsoft",
            "--tenant",
            "t",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &secret,
            "--token-url",
            &url,
            "--no-test",
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\n{ALICE},{ALICE},\n").as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "m365", "--target", "tgt",
    ]);
    let mut serve = cli.start_serve(&[]);
    let before = cli.status("b")["last_sync_finished"].clone();
    cli.ok(&["batch", "start", "b"]);
    wait_for_pass(&cli, &before);
    assert_eq!(tokens.issued(), 1);

    tokens.revoke_all();
    // The pass's finish time has whole seconds: let the next one differ.
    std::thread::sleep(Duration::from_millis(1100));
    let more = Corpus::generate(CorpusSpec::small(901).with_messages(5));
    source
        .append_messages(ALICE, more.messages())
        .expect("new mail");
    let before = cli.status("b")["last_sync_finished"].clone();
    cli.ok(&["batch", "sync", "b"]);
    wait_for_pass(&cli, &before);
    assert_eq!(tokens.issued(), 2, "one fresh token after the refusal");
    assert!(
        cli.serve_log().contains("retrying once with a fresh one"),
        "{}",
        cli.serve_log()
    );
    verify_users(
        &source,
        ALICE,
        &target,
        ALICE,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
    let _ = serve.kill();
    let _ = serve.wait();
}

/// The generic grant with a refresh token per mailbox from the migration file's
/// `RefreshToken` column: each mailbox gets its own token; the refresh tokens are sealed
/// in the store like passwords and never logged. A refresh token the server does not know
/// fails that mailbox with the server's words.
#[test]
fn generic_refresh_tokens_from_the_migration_file() {
    let tokens = token_server(Duration::from_secs(3600), None);
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 97);
    let secret = cli.file("client.secret", CLIENT_SECRET.as_bytes());
    let url = tokens.url("/token");
    let add = add_oauth_source(
        &cli,
        "corp",
        &source,
        &[
            "--oauth-provider",
            "generic",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &secret,
            "--token-url",
            &url,
            "--no-test",
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let csv = cli.file(
        "users.csv",
        format!(
            "EmailAddress,UserName,Password,RefreshToken\n{ALICE},{ALICE},,{ALICE_REFRESH}\n{BOB},{BOB},, {BOB_REFRESH} \n"
        )
        .as_bytes(),
    );
    let added = cli.run(&[
        "batch", "add", "b", "--csv", &csv, "--source", "corp", "--target", "tgt",
    ]);
    assert_eq!(added.code, 0, "{}{}", added.stdout, added.stderr);
    assert!(
        !added.stderr.contains("RefreshToken"),
        "not an ignored column: {}",
        added.stderr
    );
    let before = tokens.issued();
    let run = cli.run(&["batch", "start", "b", "--wait"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(tokens.issued() - before, 2, "one token per mailbox");
    for user in [ALICE, BOB] {
        verify_users(
            &source,
            user,
            &target,
            user,
            &Verifier::new().with_folder_map(separator_mapping),
        )
        .expect("verifier reads both sides")
        .assert_equal();
    }
    assert_no_secrets(
        &cli,
        &tokens,
        &[&run.stdout, &run.stderr, &added.stdout, &added.stderr],
    );
    for refresh in [ALICE_REFRESH, BOB_REFRESH] {
        assert!(
            cli.state_files_containing(refresh.as_bytes()).is_empty(),
            "{refresh} sealed"
        );
        assert!(!run.stderr.contains(refresh));
    }

    // A refresh token the server does not know: that mailbox fails, with its words.
    let csv = cli.file(
        "stale.csv",
        format!("EmailAddress,UserName,Password,RefreshToken\n{ALICE},{ALICE},,stale-token\n")
            .as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "stale", "--csv", &csv, "--source", "corp", "--target", "tgt",
    ]);
    let run = cli.run(&["batch", "start", "stale", "--wait"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("Endpoint corp could not get an OAuth access token from generic for alice@example.test: HTTP 400, invalid_grant: The refresh token is invalid or expired"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("stale-token"), "{}", run.stderr);
}

/// Tokens are kept sealed in the state directory: a second process (the next `batch
/// sync --wait`, a restarted `serve`) uses the app's token while it is fresh instead of
/// asking the provider again. The token is in no state file in the clear.
#[test]
fn a_fresh_token_outlives_the_process() {
    let tokens = token_server(
        Duration::from_secs(3600),
        Some(token_server::MICROSOFT_SCOPE),
    );
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 101);
    let secret = cli.file("client.secret", CLIENT_SECRET.as_bytes());
    let url = tokens.url("/t/oauth2/v2.0/token");
    let add = add_oauth_source(
        &cli,
        "m365",
        &source,
        &[
            "--oauth-provider",
            "microsoft",
            "--tenant",
            "t",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &secret,
            "--token-url",
            &url,
            "--no-test",
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    // The kit's app tokens introspect as Alice (see token_server.rs): her mailbox only.
    migrate_and_verify(&cli, "m365", &[ALICE], &source, &target);
    assert_eq!(tokens.issued(), 1, "one app token for the first run");

    // A new process: new mail, an incremental pass, and still the one token.
    let more = Corpus::generate(CorpusSpec::small(910).with_messages(4));
    source
        .append_messages(ALICE, more.messages())
        .expect("new mail");
    let run = cli.run(&["batch", "sync", "b", "--wait"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        tokens.issued(),
        1,
        "the second process reused the kept token"
    );
    verify_users(
        &source,
        ALICE,
        &target,
        ALICE,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
    // So does `serve`, started afresh.
    let mut serve = cli.start_serve(&[]);
    let before = cli.status("b")["last_sync_finished"].clone();
    std::thread::sleep(Duration::from_millis(1100));
    cli.ok(&["batch", "sync", "b"]);
    wait_for_pass(&cli, &before);
    assert_eq!(tokens.issued(), 1, "serve reused the kept token");
    let log = cli.serve_log();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_no_secrets(&cli, &tokens, &[&run.stdout, &run.stderr, &log]);
}

/// A provider that rotates refresh tokens answers each refresh with a new one and
/// refuses the old: the new one is kept sealed and redeemed by the next process (the
/// migration file's token no longer works by then). 1-second tokens make every run ask.
#[test]
fn a_rotated_refresh_token_is_kept_and_used_next_time() {
    let tokens = TokenServer::start(TokenServerConfig {
        required_scope: None,
        service_account: None,
        mailboxes: vec![ALICE.to_owned(), BOB.to_owned()],
        refresh_tokens: vec![
            (ALICE_REFRESH.to_owned(), ALICE.to_owned()),
            (BOB_REFRESH.to_owned(), BOB.to_owned()),
        ],
        app_user: None,
        lifetime: Duration::from_secs(1),
        rotate_refresh_tokens: true,
    });
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 103);
    let secret = cli.file("client.secret", CLIENT_SECRET.as_bytes());
    let url = tokens.url("/token");
    let add = add_oauth_source(
        &cli,
        "corp",
        &source,
        &[
            "--oauth-provider",
            "generic",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            &secret,
            "--token-url",
            &url,
            "--no-test",
        ],
    );
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let csv = cli.file(
        "users.csv",
        format!(
            "EmailAddress,UserName,Password,RefreshToken\n{ALICE},{ALICE},,{ALICE_REFRESH}\n{BOB},{BOB},,{BOB_REFRESH}\n"
        )
        .as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "corp", "--target", "tgt",
    ]);
    let first = cli.run(&["batch", "start", "b", "--wait"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let rotated = tokens.rotated_refresh_tokens();
    assert!(
        rotated.len() >= 2,
        "each mailbox's refresh token rotated: {rotated:?}"
    );

    // Past the access tokens' life; the file's refresh tokens are dead by now.
    std::thread::sleep(Duration::from_millis(1100));
    for (i, user) in [ALICE, BOB].into_iter().enumerate() {
        let more = Corpus::generate(CorpusSpec::small(920 + i as u64).with_messages(4));
        source
            .append_messages(user, more.messages())
            .expect("new mail");
    }
    let issued = tokens.issued();
    let second = cli.run(&["batch", "sync", "b", "--wait"]);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(
        tokens.issued() > issued,
        "the second run redeemed a refresh token"
    );
    assert_eq!(tokens.refused(), 0, "no dead refresh token was presented");
    for user in [ALICE, BOB] {
        verify_users(
            &source,
            user,
            &target,
            user,
            &Verifier::new().with_folder_map(separator_mapping),
        )
        .expect("verifier reads both sides")
        .assert_equal();
    }
    let outputs = [&first.stdout, &first.stderr, &second.stdout, &second.stderr];
    assert_no_secrets(&cli, &tokens, &outputs.map(String::as_str));
    for refresh in tokens.rotated_refresh_tokens() {
        assert!(
            cli.state_files_containing(refresh.as_bytes()).is_empty(),
            "{refresh} is sealed"
        );
        for out in outputs {
            assert!(!out.contains(&refresh), "{refresh} in output");
        }
    }
}

/// A token that expires in the middle of a pass: 1-second tokens, and a relay in front
/// of the source that cuts the connection every 8 commands (Exchange cuts at its own
/// count; 8 is fewer than the pass needs, now that folders the source never used are not
/// opened: 15 messages fill only some of the corpus's folders) and holds each reconnect
/// 1.5 s, so every reconnect comes after the token it had has expired
/// (Dovecot's `passdb oauth2` refuses expired ones). Each reconnect logs in with a fresh
/// token, no login is refused, and the mailbox is exact.
#[test]
fn a_token_that_expires_mid_pass_is_refreshed_on_reconnect() {
    use support::exchange_like::{ExchangeLike, ExchangeLikeConfig};
    let tokens = token_server(Duration::from_secs(1), Some(token_server::MICROSOFT_SCOPE));
    let cli = Cli::new();
    let (source, target) = servers(&cli, &tokens, 107);
    let relay = ExchangeLike::start(
        source.plain_addr(),
        ExchangeLikeConfig {
            dovecot_capabilities: true,
            drop_every: Some(8),
            delay_reconnects: Some(Duration::from_millis(1500)),
            ..ExchangeLikeConfig::polite()
        },
    )
    .expect("relay starts");
    let secret = cli.file("client.secret", CLIENT_SECRET.as_bytes());
    let url = tokens.url("/t/oauth2/v2.0/token");
    let port = relay.addr().port().to_string();
    let add = cli.run(&[
        "endpoint",
        "add",
        "m365",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "none",
        "--auth",
        "xoauth2",
        "--oauth-provider",
        "microsoft",
        "--tenant",
        "t",
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        &secret,
        "--token-url",
        &url,
        "--connections-per-mailbox",
        "1",
        "--no-test",
    ]);
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\n{ALICE},{ALICE},\n").as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "m365", "--target", "tgt",
    ]);
    let run = cli.run(&["batch", "start", "b", "--wait"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    verify_users(
        &source,
        ALICE,
        &target,
        ALICE,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
    let dropped = relay
        .stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 1, "the relay cut the pass's connection");
    assert!(
        tokens.issued() as u64 > dropped,
        "a fresh token for every reconnect: {} tokens, {dropped} cuts",
        tokens.issued()
    );
    assert!(
        run.stderr
            .contains("folder sync failed; retrying on new connections"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("refused the OAuth token"),
        "no reconnect logged in with an expired token:\n{}",
        run.stderr
    );
    assert_no_secrets(&cli, &tokens, &[&run.stdout, &run.stderr]);
}
