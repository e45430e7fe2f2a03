//! The spool: batches that could not be delivered, kept as gzip files in the app's state dir
//! (`spool/{nanos:020}-{random}.json.gz`, each a JSON array of messages) until a later process
//! delivers them; bounded in bytes, oldest dropped first.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{identity, wire};

/// Writes a batch (a JSON array of messages) to the spool in `dir`, then trims the spool to
/// `max_bytes`.
pub(crate) fn write(dir: &Path, array: &[u8], max_bytes: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{:020}-{}.json.gz",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        &identity::random_uuid()[..8]
    );
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, wire::gzip(array))?;
    std::fs::rename(&tmp, dir.join(name))?;
    trim(dir, max_bytes);
    Ok(())
}

/// The spooled batches, oldest first, with their sizes.
pub(crate) fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect();
    files.sort();
    files
}

/// How many batches the spool holds, and their bytes.
pub(crate) fn size(dir: &Path) -> (usize, u64) {
    let files = files(dir);
    (files.len(), files.iter().map(|(_, n)| n).sum())
}

/// Deletes the oldest batches until the spool holds at most `max` bytes.
pub(crate) fn trim(dir: &Path, max: u64) {
    let files = files(dir);
    let mut total: u64 = files.iter().map(|(_, n)| n).sum();
    for (path, n) in files {
        if total <= max {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= n;
        }
    }
}

/// Deletes every spooled batch (after an erasure: they carry the old install id).
pub(crate) fn clear(dir: &Path) {
    for (path, _) in files(dir) {
        let _ = std::fs::remove_file(path);
    }
}
