//! The migration file: the CSV that lists one mailbox per row (`EmailAddress`, `UserName`,
//! `Password`, and optionally `UserRoot`, `TargetUserName`, `TargetPassword`).
//!
//! [`MigrationFile::parse`] runs the checks Exchange Online's IMAP migration runs, each with
//! its own error naming the file, the line (and column where it applies) and the fix: not
//! empty, comma-separated, at most [`MAX_ROWS`] data rows, at most [`MAX_FILE_BYTES`], the
//! required headers present, every row as wide as the header; and beyond Exchange: valid
//! UTF-8, no duplicate header, a valid and unique `EmailAddress`, a non-empty `UserName`.
//!
//! Decisions, so that a file is read the same way every time:
//! - Encoding: UTF-8, with or without a byte-order mark. Anything else is rejected with the
//!   line of the first bad byte (Excel's plain "CSV" is Windows-1252: save as "CSV UTF-8").
//! - Blank lines, and rows whose every cell is empty or blank (Excel writes `,,` for rows
//!   that were once formatted), are skipped anywhere in the file, trailing ones included;
//!   they are not mailboxes and do not count toward [`MAX_ROWS`].
//! - Whitespace around `EmailAddress`, `UserName`, `UserRoot` and `TargetUserName` is
//!   trimmed (spreadsheets add it, no login has it). Passwords are taken byte for byte.
//! - Headers are matched exactly, after trimming surrounding spaces. A header that matches a
//!   known one only when case is ignored (`Emailaddress`, `Username`) is an error naming the
//!   likely typo, optional headers included: silently ignoring `TargetUsername` would log in
//!   to the wrong mailbox. Any other unknown column is accepted and reported in
//!   [`MigrationFile::ignored_columns`] so the caller can warn.
//! - `EmailAddress` duplicates are found ignoring case (`A@x.com` and `a@X.com` are one
//!   mailbox). An address needs one `@`, a non-empty local part without spaces and a domain
//!   of at least two dot-separated labels; internationalised (UTF-8) addresses are accepted.
//! - An empty `Password` cell is accepted: with admin credentials on the endpoint it is not
//!   used; without them the login step reports the row (see `credentials`).
//! - A NUL character cannot be sent over IMAP, so it is rejected in every cell; line breaks
//!   are rejected in every cell but passwords.

use std::collections::HashMap;

use crate::error::Error;
use crate::secret::Secret;

/// Exchange Online's limit on data rows (mailboxes) in one migration file.
pub const MAX_ROWS: usize = 50_000;
/// Exchange Online's limit on a migration file's size: 10 MB, read as 10 MiB.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// The header names, exactly as Exchange spells them.
pub const EMAIL_ADDRESS: &str = "EmailAddress";
pub const USER_NAME: &str = "UserName";
pub const PASSWORD: &str = "Password";
pub const USER_ROOT: &str = "UserRoot";
pub const TARGET_USER_NAME: &str = "TargetUserName";
pub const TARGET_PASSWORD: &str = "TargetPassword";
/// imapmirror's own column: the mailbox's OAuth refresh token, for an endpoint with
/// `--oauth-provider generic`; a secret like a password.
pub const REFRESH_TOKEN: &str = "RefreshToken";

const REQUIRED: [&str; 3] = [EMAIL_ADDRESS, USER_NAME, PASSWORD];
const KNOWN: [&str; 7] = [
    EMAIL_ADDRESS,
    USER_NAME,
    PASSWORD,
    USER_ROOT,
    TARGET_USER_NAME,
    TARGET_PASSWORD,
    REFRESH_TOKEN,
];

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One mailbox to migrate: a data row of the migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    /// The line the row starts on (1 is the header), for messages.
    pub line: u64,
    /// The target mailbox's address, trimmed; unique in the file ignoring case.
    pub email: String,
    /// The source login name (possibly a combined admin form), trimmed.
    pub user_name: String,
    /// The source password, exactly as written; may be empty.
    pub password: Secret,
    /// The source folder under which this user's folders live (virtual shared folders).
    pub user_root: Option<String>,
    /// The target login name, when it differs from `email`.
    pub target_user_name: Option<String>,
    /// The target password, when the target is not opened with admin credentials.
    pub target_password: Option<Secret>,
    /// The source mailbox's OAuth refresh token (`RefreshToken`), if given.
    pub refresh_token: Option<Secret>,
}

