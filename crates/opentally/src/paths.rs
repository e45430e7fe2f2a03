//! Where OpenTally keeps its files, per platform: the user's state (install id salt, spool,
//! first-run marker, local-mode log), the user's config (opt-outs), and the system policy.

use std::path::{Path, PathBuf};

/// The three places OpenTally reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Per-user state; each app has a folder inside.
    pub state_dir: PathBuf,
    /// The user's opt-out file, written by `opentally opt-out` and `opt_out()`.
    pub config_file: PathBuf,
    /// The administrator's policy for every user of the machine.
    pub policy_file: PathBuf,
}

impl Paths {
    /// The platform's locations, from environment variables looked up with `var`.
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Paths {
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(PathBuf::from);
        let under_home = |rel: &str| {
            home.as_ref()
                .map_or_else(|| PathBuf::from(".").join(rel), |h| h.join(rel))
        };
        if cfg!(windows) {
            let local =
                var("LOCALAPPDATA").map_or_else(|| under_home("AppData/Local"), PathBuf::from);
            let roaming =
                var("APPDATA").map_or_else(|| under_home("AppData/Roaming"), PathBuf::from);
            let program =
                var("PROGRAMDATA").map_or_else(|| PathBuf::from("C:/ProgramData"), PathBuf::from);
            Paths {
                state_dir: local.join("opentally"),
                config_file: roaming.join("opentally").join("config.toml"),
                policy_file: program.join("opentally").join("policy.toml"),
            }
        } else if cfg!(target_os = "macos") {
            let support = under_home("Library/Application Support/opentally");
            Paths {
                state_dir: support.clone(),
                config_file: support.join("config.toml"),
                policy_file: PathBuf::from("/Library/Application Support/opentally/policy.toml"),
            }
        } else {
            let xdg = |name: &str, fallback: &str| {
                var(name)
                    .filter(|v| Path::new(v).is_absolute())
                    .map_or_else(|| under_home(fallback), PathBuf::from)
            };
            Paths {
                state_dir: xdg("XDG_STATE_HOME", ".local/state").join("opentally"),
                config_file: xdg("XDG_CONFIG_HOME", ".config")
                    .join("opentally")
                    .join("config.toml"),
                policy_file: PathBuf::from("/etc/opentally/policy.toml"),
            }
        }
    }

    /// The state folder of one app.
    pub fn app_state(&self, app: &str) -> PathBuf {
        self.state_dir.join(sanitize(app))
    }
}

/// App names become folder names: keep them to a safe alphabet.
fn sanitize(app: &str) -> String {
    app.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The JSON file `dir/name` read as a `T`; `None` when it is missing or unreadable.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
}

/// `value` written as JSON to `dir/name` with [`write_private`].
pub(crate) fn write_json<T: serde::Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> std::io::Result<()> {
    write_private(
        dir,
        name,
        &serde_json::to_vec(value).expect("a state file serialises"),
    )
}

/// Writes `bytes` to `dir/name` as one step: a temporary file created fresh (never through a
/// link another user left), readable by the user alone, then renamed over the old one, so a
/// reader sees the old content or the new, never half.
pub(crate) fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        "{name}.{}.tmp",
        &crate::identity::random_uuid()[..8]
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    let written = std::io::Write::write_all(&mut f, bytes);
    drop(f);
    match written.and_then(|()| std::fs::rename(&tmp, dir.join(name))) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Removes `dir/name`; one that is already gone is not an error.
pub(crate) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
