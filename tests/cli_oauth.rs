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
        app_user: Some(ALICE.to_owned()),
        lifetime,
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
    assert!(test.contains("succeeded"), "{test}");
    let list = cli.ok(&["endpoint", "list"]);
    assert!(list.contains("xoauth2 (microsoft)"), "{list}");

    let before = tokens.issued();
    migrate_and_verify(&cli, "m365", &[ALICE], &source, &target);
    // The app's token serves every connection (several folders at once).
    assert_eq!(tokens.issued() - before, 1);
    assert_no_secrets(&cli, &tokens, &[&add.stdout, &add.stderr, &test, &list]);
}
