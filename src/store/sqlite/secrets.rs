//! Secrets at rest: erasing expired passwords, making sure an erased one is gone from the
//! database files too, and the database's own secret that keys the idempotency hash.
//!
//! With `secure_delete` (set on every connection) SQLite overwrites what it deletes, so an
//! erased password is gone from the database file once the page is written back. But the WAL
//! keeps every page image written since it was last reset, the ones that still hold the
//! password included, and a normal checkpoint only copies them, it does not remove them. So
//! after erasing, the WAL is checkpointed whole and truncated to zero bytes.

use rand::RngCore;

use super::{IdempotencySecret, Result, SqliteStore, WalTruncation, Write, now_ms};

/// Name of the secret in `service_secrets`.
const IDEMPOTENCY_HMAC: &str = "idempotency_hmac";

/// Reads the idempotency secret, creating it on the first open of the database.
pub(super) async fn idempotency_secret(
    conn: &mut sqlx::SqliteConnection,
) -> Result<IdempotencySecret> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    // A secret created by an earlier open stays: hashes stored with it must still match.
    sqlx::query("INSERT OR IGNORE INTO service_secrets (name, value) VALUES (?, ?)")
        .bind(IDEMPOTENCY_HMAC)
        .bind(&fresh[..])
        .execute(&mut *conn)
        .await?;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM service_secrets WHERE name = ?")
        .bind(IDEMPOTENCY_HMAC)
        .fetch_one(&mut *conn)
        .await?;
    IdempotencySecret::from_stored(stored)
}

impl SqliteStore {
    /// The key of the idempotency request hash (see [`IdempotencySecret`]).
    pub fn idempotency_secret(&self) -> &IdempotencySecret {
        &self.idempotency_secret
    }

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
