//! The data dir's permissions: the directory 0700 and the files that hold secrets (the project
//! database, with the install-hash secret and hashed keys) 0600, so that no other user of the
//! machine can read events, keys or the secret. Checked at every open: a data dir found open to
//! others is closed again, with a warning. A process that writes the data dir also restricts its
//! umask, so every file and folder it makes there (log segments, parts, the dedup index) is its
//! owner's alone.

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if needed and makes it readable by its owner alone.
pub fn secure_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "the data dir was open to other users; made it 0700"
            );
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Makes an existing file readable and writable by its owner alone; a missing one is left
/// alone (SQLite makes its `-wal` and `-shm` files with the database's mode).
pub fn secure_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes every file and folder this process creates from now on readable by its owner alone
/// (umask 077). Called by the collector and by the commands that write a data dir.
pub fn restrict_umask() {
    #[cfg(target_os = "linux")]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}
