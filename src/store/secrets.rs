//! Secrets at rest: erasing expired passwords, and making sure an erased one is gone from the
//! database files too.
//!
//! With `secure_delete` (set on every connection) SQLite overwrites what it deletes, so an
//! erased password is gone from the database file once the page is written back. But the WAL
//! keeps every page image written since it was last reset, the ones that still hold the
//! password included, and a normal checkpoint only copies them, it does not remove them. So
//! after erasing, the WAL is checkpointed whole and truncated to zero bytes.

use super::{Result, Store, Write, now_ms};

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

impl Store {
    /// Erases passwords whose time is up; returns how many were erased. Follow it with
    /// [`Store::truncate_wal`] so that they leave the WAL too.
    pub async fn purge_expired_secrets(&self) -> Result<u64> {
        self.write(|conn| {
            let done = conn
                .prepare_cached(
                    "UPDATE job_secrets SET password = NULL WHERE password IS NOT NULL AND expires_at <= ?",
                )?
                .execute([now_ms()])?;
            Ok(Write::Keep(done as u64))
        })
        .await
    }

    /// Checkpoints the WAL and truncates it, once what is queued is committed, unless it is
    /// already empty. Writes wait meanwhile (at most a fraction of a second for readers: then
    /// the answer is [`WalTruncation::Busy`]). Passwords erased before the call (by
    /// [`Store::purge_expired_secrets`], or when a job with a chosen password succeeded) are in
    /// no database file afterwards, unless the answer is `Busy`.
    pub async fn truncate_wal(&self) -> Result<WalTruncation> {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        // Writes that changed nothing add nothing to the WAL: an idle service skips the work.
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() == 0) {
            return Ok(WalTruncation::AlreadyEmpty);
        }
        Ok(if self.writer.truncate_wal().await? {
            WalTruncation::Truncated
        } else {
            WalTruncation::Busy
        })
    }
}
