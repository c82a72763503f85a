//! Read-only connections for the point reads of the request path (a status poll), run inline
//! on the calling task.
//!
//! A read through sqlx is handed to the connection's own thread and back: two context switches,
//! which cost more than reading one job by its primary key from the page cache (a few
//! microseconds). These reads are bounded (one row and its steps, by primary key), so they run
//! directly on the async task, like taking a mutex. Anything that can read many rows stays on
//! the sqlx pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::Result;

/// Idle connections kept; more are opened when reads overlap, and closed after.
const KEEP_IDLE: usize = 4;

#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (opened if there is none).
    pub(super) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.take();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // A connection left inside a transaction (a read whose end failed) is not reused.
        if idle.len() < KEEP_IDLE && conn.is_autocommit() {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections (before the writer's, so that the last one to close, the
    /// writer's, checkpoints the WAL).
    pub(super) fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn open(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }
}
