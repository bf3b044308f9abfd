//! Where one server response ends, in a relayed byte stream, without parsing it.
//!
//! The relay does not parse IMAP, but a cut-over must not drop `* BYE` into the middle of
//! a response: inside a FETCH literal the client would take the BYE's bytes for part of the
//! message and could cache a corrupted copy. So the server-to-client direction is watched
//! by this small scanner, which knows only what delimits responses: a line ends at LF,
//! unless it ends with a literal announcement `{N}` (or `~{N}`, RFC 3516), in which case N
//! bytes follow and the line goes on after them.

/// The longest announcement kept while a line is scanned: `{` + 20 digits + `}` + CR.
const TAIL: usize = 24;

/// Tracks response boundaries in server-to-client bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseBoundary {
    /// Literal bytes still to come.
    literal: u64,
    /// Bytes of the current line seen (0 at a boundary).
    line_len: u64,
    /// The last bytes of the current line (before LF), right-aligned.
    tail: [u8; TAIL],
}

impl Default for ResponseBoundary {
    fn default() -> Self {
        ResponseBoundary {
            literal: 0,
            line_len: 0,
            tail: [0; TAIL],
        }
    }
}

impl ResponseBoundary {
    /// True between two responses: the client has seen whole responses only.
    pub(crate) fn at_boundary(&self) -> bool {
        self.literal == 0 && self.line_len == 0
    }

    /// Consumes `bytes` (as sent to the client).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.step(rest);
            rest = &rest[n..];
        }
    }

    /// How many of `bytes` to send so that the client ends at a boundary: `Some(n)` when
    /// one is reached within them (n may be 0 when already there), else `None`. Does not
    /// consume; call [`ResponseBoundary::feed`] with what was actually sent.
    pub(crate) fn bytes_to_boundary(&self, bytes: &[u8]) -> Option<usize> {
        if self.at_boundary() {
            return Some(0);
        }
        let mut probe = *self;
        let mut done = 0;
        while done < bytes.len() {
            done += probe.step(&bytes[done..]);
            if probe.at_boundary() {
                return Some(done);
            }
        }
        None
    }

    /// Consumes a prefix of `bytes` (at least one byte): literal bytes, or a line up to and
    /// including its LF. Literal bytes — nearly all of a bulk FETCH — cost nothing per byte.
    fn step(&mut self, bytes: &[u8]) -> usize {
        if self.literal > 0 {
            let n = usize::try_from(self.literal)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.literal -= n as u64;
            return n;
        }
        let Some(lf) = bytes.iter().position(|&b| b == b'\n') else {
            self.push_tail(bytes);
            self.line_len += bytes.len() as u64;
            return bytes.len();
        };
        self.push_tail(&bytes[..lf]);
        match self.announced_literal() {
            // The line goes on after the literal: it stays open.
            Some(len) => {
                self.literal = len;
                self.line_len += lf as u64 + 1;
            }
            None => self.line_len = 0,
        }
        self.tail = [0; TAIL];
        lf + 1
    }

    /// Keeps the last [`TAIL`] bytes of the line.
    fn push_tail(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL {
            self.tail.copy_from_slice(&bytes[bytes.len() - TAIL..]);
        } else {
            self.tail.copy_within(bytes.len().., 0);
            self.tail[TAIL - bytes.len()..].copy_from_slice(bytes);
        }
    }

    /// The literal length if the line so far ends with `{N}` (CR optional).
    fn announced_literal(&self) -> Option<u64> {
        let mut end = TAIL;
        if self.tail[end - 1] == b'\r' {
            end -= 1;
        }
        if self.tail[end - 1] != b'}' {
            return None;
        }
        let digits_end = end - 1;
        let open = self.tail[..digits_end].iter().rposition(|&c| c == b'{')?;
        let digits = &self.tail[open + 1..digits_end];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(bytes: &[u8]) -> ResponseBoundary {
        let mut b = ResponseBoundary::default();
        b.feed(bytes);
        b
    }

    #[test]
    fn lines_and_literals() {
        assert!(fed(b"").at_boundary());
        assert!(fed(b"* 3 EXISTS\r\n").at_boundary());
        assert!(!fed(b"* 3 EXI").at_boundary());
        let fetch = b"* 1 FETCH (BODY[] {12}\r\nSubject: x\r\n UID 4)\r\n";
        for cut in 0..fetch.len() {
            let b = fed(&fetch[..cut]);
            assert_eq!(b.at_boundary(), cut == 0, "cut at {cut}");
        }
        assert!(fed(fetch).at_boundary());
        // A literal whose bytes look like a line end and an announcement.
        assert!(!fed(b"* 1 FETCH (BODY[] {5}\r\n{9}\r\n").at_boundary());
        assert!(fed(b"* 1 FETCH (BODY[] {5}\r\n{9}\r\n)\r\n").at_boundary());
        assert!(fed(b"* 1 FETCH (BINARY[] ~{2}\r\n\0\0)\r\n").at_boundary());
        assert!(fed(b"+ idling\r\n").at_boundary());
        assert!(fed(b"* OK {not a literal}\r\n").at_boundary());
        assert!(fed(b"* 0 FETCH (X {0}\r\n)\r\n").at_boundary());
    }

    #[test]
    fn byte_at_a_time_agrees_with_whole() {
        let stream =
            b"* 1 FETCH (BODY[] {3}\r\nabc FLAGS (\\Seen))\r\na1 OK done\r\n* 2 EXISTS\r\n";
        let mut one = ResponseBoundary::default();
        let mut boundaries = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            one.feed(std::slice::from_ref(b));
            if one.at_boundary() {
                boundaries.push(i + 1);
            }
        }
        assert_eq!(boundaries, [43, 55, 67]);
    }

    #[test]
    fn bytes_to_boundary_stops_after_the_response() {
        let mut b = fed(b"* 1 FETCH (BODY[] {3}\r\nab");
        let rest = b"c)\r\n* 2 EXISTS\r\n";
        assert_eq!(b.bytes_to_boundary(rest), Some(4));
        assert!(!b.at_boundary(), "probing does not consume");
        b.feed(&rest[..4]);
        assert!(b.at_boundary());
        assert_eq!(b.bytes_to_boundary(b"anything"), Some(0));
        assert_eq!(
            fed(b"* 1 FETCH (BODY[] {30}\r\n").bytes_to_boundary(b"short"),
            None
        );
    }
}
