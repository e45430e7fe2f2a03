//! Where everything lives in a data dir: the one place its layout is spelled.

use std::path::{Path, PathBuf};

/// A data dir, as `opentally serve --data DIR` uses it:
///
/// ```text
/// DIR/log/{seq:020}.seg    the durable log (segment)
/// DIR/dedup/               the collector's index of recent message ids
/// DIR/store/               the embedded store: manifest, Parquet parts, sequences
/// DIR/meta.sqlite3         projects, hashed write keys and admin tokens, the server's secret
/// DIR/serve.lock           held by the one process that writes the dir
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The durable log's segments.
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }

    /// The collector's dedup index.
    pub fn dedup(&self) -> PathBuf {
        self.root.join("dedup")
    }

    /// The embedded store.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The project database (SQLite), with the hashed secrets and the server's install-hash key.
    pub fn meta_db(&self) -> PathBuf {
        self.root.join(META_DB)
    }

    /// The files SQLite keeps beside the project database, by suffix (`-wal`, `-shm`).
    pub fn meta_db_sidecar(&self, suffix: &str) -> PathBuf {
        self.root.join(format!("{META_DB}{suffix}"))
    }

    /// The lock a writing process holds.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("serve.lock")
    }
}

const META_DB: &str = "meta.sqlite3";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_inside_the_dir_and_distinct() {
        let d = DataDir::new("/data");
        let paths = [
            d.log(),
            d.dedup(),
            d.store(),
            d.meta_db(),
            d.meta_db_sidecar("-wal"),
            d.lock_file(),
        ];
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(p.parent(), Some(Path::new("/data")), "{}", p.display());
            assert!(!paths[..i].contains(p), "{} twice", p.display());
        }
        assert_eq!(
            d.meta_db_sidecar("-wal"),
            Path::new("/data/meta.sqlite3-wal")
        );
    }
}
