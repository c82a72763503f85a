//! Accepting a job: one transaction, committed before the caller answers 202.

use sqlx::SqliteConnection;

use super::{NewJob, Result, Store, Write, now_ms};

/// What happened to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new job was stored.
    Created(String),
    /// The idempotency key was seen before with the same request: the original job.
    Replayed(String),
    /// The idempotency key was seen before with a different request.
    Conflict(String),
}

impl Store {
    /// Stores a job with its steps, secret and `submitted` event, or resolves its idempotency key.
    /// Returns once the job is committed.
    pub async fn submit(&self, job: &NewJob) -> Result<Submitted> {
        let job = job.clone();
        self.write(move |conn| Box::pin(async move { insert(conn, &job).await.map(Write::Keep) }))
            .await
    }
}

async fn insert(conn: &mut SqliteConnection, job: &NewJob) -> Result<Submitted> {
    if let Some((key, hash)) = &job.idempotency {
        let seen: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT id, request_hash FROM jobs WHERE idempotency_key = ?")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some((id, seen_hash)) = seen {
            return Ok(if seen_hash.as_deref() == Some(hash.as_str()) {
                Submitted::Replayed(id)
            } else {
                Submitted::Conflict(id)
            });
        }
    }
    let now = now_ms();
    let (key, hash) = job.idempotency.clone().unzip();
    let detail = format!(
        "submitted by {} (request {})",
        job.submitted_by, job.request_id
    );
    // One round trip to the connection for the whole job: the statements run in order, each
    // taking its share of the arguments.
    let sql = insert_sql(job.steps.len(), job.secret.is_some());
    let mut query = sqlx::query(&sql)
        .bind(&job.id)
        .bind(&job.kind)
        .bind(&job.inputs)
        .bind(&job.username)
        .bind(&job.namespace)
        .bind(key)
        .bind(hash)
        .bind(&job.submitted_by)
        .bind(&job.request_id)
        .bind(now)
        .bind(now)
        .bind(now);
    for (position, name) in job.steps.iter().enumerate() {
        query = query.bind(&job.id).bind(position as i64).bind(name);
    }
    if let Some((password, generated)) = &job.secret {
        query = query.bind(&job.id).bind(password).bind(generated);
    }
    query
        .bind(&job.id)
        .bind(now)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
    Ok(Submitted::Created(job.id.clone()))
}

/// The statements that insert a job with `steps` steps and maybe a secret.
fn insert_sql(steps: usize, secret: bool) -> String {
    let mut sql = String::from(
        "INSERT INTO jobs (id, kind, status, inputs, username, namespace, idempotency_key, request_hash,
                           submitted_by, request_id, created_at, updated_at, run_at)
         VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);",
    );
    if steps > 0 {
        sql.push_str("INSERT INTO job_steps (job_id, position, name, status) VALUES ");
        sql.push_str(&vec!["(?, ?, ?, 'pending')"; steps].join(", "));
        sql.push(';');
    }
    if secret {
        sql.push_str("INSERT INTO job_secrets (job_id, password, generated) VALUES (?, ?, ?);");
    }
    sql.push_str("INSERT INTO job_events (job_id, at, type, detail) VALUES (?, ?, 'submitted', ?)");
    sql
}
