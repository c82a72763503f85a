//! The store's error, backend-neutral: what a caller can act on, not which driver failed.

/// The cause of an error, whatever the backend.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot answer now (busy, disk full, I/O error, a failed commit, a lost
    /// connection): nothing of the operation is kept; it may succeed later. The API answers 503.
    #[error("database error: {0}")]
    Unavailable(Cause),
    /// The store was closed (shutdown), or its writer is gone.
    #[error("the database is closed")]
    Closed,
    /// Stored data that no record can hold (an unknown state, undecodable JSON, ...).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The schema could not be brought up to date at open.
    #[error("database migration failed: {0}")]
    Migrate(Cause),
    /// The writer's thread could not be started at open.
    #[error("cannot start the database writer: {0}")]
    Thread(std::io::Error),
    /// Another process holds the SQLite file's instance lock (one process per file).
    #[error(
        "another everestctl-api process is already using {database} (lock {lock} is held); \
         run one process per SQLite file"
    )]
    InUse { database: String, lock: String },
    /// The database's folder could not be made at open.
    #[error("cannot prepare the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
}

impl StoreError {
    /// An error of the database itself (see [`StoreError::Unavailable`]).
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        StoreError::Unavailable(cause.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// The conversions of the SQLite backend's drivers: a value read that does not decode is corrupt
// data; anything else is the database failing to answer.

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match e {
            E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..)
            | E::InvalidColumnType(..)
            | E::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
            E::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                StoreError::Corrupt(e.to_string())
            }
            e => StoreError::unavailable(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::ColumnDecode { .. } | E::Decode(_) => StoreError::Corrupt(e.to_string()),
            E::PoolClosed => StoreError::Closed,
            E::Migrate(e) => StoreError::Migrate(e),
            e => StoreError::unavailable(e),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn driver_errors_become_what_a_caller_can_act_on() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_READONLY,
        ] {
            let e = StoreError::from(sqlite_failure(code));
            assert!(matches!(e, StoreError::Unavailable(_)), "{code}: {e:?}");
        }
        for code in [ffi::SQLITE_CORRUPT, ffi::SQLITE_NOTADB] {
            let e = StoreError::from(sqlite_failure(code));
            assert!(matches!(e, StoreError::Corrupt(_)), "{code}: {e:?}");
        }
        let wrong_type =
            rusqlite::Error::InvalidColumnType(0, "status".into(), rusqlite::types::Type::Blob);
        assert!(matches!(
            StoreError::from(wrong_type),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolClosed),
            StoreError::Closed
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        let decode = sqlx::Error::Decode("not an integer".into());
        assert!(matches!(StoreError::from(decode), StoreError::Corrupt(_)));
    }
}
