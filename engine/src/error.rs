//! The engine's one error type. Every message is one sentence that names the file, line and
//! column, or the server and folder, and says what to do; none ever contains a password.

/// Whose fault an error is, which decides the remedy and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request is wrong (a migration file, a flag, an exclusion pattern): exit code 2,
    /// the user fixes the input.
    UserInput,
    /// A server sent something we cannot use: the mailbox fails, the report names the server.
    Peer,
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

    // ---- Credentials (user input) ----
    #[error(
        "The admin format `{value}` is unknown: use dovecot, dovecot:SEPARATOR, sasl, exchange or mirapoint."
    )]
    UnknownAdminFormat { value: String },

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

    // ---- What a server listed (the peer's fault) ----
    #[error("The server {server} listed the folder `{}`, which {problem}: check the server's namespace configuration.", folder.escape_debug())]
    InvalidFolderListing {
        server: String,
        folder: String,
        problem: &'static str,
    },
}

impl Error {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidFolderListing { .. } => Fault::Peer,
            Self::RowLogin { problem, .. } => problem.fault(),
            _ => Fault::UserInput,
        }
    }

    /// Adds the migration-file row a credential error is about.
    pub(crate) fn for_row(self, row: &crate::migration_file::MailboxRow) -> Self {
        Self::RowLogin {
            line: row.line,
            email: row.email.clone(),
            problem: Box::new(self),
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