/// A migration file that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The name the file was given by (a path, as the user typed it).
    pub name: String,
    /// The mailboxes, in file order.
    pub rows: Vec<MailboxRow>,
    /// Header cells that name no known column (1-based column, header text); their cells are
    /// not read. The caller decides whether to warn.
    pub ignored_columns: Vec<(usize, String)>,
}

/// Where each known header sits in the file (0-based column).
#[derive(Debug, Default)]
struct Columns {
    email: usize,
    user_name: usize,
    password: usize,
    user_root: Option<usize>,
    target_user_name: Option<usize>,
    target_password: Option<usize>,
    refresh_token: Option<usize>,
    count: usize,
}

impl MigrationFile {
    /// Reads and checks a migration file. `name` is how the file is named in errors.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, Error> {
        let file = || name.to_owned();
        if bytes.len() > MAX_FILE_BYTES {
            return Err(Error::FileTooLarge {
                file: file(),
                size: bytes.len(),
                limit: MAX_FILE_BYTES,
            });
        }
        let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::FileEmpty { file: file() });
        }
        if let Err(e) = std::str::from_utf8(body) {
            let line =
                LineIndex::new(body).line(u64::try_from(e.valid_up_to()).unwrap_or(u64::MAX));
            return Err(Error::FileNotUtf8 { file: file(), line });
        }

        let lines = LineIndex::new(body);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(body);
        let mut records = reader.byte_records();

        let header = loop {
            match records.next() {
                Some(record) => {
                    let record = record.map_err(|e| csv_error(name, &lines, &e))?;
                    if !is_blank(&record) {
                        break record;
                    }
                }
                None => return Err(Error::FileEmpty { file: file() }),
            }
        };
        let header_line = lines.record_line(&header);
        let (columns, ignored_columns) = read_header(&header, header_line, name)?;

        let mut rows: Vec<MailboxRow> = Vec::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        for record in records {
            let record = record.map_err(|e| csv_error(name, &lines, &e))?;
            if is_blank(&record) {
                continue;
            }
            let line = lines.record_line(&record);
            if record.len() != columns.count {
                return Err(Error::WrongColumnCount {
                    file: file(),
                    line,
                    found: record.len(),
                    expected: columns.count,
                });
            }
            if rows.len() == MAX_ROWS {
                return Err(Error::TooManyRows {
                    file: file(),
                    line,
                    limit: MAX_ROWS,
                });
            }
            let row = read_row(&record, &columns, line, name)?;
            let key = row.email.to_lowercase();
            if let Some(first_line) = seen.get(&key) {
                return Err(Error::DuplicateEmailAddress {
                    file: file(),
                    line,
                    email: row.email,
                    first_line: *first_line,
                });
            }
            seen.insert(key, line);
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(Error::NoMailboxRows { file: file() });
        }
        Ok(Self {
            name: name.to_owned(),
            rows,
            ignored_columns,
        })
    }
}

/// Line numbers from byte offsets: the csv crate's own line count skips blank lines.
///
/// A line ends with `\n`, `\r\n` or a lone `\r` (old Mac files), as the csv crate reads
/// them; counting only `\n` gave every row of a CR-only file line 1 (found by fuzzing).
struct LineIndex<'b> {
    body: &'b [u8],
    /// The offset of the last byte of each line break.
    newlines: Vec<usize>,
}

impl<'b> LineIndex<'b> {
    fn new(body: &'b [u8]) -> Self {
        let ends_line = |i: usize, b: u8| {
            b == b'\n' || (b == b'\r' && body.get(i + 1).is_none_or(|&next| next != b'\n'))
        };
        Self {
            body,
            newlines: body
                .iter()
                .enumerate()
                .filter_map(|(i, &b)| ends_line(i, b).then_some(i))
                .collect(),
        }
    }

    /// The 1-based line holding byte `offset`.
    fn line(&self, offset: u64) -> u64 {
        let before = self
            .newlines
            .partition_point(|&nl| u64::try_from(nl).is_ok_and(|nl| nl < offset));
        u64::try_from(before).map_or(u64::MAX, |n| n.saturating_add(1))
    }

    /// A record's position is where the reader resumed, before the line breaks it skipped
    /// (blank lines, the `\n` of a CRLF); a record itself never starts with one.
    fn record_line(&self, record: &csv::ByteRecord) -> u64 {
        let Some(start) = record
            .position()
            .and_then(|p| usize::try_from(p.byte()).ok())
        else {
            return 0;
        };
        let skipped = self
            .body
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.line(u64::try_from(start + skipped).unwrap_or(u64::MAX))
    }
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record
        .iter()
        .all(|cell| cell.iter().all(u8::is_ascii_whitespace))
}

