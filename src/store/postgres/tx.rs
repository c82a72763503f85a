//! The transaction of a worker's write: opened with the fence, it collects what its statements
//! did that others must hear of, and says it with `pg_notify` before the commit (delivered at
//! commit, to every replica) and to this replica's notifier after it.

use sqlx::postgres::{PgConnection, Postgres};

use super::listen::{JOB_CHANGED, JOB_QUEUED, LOCKS_RELEASED};
use super::{Lease, PgStore, Result};

/// An open write transaction and the notifications it owes.
pub(super) struct Write {
    tx: sqlx::Transaction<'static, Postgres>,
    job_id: String,
    /// The jobs whose status or current step changed (this one, or a lock's waiter).
    changed: Vec<String>,
    released: bool,
    queued: bool,
}

impl PgStore {
    /// Opens a write about `job_id`, not fenced (a claim, or a write that needs no lease).
    pub(super) async fn write(&self, job_id: &str) -> Result<Write> {
        Ok(Write {
            tx: self.pool.begin().await?,
            job_id: job_id.to_string(),
            changed: Vec::new(),
            released: false,
            queued: false,
        })
    }

    /// Opens a write fenced on `lease`: its first statement touches the job row only if the
    /// lease still holds, and holds that row's lock until the commit, so that a claim taking
    /// the job over waits for (or skips) it. `None`, with nothing written, when the lease is
    /// lost.
    pub(super) async fn fenced(&self, lease: &Lease) -> Result<Option<Write>> {
        let mut write = self.write(&lease.job_id).await?;
        if !fence(write.conn(), lease).await? {
            write.tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(write))
    }
}

/// The fence: touches the job row only if `lease` still holds it, and keeps that row's lock
/// until the commit.
pub(super) async fn fence(conn: &mut PgConnection, lease: &Lease) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE jobs SET updated_at = now_ms()
          WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND status = 'running'",
    )
    .bind(&lease.job_id)
    .bind(&lease.owner)
    .bind(lease.attempt)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

impl Write {
    /// The same write, about `job_id` (a claim learns its job from its first statement).
    pub(super) fn about(mut self, job_id: &str) -> Self {
        self.job_id = job_id.to_string();
        self
    }

    /// Writes about `job_id` from now on (a lock hand-off starts a waiter's attempt); returns
    /// the job it wrote about until now.
    pub(super) fn retarget(&mut self, job_id: &str) -> String {
        std::mem::replace(&mut self.job_id, job_id.to_string())
    }

    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// The job's status or current step changed.
    pub(super) fn changed(&mut self) {
        if !self.changed.contains(&self.job_id) {
            self.changed.push(self.job_id.clone());
        }
    }

    /// Resource locks were released.
    pub(super) fn released(&mut self) {
        self.released = true;
    }

    /// The job was put back in the queue (due now or later).
    pub(super) fn queued(&mut self) {
        self.queued = true;
    }

    /// Appends an audit event, at the database's time.
    pub(super) async fn event(
        &mut self,
        kind: &str,
        attempt: Option<i64>,
        worker: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        self.insert_event(kind, attempt, worker, detail, None).await
    }

    /// Appends an audit event; a `retry_scheduled` one names the delay of the retry, due
    /// `delay_ms` from the transaction's time (the job's new `run_at`).
    pub(super) async fn insert_event(
        &mut self,
        kind: &str,
        attempt: Option<i64>,
        worker: Option<&str>,
        detail: Option<&str>,
        retry_delay_ms: Option<i64>,
    ) -> Result<()> {
        let job_id = self.job_id.clone();
        sqlx::query(
            "INSERT INTO job_events (job_id, at, type, attempt, worker, detail, retry_at, delay_ms)
             VALUES ($1, now_ms(), $2, $3, $4, $5, now_ms() + $6, $6)",
        )
        .bind(job_id)
        .bind(kind)
        .bind(attempt)
        .bind(worker)
        .bind(detail)
        .bind(retry_delay_ms)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Sends the notifications the write owes, commits, then tells this replica's notifier.
    pub(super) async fn commit(mut self, store: &PgStore) -> Result<()> {
        let changed = std::mem::take(&mut self.changed);
        // One statement for every notification the write owes (each is a round trip).
        let channels: Vec<(&str, &str)> = changed
            .iter()
            .map(|job_id| (JOB_CHANGED, job_id.as_str()))
            .chain(self.released.then_some((LOCKS_RELEASED, "")))
            .chain(self.queued.then_some((JOB_QUEUED, "")))
            .collect();
        if !channels.is_empty() {
            let (names, payloads): (Vec<&str>, Vec<&str>) = channels.into_iter().unzip();
            sqlx::query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n (c, p)")
                .bind(names)
                .bind(payloads)
                .execute(self.conn())
                .await?;
        }
        self.tx.commit().await?;
        for job_id in &changed {
            store.notifier.changed(job_id);
        }
        if self.released {
            store.notifier.locks_released();
        }
        if self.queued {
            store.notifier.job_queued();
        }
        Ok(())
    }
}
