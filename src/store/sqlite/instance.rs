//! The instance lock: this process is the only one using the database file. The SQLite
//! backend's leases and recovery rely on it: at start, jobs that an earlier process of this
//! host left running are put back in the queue at once (`recover_host`), which is only safe if
//! no other live process on the same file could be running them.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Result, StoreError};

/// Takes the exclusive lock `<db>.lock` (held as long as the returned file is open).
pub(super) fn lock(db: &Path) -> Result<File> {
    let mut path: PathBuf = db.as_os_str().to_owned().into();
    path.as_mut_os_string().push(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Folder {
            path: path.display().to_string(),
            source,
        })?;
    file.try_lock().map_err(|_| StoreError::InUse {
        database: db.display().to_string(),
        lock: path.display().to_string(),
    })?;
    Ok(file)
}