fn csv_error(name: &str, lines: &LineIndex<'_>, e: &csv::Error) -> Error {
    let line = e.position().map_or(0, |p| lines.line(p.byte()));
    Error::MalformedCsv {
        file: name.to_owned(),
        line,
        problem: match e.kind() {
            csv::ErrorKind::Utf8 { .. } => "it is not UTF-8 text".to_owned(),
            csv::ErrorKind::Io(_) => "it could not be read".to_owned(),
            _ => "it is not valid CSV".to_owned(),
        },
    }
}

/// The cell as text; the whole file was checked to be UTF-8, so this only fails on a bug.
fn cell<'r>(
    record: &'r csv::ByteRecord,
    column: usize,
    line: u64,
    name: &str,
) -> Result<&'r str, Error> {
    let bytes = record.get(column).unwrap_or_default();
    std::str::from_utf8(bytes).map_err(|_| Error::FileNotUtf8 {
        file: name.to_owned(),
        line,
    })
}

fn read_header(
    header: &csv::ByteRecord,
    line: u64,
    name: &str,
) -> Result<(Columns, Vec<(usize, String)>), Error> {
    let file = || name.to_owned();
    let cells: Vec<&str> = (0..header.len())
        .map(|i| cell(header, i, line, name).map(str::trim))
        .collect::<Result<_, _>>()?;

    if cells.len() < 2 {
        // One column: the file uses another delimiter (Excel in many locales writes `;`).
        let found = cells
            .first()
            .and_then(|c| c.chars().find(|ch| matches!(ch, ';' | '\t' | '|')));
        return Err(Error::NotCommaSeparated {
            file: file(),
            line,
            found,
        });
    }

    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut ignored = Vec::new();
    for (i, &text) in cells.iter().enumerate() {
        if let Some(&known) = KNOWN.iter().find(|&&k| k == text) {
            if let Some(&first) = position.get(known) {
                return Err(Error::DuplicateHeader {
                    file: file(),
                    line,
                    header: known,
                    first_column: first + 1,
                    column: i + 1,
                });
            }
            position.insert(known, i);
        } else if let Some(&known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(text)) {
            return Err(Error::MisspelledHeader {
                file: file(),
                line,
                column: i + 1,
                found: header_text(header, i),
                expected: known,
            });
        } else {
            ignored.push((i + 1, text.to_owned()));
        }
    }
    for required in REQUIRED {
        if !position.contains_key(required) {
            return Err(Error::MissingHeader {
                file: file(),
                line,
                header: required,
            });
        }
    }
    let get = |h: &str| position.get(h).copied();
    let columns = Columns {
        email: get(EMAIL_ADDRESS).unwrap_or_default(),
        user_name: get(USER_NAME).unwrap_or_default(),
        password: get(PASSWORD).unwrap_or_default(),
        user_root: get(USER_ROOT),
        target_user_name: get(TARGET_USER_NAME),
        target_password: get(TARGET_PASSWORD),
        refresh_token: get(REFRESH_TOKEN),
        count: cells.len(),
    };
    Ok((columns, ignored))
}

/// The header cell as written (untrimmed), so the message shows the stray spaces.
fn header_text(header: &csv::ByteRecord, column: usize) -> String {
    String::from_utf8_lossy(header.get(column).unwrap_or_default()).into_owned()
}

