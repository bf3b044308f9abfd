//! How literals may be sent: plain data shared by the capability set that decides it and
//! the encoder that obeys it, kept below both (and below the error type).

/// How literals may be sent (from the server's capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiteralMode {
    /// Synchronizing literals only: wait for `+` before each literal's body.
    #[default]
    Sync,
    /// LITERAL+ (RFC 7888): every literal non-synchronizing.
    Plus,
    /// LITERAL- (RFC 7888): non-synchronizing up to 4096 bytes, synchronizing above.
    Minus,
}

impl LiteralMode {
    /// The largest literal sent without waiting for `+` under LITERAL-.
    pub const LITERAL_MINUS_MAX: u64 = 4096;

    /// Whether a literal of `len` bytes may be sent without waiting for `+`.
    pub fn non_sync(&self, len: u64) -> bool {
        match self {
            LiteralMode::Sync => false,
            LiteralMode::Plus => true,
            LiteralMode::Minus => len <= Self::LITERAL_MINUS_MAX,
        }
    }
}
