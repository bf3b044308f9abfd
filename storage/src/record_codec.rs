//! Byte encodings of stored values.
//!
//! Every value starts with one schema-version byte. Hot records (uid-map runs, folder
//! state, journal entries, skipped items) use a compact binary form written with
//! [`Writer`] and read back with [`Reader`], which rejects truncated input and trailing
//! bytes. Low-volume records (endpoints, batches, mailboxes, pass history) are JSON after
//! the version byte, so they can gain fields without a format change.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The version byte of every value this build writes.
pub(crate) const VALUE_VERSION: u8 = 1;

/// Why a value failed to decode; turned into [`crate::StoreError::Corrupt`] by the caller,
/// which knows which record and directory it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends fields to a value buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose value starts with the current version byte.
    pub(crate) fn versioned(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 1);
        buf.push(VALUE_VERSION);
        Writer { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u32_fixed(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// LEB128: small numbers (UID deltas, sizes) take one to three bytes.
    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Signed deltas (target UIDs may go backwards between runs of a rebuilt map).
    pub(crate) fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    /// A tag byte (0 absent, 1 present) then the value.
    pub(crate) fn opt_varint(&mut self, v: Option<u64>) {
        match v {
            None => self.varint(0),
            Some(x) => {
                self.u8(1);
                self.varint(x);
            }
        }
    }

    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a value, never panicking on short or hostile input.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the version byte and returns a reader over the fields after it.
    pub(crate) fn versioned(value: &'a [u8]) -> Result<Self, DecodeError> {
        match value.split_first() {
            None => Err(DecodeError("empty value".into())),
            Some((&VALUE_VERSION, rest)) => Ok(Reader { rest }),
            Some((v, _)) => Err(DecodeError(format!(
                "value version {v}, this build reads {VALUE_VERSION}"
            ))),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| DecodeError("truncated value".into()))?;
        self.rest = rest;
        Ok(b)
    }

    pub(crate) fn u32_fixed(&mut self) -> Result<u32, DecodeError> {
        let raw = self.raw(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(raw);
        Ok(u32::from_be_bytes(a))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("varint overflows 64 bits".into()));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes".into()))
    }

    pub(crate) fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| DecodeError(format!("{v} does not fit 32 bits")))
    }

    pub(crate) fn zigzag(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub(crate) fn raw(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError(format!(
                "truncated value: {len} bytes wanted, {} left",
                self.rest.len()
            )));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError("length overflow".into()))?;
        self.raw(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("text is not UTF-8".into()))
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            t => Err(DecodeError(format!("option tag {t}"))),
        }
    }

    pub(crate) fn opt_varint(&mut self) -> Result<Option<u64>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.varint()?)),
            t => Err(DecodeError(format!("option tag {t}"))),
        }
    }

    /// Whether every byte has been read: fields added at the end of a record later are
    /// absent from values written before.
    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything not read yet.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Fails if anything is left: a value longer than its fields is corrupt.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} trailing bytes after the last field",
                self.rest.len()
            )))
        }
    }
}

/// Encodes a low-volume record as the version byte followed by JSON.
pub(crate) fn encode_json<T: Serialize>(record: &T, what: &str) -> crate::Result<Vec<u8>> {
    let mut buf = vec![VALUE_VERSION];
    // Our records are plain structs (strings, numbers, enums), which serde_json always
    // encodes; the error path exists so a future field type cannot panic here.
    serde_json::to_writer(&mut buf, record).map_err(|e| crate::StoreError::Encode {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    Ok(buf)
}

/// Decodes a record written by [`encode_json`].
pub(crate) fn decode_json<T: DeserializeOwned>(value: &[u8]) -> Result<T, DecodeError> {
    let reader = Reader::versioned(value)?;
    serde_json::from_slice(reader.rest).map_err(|e| DecodeError(format!("JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_round_trip() {
        let mut w = Writer::versioned(16);
        w.u8(7);
        w.u32_fixed(0xDEAD_BEEF);
        w.varint(300);
        w.zigzag(-5);
        w.str("INBOX/Été");
        w.opt_str(None);
        w.opt_varint(Some(0));
        let buf = w.finish();
        let mut r = Reader::versioned(&buf).expect("version");
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32_fixed(), Ok(0xDEAD_BEEF));
        assert_eq!(r.varint(), Ok(300));
        assert_eq!(r.zigzag(), Ok(-5));
        assert_eq!(r.string(), Ok("INBOX/Été".to_string()));
        assert_eq!(r.opt_string(), Ok(None));
        assert_eq!(r.opt_varint(), Ok(Some(0)));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert!(Reader::versioned(&[]).is_err());
        assert!(Reader::versioned(&[9, 1, 2]).is_err());
        let mut r = Reader::versioned(&[VALUE_VERSION, 0xff, 0xff]).expect("version");
        assert!(r.varint().is_err());
        let mut r = Reader::versioned(&[VALUE_VERSION, 0x05, b'a']).expect("version");
        assert!(r.bytes().is_err(), "length beyond the value");
        let overlong = [
            VALUE_VERSION,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ];
        let mut r = Reader::versioned(&overlong).expect("version");
        assert!(r.varint().is_err(), "more than 64 bits");
        let r = Reader::versioned(&[VALUE_VERSION, 1]).expect("version");
        assert!(r.finish().is_err(), "trailing bytes");
    }

    #[test]
    fn json_records_carry_the_version() {
        let buf = encode_json(&vec![1u32, 2], "test").expect("encodes");
        assert_eq!(buf[0], VALUE_VERSION);
        assert_eq!(decode_json::<Vec<u32>>(&buf), Ok(vec![1, 2]));
        let mut other = buf.clone();
        other[0] = 2;
        assert!(decode_json::<Vec<u32>>(&other).is_err());
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>(), s in any::<i64>()) {
            let mut w = Writer::versioned(20);
            w.varint(v);
            w.zigzag(s);
            let buf = w.finish();
            let mut r = Reader::versioned(&buf).expect("version");
            prop_assert_eq!(r.varint(), Ok(v));
            prop_assert_eq!(r.zigzag(), Ok(s));
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(mut r) = Reader::versioned(&data) {
                let _ = r.varint();
                let _ = r.string();
                let _ = r.opt_varint();
                let _ = r.zigzag();
            }
        }
    }
}