fn read_row(
    record: &csv::ByteRecord,
    columns: &Columns,
    line: u64,
    name: &str,
) -> Result<MailboxRow, Error> {
    let text = |column: usize, header: &'static str| -> Result<String, Error> {
        let value = cell(record, column, line, name)?.trim();
        if let Some(c) = value.chars().find(|c| matches!(c, '\0' | '\r' | '\n')) {
            return Err(Error::ControlCharacterInCell {
                file: name.to_owned(),
                line,
                column: column + 1,
                header,
                character: c,
            });
        }
        Ok(value.to_owned())
    };
    let optional = |column: Option<usize>, header| -> Result<Option<String>, Error> {
        Ok(match column {
            Some(c) => Some(text(c, header)?).filter(|v| !v.is_empty()),
            None => None,
        })
    };
    let secret = |column: usize, header: &'static str| -> Result<Secret, Error> {
        let value = cell(record, column, line, name)?;
        if value.contains('\0') {
            return Err(Error::ControlCharacterInCell {
                file: name.to_owned(),
                line,
                column: column + 1,
                header,
                character: '\0',
            });
        }
        Ok(Secret::new(value))
    };

    let email = text(columns.email, EMAIL_ADDRESS)?;
    if let Err(problem) = check_address(&email) {
        return Err(Error::InvalidEmailAddress {
            file: name.to_owned(),
            line,
            column: columns.email + 1,
            value: email,
            problem,
        });
    }
    let user_name = text(columns.user_name, USER_NAME)?;
    if user_name.is_empty() {
        return Err(Error::EmptyCell {
            file: name.to_owned(),
            line,
            column: columns.user_name + 1,
            header: USER_NAME,
        });
    }
    let target_password = match columns.target_password {
        Some(c) => Some(secret(c, TARGET_PASSWORD)?).filter(|s| !s.is_empty()),
        None => None,
    };
    Ok(MailboxRow {
        line,
        email,
        user_name,
        password: secret(columns.password, PASSWORD)?,
        user_root: optional(columns.user_root, USER_ROOT)?,
        target_user_name: optional(columns.target_user_name, TARGET_USER_NAME)?,
        target_password,
        // A token is one line; blanks around it are a spreadsheet's.
        refresh_token: match columns.refresh_token {
            Some(c) => Some(Secret::new(text(c, REFRESH_TOKEN)?)).filter(|s| !s.is_empty()),
            None => None,
        },
    })
}

