//! The database's own secret, and what erasing secrets from its files did.

use std::fmt;

/// The random key of the idempotency request hash (HMAC), created with the database and kept in
/// it. Its `Debug` shows no byte of it.
#[derive(Clone)]
pub struct IdempotencySecret([u8; 32]);

impl IdempotencySecret {
    /// The key bytes, for the keyed hash.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for IdempotencySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdempotencySecret(********)")
    }
}

impl IdempotencySecret {
    /// The secret as stored: exactly 32 bytes, else the database is corrupt.
    pub(super) fn from_stored(stored: Vec<u8>) -> super::Result<Self> {
        let bytes = stored.try_into().map_err(|v: Vec<u8>| {
            super::StoreError::Corrupt(format!(
                "the idempotency secret has {} bytes instead of 32",
                v.len()
            ))
        })?;
        Ok(IdempotencySecret(bytes))
    }
}

/// What [`Store::truncate_wal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalTruncation {
    /// The WAL was already empty: nothing was written since the last truncation.
    AlreadyEmpty,
    /// The WAL was copied into the database and truncated to zero bytes.
    Truncated,
    /// Readers still used the WAL: it was left as it is; try again later.
    Busy,
}
