//! A folder name as its hierarchy components, independent of any server's separator.

/// `["Archive", "2024"]` is `Archive.2024` on a Maildir++ server and `Archive/2024` on an
/// fs-layout one. `["INBOX"]` is the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderPath(pub Vec<String>);

impl FolderPath {
    pub fn new(components: &[&str]) -> Self {
        FolderPath(components.iter().map(|c| (*c).to_owned()).collect())
    }

    pub fn inbox() -> Self {
        FolderPath::new(&["INBOX"])
    }

    /// Splits a server's name at its separator (`None`: a flat namespace).
    pub fn parse(name: &str, separator: Option<char>) -> Self {
        match separator {
            Some(sep) => FolderPath(name.split(sep).map(str::to_owned).collect()),
            None => FolderPath(vec![name.to_owned()]),
        }
    }

    pub fn is_inbox(&self) -> bool {
        self.0.len() == 1 && self.0[0].eq_ignore_ascii_case("INBOX")
    }

    /// The name on a server with this separator (Unicode; encode with mUTF-7 for the wire).
    pub fn join(&self, separator: char) -> String {
        if self.is_inbox() {
            return "INBOX".to_owned();
        }
        self.0.join(&separator.to_string())
    }

    /// The first component that contains `separator`, if any: such a name cannot be stored
    /// on a server using that separator without an escape.
    pub fn component_containing(&self, separator: char) -> Option<&str> {
        self.0
            .iter()
            .find(|c| c.contains(separator))
            .map(String::as_str)
    }

    /// The parent folder, if this is nested.
    pub fn parent(&self) -> Option<FolderPath> {
        (self.0.len() > 1).then(|| FolderPath(self.0[..self.0.len() - 1].to_vec()))
    }
}

impl std::fmt::Display for FolderPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A neutral spelling for reports; '/' is not necessarily either server's separator.
        write!(f, "{}", self.0.join(" ▸ "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_parse() {
        let p = FolderPath::new(&["Archive", "2024"]);
        assert_eq!(p.join('.'), "Archive.2024");
        assert_eq!(p.join('/'), "Archive/2024");
        assert_eq!(FolderPath::parse("Archive/2024", Some('/')), p);
        assert_eq!(FolderPath::parse("inbox", Some('.')).join('/'), "INBOX");
        assert_eq!(
            FolderPath::new(&["v1.2"]).component_containing('.'),
            Some("v1.2")
        );
        assert_eq!(p.parent(), Some(FolderPath::new(&["Archive"])));
    }
}