/// Checks the shape of an address (RFC 5321 dot-atom local part, RFC 6531 UTF-8 allowed);
/// the `Err` is the clause that says what is wrong.
fn check_address(address: &str) -> Result<(), &'static str> {
    if address.is_empty() {
        return Err("it is empty");
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("it has no `@`");
    };
    if local.contains('@') {
        return Err("it has more than one `@`");
    }
    if local.is_empty() {
        return Err("nothing comes before the `@`");
    }
    if local.len() > 64 {
        return Err("the part before the `@` is longer than 64 bytes");
    }
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    if !local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(atext))
    {
        return Err(
            "the part before the `@` has a space, a quote, a leading, trailing or double dot, or another character addresses cannot hold",
        );
    }
    if domain.len() > 253 {
        return Err("the domain is longer than 253 bytes");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain after the `@` has no dot");
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return Err("the domain after the `@` is not a valid host name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "users.csv";

    fn parse(text: &str) -> Result<MigrationFile, Error> {
        MigrationFile::parse(text.as_bytes(), NAME)
    }

    fn ok(text: &str) -> MigrationFile {
        match parse(text) {
            Ok(f) => f,
            Err(e) => panic!("expected a valid file, got: {e}"),
        }
    }

    fn err(text: &str) -> Error {
        match parse(text) {
            Ok(f) => panic!("expected an error, got {} rows", f.rows.len()),
            Err(e) => e,
        }
    }

    /// Every message names the file, is one sentence, and never shows a password.
    fn assert_message(e: &Error, must_contain: &[&str]) {
        let msg = e.to_string();
        assert!(msg.contains(NAME), "no file name in: {msg}");
        assert!(msg.ends_with('.'), "not a sentence: {msg}");
        assert!(!msg.contains("s3cret"), "password leaked: {msg}");
        for part in must_contain {
            assert!(
                msg.to_lowercase().contains(&part.to_lowercase()),
                "{part:?} missing from: {msg}"
            );
        }
    }

    #[test]
    fn happy_path_lf() {
        let f = ok("EmailAddress,UserName,Password\n\
                    alberta@contoso.com,alberta,s3cret\n\
                    bobby@contoso.com,bobby,pw2\n");
        assert_eq!(f.name, NAME);
        assert_eq!(f.rows.len(), 2);
        let r = &f.rows[0];
        assert_eq!(r.line, 2);
        assert_eq!(r.email, "alberta@contoso.com");
        assert_eq!(r.user_name, "alberta");
        assert_eq!(r.password.expose(), "s3cret");
        assert_eq!(r.user_root, None);
        assert_eq!(f.rows[1].line, 3);
        assert!(f.ignored_columns.is_empty());
        assert!(!format!("{f:?}").contains("s3cret"));
    }

    #[test]
    fn cr_only_line_breaks_give_each_row_its_own_line() {
        let f = MigrationFile::parse(
            b"EmailAddress,UserName,Password\ra@contoso.com,a,x\r\x0bb@contoso.com,b,y\r\n",
            "users.csv",
        )
        .expect("a CR-only file is valid");
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.rows[0].line, 2);
        assert_eq!(f.rows[1].line, 3);
    }

    #[test]
    fn happy_path_crlf_with_bom_and_no_final_newline() {
        let mut bytes = BOM.to_vec();
        bytes.extend_from_slice(
            b"EmailAddress,UserName,Password\r\na@contoso.com,a,p1\r\nb@contoso.com,b,p2",
        );
        let f = MigrationFile::parse(&bytes, NAME).expect("valid file");
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.rows[1].password.expose(), "p2");
        assert_eq!(f.rows[1].line, 3);
    }

    #[test]
    fn refresh_tokens_are_an_optional_secret_column() {
        let f = ok("EmailAddress,UserName,Password,RefreshToken\n\
                    a@contoso.com,a,, 1//tok \n\
                    b@contoso.com,b,x,\n");
        assert!(f.ignored_columns.is_empty());
        assert_eq!(
            f.rows[0].refresh_token.as_ref().map(Secret::expose),
            Some("1//tok")
        );
        assert!(f.rows[1].refresh_token.is_none());
        assert!(!format!("{:?}", f.rows[0]).contains("1//tok"));
    }

    #[test]
    fn passwords_keep_commas_quotes_spaces_and_line_breaks() {
        let f = ok("EmailAddress,UserName,Password\n\
                    a@contoso.com,a,\"p,w\"\"d \"\n\
                    b@contoso.com,b,\" lead\"\n\
                    c@contoso.com,c,\"two\nlines\"\n\
                    d@contoso.com,d,é€😀\n");
        assert_eq!(f.rows[0].password.expose(), "p,w\"d ");
        assert_eq!(f.rows[1].password.expose(), " lead");
        assert_eq!(f.rows[2].password.expose(), "two\nlines");
        assert_eq!(f.rows[3].password.expose(), "é€😀");
        assert_eq!(
            f.rows[3].line, 6,
            "a quoted line break moves the next row down"
        );
    }

    #[test]
    fn optional_columns_in_any_order_and_extra_columns_ignored() {
        let f = ok(
            "Password,TargetPassword,Notes,UserRoot,EmailAddress,TargetUserName,UserName\n\
                    p,tp,hello,/users/alberta,a@contoso.com,agreene,alberta\n\
                    p,,,,b@contoso.com,,bobby\n",
        );
        let r = &f.rows[0];
        assert_eq!(r.user_root.as_deref(), Some("/users/alberta"));
        assert_eq!(r.target_user_name.as_deref(), Some("agreene"));
        assert_eq!(r.target_password.as_ref().map(Secret::expose), Some("tp"));
        let r = &f.rows[1];
        assert_eq!(
            (r.user_root.as_ref(), r.target_user_name.as_ref()),
            (None, None)
        );
        assert!(r.target_password.is_none());
        assert_eq!(f.ignored_columns, vec![(3, "Notes".to_owned())]);
    }

    #[test]
    fn blank_lines_and_empty_rows_are_skipped() {
        let f = ok(
            "\nEmailAddress,UserName,Password\n\na@contoso.com,a,p\n,,\n  , ,\nb@contoso.com,b,p\n\n\n",
        );
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.rows[0].line, 4);
        assert_eq!(f.rows[1].line, 7);
    }

    #[test]
    fn whitespace_is_trimmed_except_in_passwords() {
        let f = ok(" EmailAddress , UserName ,Password\n  a@contoso.com , alberta , p \n");
        assert_eq!(f.rows[0].email, "a@contoso.com");
        assert_eq!(f.rows[0].user_name, "alberta");
        assert_eq!(f.rows[0].password.expose(), " p ");
    }

    #[test]
    fn empty_file() {
        for text in ["", "\n\n", "\u{feff}", "  \r\n"] {
            let e = err(text);
            assert!(matches!(e, Error::FileEmpty { .. }), "{text:?}: {e}");
            assert_message(&e, &["empty"]);
        }
    }

    #[test]
    fn header_only_file() {
        let e = err("EmailAddress,UserName,Password\n,,\n");
        assert!(matches!(e, Error::NoMailboxRows { .. }));
        assert_message(&e, &["no mailbox"]);
    }

    #[test]
    fn semicolon_separated() {
        let e = err("EmailAddress;UserName;Password\na@contoso.com;a;p\n");
        assert!(matches!(
            e,
            Error::NotCommaSeparated {
                found: Some(';'),
                ..
            }
        ));
        assert_message(&e, &["line 1", "comma", "`;`"]);
    }

    #[test]
    fn too_many_rows() {
        let mut text = String::from("EmailAddress,UserName,Password\n");
        for i in 0..=MAX_ROWS {
            text.push_str(&format!("u{i}@contoso.com,u{i},p\n"));
        }
        let e = err(&text);
        assert!(matches!(e, Error::TooManyRows { line, .. } if line == MAX_ROWS as u64 + 2));
        assert_message(&e, &["50000", "line 50002"]);
        // Exactly the limit is fine.
        let cut = text.rfind("u50000@").expect("last row present");
        assert_eq!(ok(&text[..cut]).rows.len(), MAX_ROWS);
    }

    #[test]
    fn too_large() {
        let mut text = String::from("EmailAddress,UserName,Password,Notes\n");
        let padding = "x".repeat(1000);
        let mut i = 0;
        while text.len() <= MAX_FILE_BYTES {
            text.push_str(&format!("u{i}@contoso.com,u{i},p,{padding}\n"));
            i += 1;
        }
        let e = err(&text);
        assert!(matches!(e, Error::FileTooLarge { .. }));
        assert_message(&e, &["10485760"]);
    }

    #[test]
    fn missing_required_header() {
        let e = err("EmailAddress,Login,Password\na@contoso.com,a,p\n");
        assert!(matches!(
            e,
            Error::MissingHeader {
                header: USER_NAME,
                ..
            }
        ));
        assert_message(&e, &["UserName", "line 1"]);
    }

    #[test]
    fn header_differing_in_case_or_spaces_is_named_as_typo() {
        let e = err("Emailaddress,UserName,Password\na@contoso.com,a,p\n");
        assert!(matches!(
            e,
            Error::MisspelledHeader {
                column: 1,
                expected: EMAIL_ADDRESS,
                ..
            }
        ));
        assert_message(&e, &["`Emailaddress`", "`EmailAddress`", "column 1"]);
        let e = err("EmailAddress,UserName,Password,TargetUsername\na@contoso.com,a,p,x\n");
        assert!(matches!(
            e,
            Error::MisspelledHeader {
                column: 4,
                expected: TARGET_USER_NAME,
                ..
            }
        ));
        // Surrounding spaces alone are tolerated: the header is the same word.
        assert_eq!(
            ok("EmailAddress , UserName,Password\na@contoso.com,a,p\n")
                .rows
                .len(),
            1
        );
    }

    #[test]
    fn duplicate_header() {
        let e = err("EmailAddress,UserName,Password,UserName\na@contoso.com,a,p,b\n");
        assert!(matches!(
            e,
            Error::DuplicateHeader {
                first_column: 2,
                column: 4,
                ..
            }
        ));
        assert_message(&e, &["UserName", "column 2", "column 4"]);
    }

    #[test]
    fn wrong_column_count_names_the_line() {
        let e = err("EmailAddress,UserName,Password\na@contoso.com,a,p\nb@contoso.com,b\n");
        assert!(matches!(
            e,
            Error::WrongColumnCount {
                line: 3,
                found: 2,
                expected: 3,
                ..
            }
        ));
        assert_message(&e, &["line 3", "2 ", "3 "]);
        let e = err("EmailAddress,UserName,Password\na@contoso.com,a,p,extra\n");
        assert!(matches!(
            e,
            Error::WrongColumnCount {
                line: 2,
                found: 4,
                ..
            }
        ));
    }

    #[test]
    fn duplicate_email_address_ignoring_case() {
        let e = err(
            "EmailAddress,UserName,Password\nA@Contoso.com,a,s3cret\nb@contoso.com,b,p\na@contoso.COM,a2,s3cret\n",
        );
        assert!(matches!(
            e,
            Error::DuplicateEmailAddress {
                line: 4,
                first_line: 2,
                ..
            }
        ));
        assert_message(&e, &["line 4", "line 2", "a@contoso.COM"]);
    }

    #[test]
    fn invalid_email_address() {
        for bad in [
            "alberta",
            "alberta@",
            "@contoso.com",
            "al berta@contoso.com",
            "a@@contoso.com",
            "a@b@contoso.com",
            "a@localhost",
            "a..b@contoso.com",
            ".a@contoso.com",
            "a@contoso..com",
            "a@-contoso.com",
            "a@contoso_x.com",
            "a\"b@contoso.com",
            "",
        ] {
            let text = format!("EmailAddress,UserName,Password\n{bad},a,s3cret\n");
            let e = match parse(&text) {
                Ok(_) => panic!("{bad:?} was accepted"),
                Err(e) => e,
            };
            assert!(
                matches!(
                    e,
                    Error::InvalidEmailAddress {
                        line: 2,
                        column: 1,
                        ..
                    }
                ),
                "{bad:?}: {e}"
            );
            assert_message(&e, &["line 2", "column 1"]);
        }
        for good in [
            "a.b+tag@contoso.com",
            "o'neil@sub.contoso.co.uk",
            "josé@exämple.de",
        ] {
            ok(&format!("EmailAddress,UserName,Password\n{good},a,p\n"));
        }
    }

    #[test]
    fn empty_user_name() {
        let e = err("EmailAddress,UserName,Password\na@contoso.com, ,s3cret\n");
        assert!(matches!(
            e,
            Error::EmptyCell {
                line: 2,
                column: 2,
                header: USER_NAME,
                ..
            }
        ));
        assert_message(&e, &["UserName", "line 2", "column 2"]);
    }

    #[test]
    fn empty_password_is_accepted_for_admin_endpoints() {
        let f = ok("EmailAddress,UserName,Password\na@contoso.com,a,\n");
        assert!(f.rows[0].password.is_empty());
    }

    #[test]
    fn line_break_in_user_name_and_nul_in_password_are_rejected() {
        let e = err("EmailAddress,UserName,Password\na@contoso.com,\"a\nb\",p\n");
        assert!(matches!(
            e,
            Error::ControlCharacterInCell {
                line: 2,
                column: 2,
                ..
            }
        ));
        let e = err("EmailAddress,UserName,Password\na@contoso.com,a,s3cret\0x\n");
        assert!(matches!(
            e,
            Error::ControlCharacterInCell {
                column: 3,
                header: PASSWORD,
                ..
            }
        ));
        assert_message(&e, &["line 2", "column 3"]);
    }

    #[test]
    fn not_utf8_names_the_line() {
        let bytes = b"EmailAddress,UserName,Password\na@contoso.com,a,p\nb@contoso.com,Jos\xe9,p\n";
        let e = MigrationFile::parse(bytes, NAME).expect_err("latin-1");
        assert!(matches!(e, Error::FileNotUtf8 { line: 3, .. }));
        assert_message(&e, &["line 3", "UTF-8"]);
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [
            &b"\"\"\"\"\""[..],
            b",,,,\n\"",
            b"EmailAddress,UserName,Password\n\"a@contoso.com,a,p",
            b"\xEF\xBB",
            b"\r\r\r,",
        ] {
            let _ = MigrationFile::parse(bytes, NAME);
        }
    }

    fn csv_ish() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            "EmailAddress",
            "UserName",
            "Password",
            "UserRoot",
            "emailaddress",
            ",",
            ",",
            "\"",
            "\n",
            "\r\n",
            " ",
            "a@b.co",
            "A@B.CO",
            "x",
            "\u{feff}",
            ";",
            "\0",
            "é",
        ]);
        prop::collection::vec(piece, 0..60).prop_map(|p| p.concat().into_bytes())
    }

    proptest::proptest! {
        /// The fuzz target's promises (fuzz/fuzz_targets/migration_file.rs), on stable.
        #[test]
        fn any_input_gives_valid_rows_or_a_sentence(
            bytes in proptest::prop_oneof![csv_ish(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)]
        ) {
            match MigrationFile::parse(&bytes, NAME) {
                Ok(f) => {
                    let mut seen = std::collections::HashSet::new();
                    for r in &f.rows {
                        proptest::prop_assert!(seen.insert(r.email.to_lowercase()));
                        proptest::prop_assert!(check_address(&r.email).is_ok());
                        proptest::prop_assert!(!r.user_name.is_empty());
                    }
                    proptest::prop_assert!(!f.rows.is_empty());
                }
                Err(e) => assert_message(&e, &[]),
            }
        }
    }
}
