//! UID SEARCH results, from `* SEARCH` or `* ESEARCH` (RFC 4731).

use crate::types::{Esearch, Search};

use super::uid_ranges::UidRanges;

/// What UID SEARCH found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchResult {
    /// The matching UIDs (for ESEARCH: `ALL`, expanded).
    pub uids: Vec<u32>,
    /// The highest mod-sequence of the matches (CONDSTORE `MODSEQ` criterion).
    pub modseq: Option<u64>,
    /// ESEARCH `COUNT`.
    pub count: Option<u32>,
    /// ESEARCH `MIN`.
    pub min: Option<u32>,
    /// ESEARCH `MAX`.
    pub max: Option<u32>,
}

impl SearchResult {
    pub(crate) fn add_search(&mut self, s: &Search<'_>) {
        self.uids.extend(s.nums.iter());
        if s.modseq.is_some() {
            self.modseq = s.modseq;
        }
    }

    pub(crate) fn add_esearch(&mut self, e: &Esearch<'_>) {
        if let Some(all) = e.all() {
            self.uids.extend(UidRanges::from_set(&all).iter());
        }
        self.count = e.count().or(self.count);
        self.min = e.min().or(self.min);
        self.max = e.max().or(self.max);
        self.modseq = e.modseq().or(self.modseq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Data, Response, parse_response};

    #[test]
    fn search_and_esearch_fill_the_result() {
        let mut r = SearchResult::default();
        let Ok(Response::Data(Data::Search(s))) =
            parse_response(b"* SEARCH 2 5 9 (MODSEQ 917162500)\r\n")
        else {
            panic!("not SEARCH")
        };
        r.add_search(&s);
        assert_eq!(r.uids, vec![2, 5, 9]);
        assert_eq!(r.modseq, Some(917_162_500));

        let mut r = SearchResult::default();
        let Ok(Response::Data(Data::Esearch(e))) =
            parse_response(b"* ESEARCH (TAG \"A7\") UID COUNT 4 MIN 3 MAX 12 ALL 3:5,12\r\n")
        else {
            panic!("not ESEARCH")
        };
        r.add_esearch(&e);
        assert_eq!(r.uids, vec![3, 4, 5, 12]);
        assert_eq!((r.count, r.min, r.max), (Some(4), Some(3), Some(12)));
    }
}
