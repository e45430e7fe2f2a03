//! `opentally dump`: every stored event, one JSON object per line, from wherever it is held:
//! sealed parts, or the log not yet sealed.

use std::io::{self, Write};
use std::path::Path;

use opentally_store::{Options, Store, StoreError};

/// Writes every stored event (of `project`, if given) to `out`; returns how many. Reads the data
/// dir without changing it, so it works while a server runs on it.
pub fn dump(data: &Path, project: Option<&str>, out: &mut dyn Write) -> io::Result<u64> {
    let store = Store::open(data, Options::default()).map_err(io_error)?;
    let projects = match project {
        Some(p) => vec![p.to_owned()],
        None => store.projects(),
    };
    let mut n = 0;
    for p in projects {
        n += opentally_store::dump::dump(&store.snapshot(&p), out).map_err(io_error)?;
    }
    Ok(n)
}

fn io_error(e: StoreError) -> io::Error {
    match e {
        StoreError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
