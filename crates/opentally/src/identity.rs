//! The install id: stable for one app on one machine, unrelated across apps, and impossible to
//! link back to the machine without its machine id (which never leaves it).
//!
//! id = first 128 bits of HMAC-SHA256(key = OS machine id, message = "opentally/" + app + "/" +
//! salt), written as a UUID. The salt is empty until the user asks to be forgotten, which writes a
//! new random one. Without a machine id, or in a container (whose image may bake one machine id
//! into every copy), the id is random and kept in the state folder; if that cannot be written,
//! it lives as long as the process and the event says so (`ephemeral`).

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// An install id and whether it lasts only as long as the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallId {
    pub id: String,
    pub ephemeral: bool,
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn as_uuid(bytes: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A random UUID v4. Reached from `track` (a session id after a fork), so it never panics: if
/// the OS random source fails (a seccomp filter, an exhausted fd table), the bytes come from
/// the clock, the pid, a counter and the standard library's per-process hash keys instead.
pub fn random_uuid() -> String {
    random_uuid_from(getrandom::fill)
}

fn random_uuid_from<E>(fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> String {
    let mut b = [0u8; 16];
    if fill(&mut b).is_err() {
        b = fallback_random_bytes();
    }
    as_uuid(b)
}

fn fallback_random_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_u64(n);
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The install id of `app`, reading (and only if `may_write`, writing) `app_state`.
pub fn install_id(app: &str, app_state: &Path, container: bool, may_write: bool) -> InstallId {
    let salt = read_trimmed(&app_state.join("salt")).unwrap_or_default();
    if !container && let Some(mid) = machine_id() {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(mid.as_bytes()).expect("any key length");
        mac.update(format!("opentally/{app}/{salt}").as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        return InstallId {
            id: as_uuid(b),
            ephemeral: false,
        };
    }
    let stored = app_state.join("install-id");
    if let Some(id) = read_trimmed(&stored) {
        return InstallId {
            id,
            ephemeral: false,
        };
    }
    let id = random_uuid();
    let kept = may_write
        && std::fs::create_dir_all(app_state).is_ok()
        && std::fs::write(&stored, &id).is_ok();
    InstallId {
        id,
        ephemeral: !kept,
    }
}

/// Forgets the install locally: a new salt (and no stored random id), so the next id is
/// unrelated to the old one.
pub fn rotate(app_state: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(app_state)?;
    std::fs::write(app_state.join("salt"), random_uuid())?;
    match std::fs::remove_file(app_state.join("install-id")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// Regression: the random id was taken with `expect`, on a path from `track`, so a failing
    /// OS random source would have panicked in the host.
    #[test]
    fn a_failing_random_source_still_gives_distinct_ids() {
        let a = super::random_uuid_from(|_: &mut [u8]| Err("no entropy"));
        let b = super::random_uuid_from(|_: &mut [u8]| Err("no entropy"));
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }

    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("opentally-id-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ids_are_stable_per_app_different_across_apps_and_rotate() {
        let d = dir("stable");
        let a1 = install_id("a", &d.join("a"), false, true);
        let a2 = install_id("a", &d.join("a"), false, true);
        let b = install_id("b", &d.join("b"), false, true);
        assert_eq!(a1, a2);
        assert_ne!(a1.id, b.id);
        assert!(uuid::Uuid::parse_str(&a1.id).is_ok());
        rotate(&d.join("a")).unwrap();
        let a3 = install_id("a", &d.join("a"), false, true);
        assert_ne!(a1.id, a3.id, "forgetting gives an unrelated id");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn containers_get_a_random_id_kept_in_state_or_marked_ephemeral() {
        let d = dir("container");
        let first = install_id("a", &d, true, true);
        assert!(!first.ephemeral);
        assert_eq!(
            install_id("a", &d, true, true),
            first,
            "kept in the state folder"
        );
        let elsewhere = dir("container-ro");
        let not_kept = install_id("a", &elsewhere, true, false);
        assert!(not_kept.ephemeral);
        assert!(
            !elsewhere.exists(),
            "nothing written when writing is not allowed"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
