//! The data dir's lock: held by the one process that writes the log and loads the store (a
//! running `opentally serve`), so that a second server on the same data dir refuses to start and
//! admin commands know whether they may change the store themselves.

use std::fs::File;
use std::io;
use std::path::Path;

/// An exclusive lock on a data dir, released when dropped (or when the process ends, however
/// it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the data dir's lock, or `None` if another process holds it.
    pub fn try_acquire(data: &Path) -> io::Result<Option<DataDirLock>> {
        crate::perms::secure_dir(data)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(opentally_log::DataDir::new(data).lock_file())?;
        // Named in full: `File` has an inherent `try_lock` from Rust 1.89 on.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(DataDirLock { _file: file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }
}
