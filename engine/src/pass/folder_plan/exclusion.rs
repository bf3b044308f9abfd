//! Folder exclusions (`--exclude`): by exact name, by glob, or by special use.
//!
//! A pattern is written the way the source server names the folder, relative to its
//! personal namespace (or to `UserRoot`) and with the source's own hierarchy separator,
//! e.g. `Junk Email`, `Archive/2019` on a `/` server or `Archive.2019` on a `.` server.
//! Matching goes component by component: a pattern of k components excludes every folder
//! whose first k components match, so a folder's subfolders are always excluded with it.
//!
//! Globs: `*` matches any run of characters and `?` one character, both *within one
//! component*: `*` never crosses the hierarchy separator, so `Archive*` excludes
//! `Archive`, `Archive 2019` and everything under them, while `*/Old` excludes `Old` one
//! level down only. Not crossing keeps a pattern's reach visible in its text; subfolders are
//! covered by the component rule above. `\*`, `\?` and `\\` are a literal `*`, `?` and `\`.
//! `INBOX` matches ignoring case, as IMAP requires; everything else is case-sensitive.
//!
//! Special use: `\Junk`, `\Trash`, ... exclude every source folder recognised as that use
//! (by attribute or by well-known name, see [`SpecialUse`]) and their subfolders.

use std::fmt;
use std::str::FromStr;

use super::special_use::SpecialUse;
use crate::error::Error;

/// One `--exclude` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// An exact name (escapes already resolved).
    Name(String),
    /// A pattern with `*` or `?` (kept as written, escapes included).
    Glob(String),
    /// Every folder with this special use.
    SpecialUse(SpecialUse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyRun,
    AnyOne,
}

impl FromStr for Exclusion {
    type Err = Error;

    fn from_str(pattern: &str) -> Result<Self, Error> {
        let invalid = |problem| Error::InvalidExclusion {
            pattern: pattern.to_owned(),
            problem,
        };
        if pattern.is_empty() {
            return Err(invalid("it is empty"));
        }
        if let Some(rest) = pattern.strip_prefix('\\')
            && rest.chars().next().is_some_and(char::is_alphabetic)
        {
            return SpecialUse::from_attribute(pattern)
                .map(Exclusion::SpecialUse)
                .ok_or_else(|| {
                    invalid("it is not a special use (use \\Sent, \\Drafts, \\Trash, \\Junk, \\Archive, \\All or \\Flagged)")
                });
        }
        let tokens = tokenize(pattern).ok_or_else(|| {
            invalid(
                "a `\\` must be followed by `*`, `?` or `\\` (or start a special use like \\Junk)",
            )
        })?;
        if tokens.iter().any(|t| !matches!(t, Token::Char(_))) {
            Ok(Exclusion::Glob(pattern.to_owned()))
        } else {
            Ok(Exclusion::Name(
                tokens
                    .into_iter()
                    .filter_map(|t| match t {
                        Token::Char(c) => Some(c),
                        Token::AnyRun | Token::AnyOne => None,
                    })
                    .collect(),
            ))
        }
    }
}

impl Exclusion {
    /// One `--include` value: a name or glob as for `--exclude`, written as the full
    /// source name (`Other Users/bob/Projects`); a special use is refused, since special
    /// folders are the user's own.
    pub fn parse_inclusion(pattern: &str) -> Result<Self, Error> {
        let invalid = |problem| Error::InvalidInclusion {
            pattern: pattern.to_owned(),
            problem,
        };
        match pattern.parse::<Exclusion>() {
            Ok(Exclusion::SpecialUse(_)) => Err(invalid(
                "it names a special use, and special folders are the user's own",
            )),
            Ok(inclusion) => Ok(inclusion),
            Err(Error::InvalidExclusion { problem, .. }) => Err(invalid(problem)),
            Err(other) => Err(other),
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Name(name) => {
                // Written back so that it parses to the same exclusion.
                for c in name.chars() {
                    if matches!(c, '*' | '?' | '\\') {
                        write!(f, "\\{c}")?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            }
            Exclusion::Glob(glob) => f.write_str(glob),
            Exclusion::SpecialUse(u) => write!(f, "{u}"),
        }
    }
}

/// Splits a pattern into tokens; `None` on a dangling or unknown escape.
fn tokenize(pattern: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => match chars.next() {
                Some(e @ ('*' | '?' | '\\')) => Token::Char(e),
                _ => return None,
            },
            '*' => Token::AnyRun,
            '?' => Token::AnyOne,
            c => Token::Char(c),
        });
    }
    Some(tokens)
}

impl Exclusion {
    /// Whether the folder at `path` (components relative to the personal namespace or
    /// `UserRoot`, INBOX spelled `INBOX`) or one of its ancestors is excluded by this
    /// name or glob. `separator` is the source's. Special uses are matched by the planner.
    pub(crate) fn matches_path(&self, path: &[String], separator: Option<char>) -> bool {
        let text = match self {
            Exclusion::Name(name) => name.as_str(),
            Exclusion::Glob(glob) => glob.as_str(),
            Exclusion::SpecialUse(_) => return false,
        };
        let components: Vec<&str> = match separator {
            Some(sep) => text.split(sep).collect(),
            None => vec![text],
        };
        if components.len() > path.len() {
            return false;
        }
        components
            .iter()
            .zip(path)
            .enumerate()
            .all(|(i, (pat, name))| {
                let inbox = i == 0 && name == "INBOX";
                match self {
                    Exclusion::Name(_) if inbox => pat.eq_ignore_ascii_case("INBOX"),
                    Exclusion::Name(_) => pat == name,
                    _ => match tokenize(pat) {
                        Some(tokens) if inbox => {
                            glob_match(&tokens, &name.chars().collect::<Vec<_>>())
                                || glob_match(&upper(&tokens), &name.chars().collect::<Vec<_>>())
                        }
                        Some(tokens) => glob_match(&tokens, &name.chars().collect::<Vec<_>>()),
                        None => false,
                    },
                }
            })
    }
}

