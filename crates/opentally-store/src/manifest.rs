//! The manifest: which parts are live and how far into the log they reach, replaced atomically.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use opentally_log::LogPos;

pub const FILE: &str = "MANIFEST.json";
const TEMP: &str = "MANIFEST.json.tmp";

/// One immutable Parquet part: the events of one project and day (event time, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    pub id: u64,
    pub project: String,
    /// Days since the Unix epoch.
    pub day: i64,
    /// Path relative to the store directory.
    pub file: String,
    /// The part's rollup (see [`crate::rollup`]), relative to the store directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup: Option<String>,
    /// The part's per-install event sequences (see [`crate::sequence`]), relative to the store
    /// directory; parts written before sequences were kept, or too large for them, have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    /// Event times covered, micro-seconds since the epoch.
    pub min_ts: i64,
    pub max_ts: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Every log record before this position is in `parts`; none after it is.
    pub log: LogPos,
    pub next_part: u64,
    pub parts: Vec<PartMeta>,
    /// Installs erased while some of their events were still only in the log: reading the log
    /// again skips their events in records before `before`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<Erasure>,
    /// Projects deleted while some of their events were still only in the log: reading the
    /// log again skips their records before `before`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<ProjectDrop>,
}

/// One deleted project, for the log records not yet sealed when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectDrop {
    pub project: String,
    pub before: LogPos,
}

/// One erased install, for the log records not yet sealed when it was erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub project: String,
    pub install: String,
    pub before: LogPos,
}

impl Manifest {
    /// Reads the manifest of `dir`; an empty one if there is none yet.
    pub fn load(dir: &Path) -> io::Result<Manifest> {
        match fs::read(dir.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(FILE).display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Manifest {
                version: 1,
                ..Manifest::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Replaces the manifest of `dir`: write a temporary file, fsync it, rename it over the old
    /// one, fsync the directory. A crash at any point leaves either the old or the new manifest.
    pub fn store(&self, dir: &Path) -> io::Result<()> {
        let tmp = dir.join(TEMP);
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::from)?)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(FILE))?;
        sync_dir(dir)
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
