//! What tests set up again and again: a database with one batch of one mailbox between
//! two plain endpoints. The store's own tests have it; other crates' tests and benches
//! get it with the `test-fixtures` feature (never in a build of the product).

use crate::{
    BatchSettings, Database, EndpointSettings, MailboxId, MigrationRow, NewMailbox, Secret,
    Security,
};

/// Adds endpoints `src` and `dst`, batch `b` between them and its one mailbox,
/// `a@example.test`; returns the mailbox's id.
pub fn one_mailbox(db: &Database) -> MailboxId {
    for (name, port) in [("src", 143), ("dst", 144)] {
        db.add_endpoint(
            &EndpointSettings::new(name, "127.0.0.1", port, Security::None),
            None,
        )
        .expect("endpoint");
    }
    let row = NewMailbox {
        row: MigrationRow {
            email_address: "a@example.test".into(),
            user_name: "a".into(),
            user_root: None,
            target_user_name: None,
        },
        password: Secret::new("pw"),
        target_password: None,
        refresh_token: None,
    };
    let batch = db
        .create_batch(&BatchSettings::new("b", "src", "dst"), &[row])
        .expect("batch");
    db.mailboxes(batch.id).expect("mailboxes")[0].id
}