fn upper(tokens: &[Token]) -> Vec<Token> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Char(c) => Token::Char(c.to_ascii_uppercase()),
            other => other.clone(),
        })
        .collect()
}

/// Iterative wildcard matching with single-star backtracking: linear in practice and
/// never exponential, whatever pattern a user writes.
fn glob_match(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::AnyRun) => {
                star = Some((t, n));
                t += 1;
            }
            Some(Token::AnyOne) => {
                t += 1;
                n += 1;
            }
            Some(Token::Char(c)) if *c == name[n] => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|tok| *tok == Token::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str, sep: char) -> Vec<String> {
        s.split(sep).map(str::to_owned).collect()
    }

    fn ex(s: &str) -> Exclusion {
        match s.parse() {
            Ok(e) => e,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(ex("Junk Email"), Exclusion::Name("Junk Email".into()));
        assert_eq!(ex("Arch*"), Exclusion::Glob("Arch*".into()));
        assert_eq!(ex("\\junk"), Exclusion::SpecialUse(SpecialUse::Junk));
        assert_eq!(ex("a\\*b"), Exclusion::Name("a*b".into()));
        assert_eq!(ex("\\\\server"), Exclusion::Name("\\server".into()));
        for e in ["Junk Email", "Arch*", "\\Junk", "a\\*b", "\\\\x"] {
            assert_eq!(ex(&ex(e).to_string()), ex(e));
        }
    }

    #[test]
    fn rejects_bad_patterns_with_a_message() {
        for bad in ["", "\\Spam", "a\\b", "trailing\\"] {
            let e = bad.parse::<Exclusion>().expect_err(bad);
            assert!(e.to_string().contains("--exclude"), "{e}");
        }
    }

    #[test]
    fn inclusions_take_names_and_globs_only() {
        assert_eq!(
            Exclusion::parse_inclusion("Other Users/bob").expect("a name"),
            Exclusion::Name("Other Users/bob".into())
        );
        assert_eq!(
            Exclusion::parse_inclusion("shared.*").expect("a glob"),
            Exclusion::Glob("shared.*".into())
        );
        for bad in ["", "\\Sent", "a\\b"] {
            let e = Exclusion::parse_inclusion(bad).expect_err(bad);
            assert!(e.to_string().contains("--include"), "{e}");
        }
    }

    #[test]
    fn exact_name_includes_subfolders_only() {
        let e = ex("Archive");
        assert!(e.matches_path(&path("Archive", '/'), Some('/')));
        assert!(e.matches_path(&path("Archive/2019", '/'), Some('/')));
        assert!(!e.matches_path(&path("Archive 2019", '/'), Some('/')));
        assert!(!e.matches_path(&path("archive", '/'), Some('/')));
        assert!(ex("inbox").matches_path(&path("INBOX/x", '/'), Some('/')));
    }

    #[test]
    fn star_does_not_cross_the_separator() {
        let e = ex("Arch*");
        assert!(e.matches_path(&path("Archive", '.'), Some('.')));
        assert!(e.matches_path(&path("Archive.2019", '.'), Some('.')));
        assert!(!e.matches_path(&path("Old.Archive", '.'), Some('.')));
        let e = ex("*.Old");
        assert!(e.matches_path(&path("Work.Old", '.'), Some('.')));
        assert!(e.matches_path(&path("Work.Old.x", '.'), Some('.')));
        assert!(!e.matches_path(&path("Work.A.Old", '.'), Some('.')));
        assert!(!e.matches_path(&path("Old", '.'), Some('.')));
        // With `/` as the source separator, `.` is an ordinary character.
        assert!(ex("Work.Old").matches_path(&path("Work.Old", '/'), Some('/')));
        assert!(!ex("Work.Old").matches_path(&path("Work/Old", '/'), Some('/')));
    }

    #[test]
    fn question_mark_and_escapes() {
        assert!(ex("20??").matches_path(&path("2019", '/'), Some('/')));
        assert!(!ex("20??").matches_path(&path("201", '/'), Some('/')));
        assert!(ex("a\\*").matches_path(&path("a*", '/'), Some('/')));
        assert!(!ex("a\\*").matches_path(&path("ab", '/'), Some('/')));
        assert!(ex("In*").matches_path(&path("INBOX", '/'), Some('/')));
    }

    #[test]
    fn glob_is_not_exponential() {
        let tokens = tokenize(&"*a".repeat(30)).expect("valid");
        let name: Vec<char> = "a".repeat(60).chars().chain(['b']).collect();
        assert!(!glob_match(&tokens, &name));
    }
}
