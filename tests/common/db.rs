//! The backend a test runs on, its sandbox's database, and the few questions the tests ask of
//! that database directly, asked the same way of either backend.
//!
//! Tests assert through the API wherever it can say what they check. What it does not show
//! (an erased password, a released lock, the rows a pruned job leaves) is asked here, in SQL
//! that both SQLite and PostgreSQL accept: comparisons, `LIKE`, `IS NULL`, `length()`,
//! `CAST(... AS TEXT)`. Not booleans (SQLite stores 0 and 1) nor either one's functions.

use std::path::{Path, PathBuf};

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

use super::pg;

/// The store backend a test's app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file of the sandbox, the embedded default.
    Sqlite,
    /// A fresh database of the test binary's PostgreSQL cluster (see `pg.rs`).
    Postgres,
}

/// The database of a sandbox.
pub enum Db {
    /// The file; the app creates it at its first start.
    Sqlite(PathBuf),
    Postgres(pg::Database),
}

/// The text columns of every table but `job_secrets` (and `service_secrets`, random bytes):
/// where a secret must never be.
const TEXT_COLUMNS: &[(&str, &[&str])] = &[
    (
        "jobs",
        &[
            "id",
            "kind",
            "status",
            "inputs",
            "username",
            "namespace",
            "summary",
            "error",
            "idempotency_key",
            "request_hash",
            "submitted_by",
            "request_id",
            "lease_owner",
            "previous_owner",
            "current_step",
        ],
    ),
    ("job_steps", &["name", "status", "output"]),
    (
        "step_attempts",
        &[
            "step",
            "worker",
            "command",
            "stdin_preview",
            "outcome",
            "error_kind",
            "stdout",
            "stderr",
        ],
    ),
    ("job_events", &["type", "worker", "detail"]),
    ("resource_locks", &["name", "job_id", "owner"]),
];

impl Db {
    /// A new database for `backend`: for SQLite the path `file` (not created here); for
    /// PostgreSQL a fresh database named after `test`.
    ///
    /// Panics when PostgreSQL cannot run here: a test on PostgreSQL comes through
    /// `both_backends!`, which skipped it then.
    pub async fn new(backend: Backend, file: PathBuf, test: &str) -> Db {
        match backend {
            Backend::Sqlite => Db::Sqlite(file),
            Backend::Postgres => Db::Postgres(pg::database(test).await.unwrap_or_else(|| {
                panic!("{test}: PostgreSQL is not available (run it through both_backends!)")
            })),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The app's `DATABASE_URL`.
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(file) => format!("sqlite://{}", file.display()),
            Db::Postgres(db) => db.url.clone(),
        }
    }

    /// `SELECT COUNT(*) FROM <table> WHERE <filter>`; `filter` in the SQL both accept.
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {filter}"))
            .await
    }

    /// How many rows `table` has.
    pub async fn rows(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// Runs one statement (in the SQL both accept), e.g. to age a job while the app is stopped.
    pub async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(file) => {
                let mut conn = sqlite(file).await;
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Db::Postgres(db) => {
                let mut conn = db.connect().await;
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Every text stored outside the secrets tables (see [`TEXT_COLUMNS`]), for leak checks.
    pub async fn stored_text(&self) -> String {
        let mut all = String::new();
        for (table, columns) in TEXT_COLUMNS {
            let row = columns
                .iter()
                .map(|c| format!("COALESCE(CAST({c} AS TEXT), '')"))
                .collect::<Vec<_>>()
                .join(" || ' ' || ");
            for text in self.strings(&format!("SELECT {row} FROM {table}")).await {
                all.push_str(&text);
                all.push('\n');
            }
        }
        assert!(
            all.contains("submitted"),
            "no job is stored: a leak check would pass for nothing"
        );
        all
    }

    async fn scalar(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(file) => {
                let mut conn = sqlite(file).await;
                let v = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                v
            }
            Db::Postgres(db) => {
                let mut conn = db.connect().await;
                let v = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                v
            }
        }
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Db::Sqlite(file) => {
                let mut conn = sqlite(file).await;
                let v = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                v
            }
            Db::Postgres(db) => {
                let mut conn = db.connect().await;
                let v = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                v
            }
        }
    }
}

async fn sqlite(file: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", file.display()))
}
