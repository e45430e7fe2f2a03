//! The SDK against real loopback collectors: consent, faults, delivery, fork.

mod consent;
mod control;
mod delivery;
mod faults;
mod sink;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A temporary home for one test: state, config and policy files, and a working directory.
#[derive(Debug)]
pub struct Home(pub PathBuf);

impl Home {
    pub fn new(name: &str) -> Home {
        let d = std::env::temp_dir().join(format!("opentally-sdk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("work")).unwrap();
        Home(d)
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    pub fn config_file(&self) -> PathBuf {
        self.0.join("config").join("config.toml")
    }
    pub fn policy_file(&self) -> PathBuf {
        self.0.join("etc").join("policy.toml")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
    /// A config pointing every path into this home, reading `env` as the environment.
    pub fn config(&self, app: &str, endpoint: &str, env: &[(&str, &str)]) -> opentally::Config {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        opentally::Config::new(app, "otw_test", endpoint)
            .state_dir(self.state())
            .config_file(self.config_file())
            .policy_file(self.policy_file())
            .environment(env, Some(self.work()))
    }
    /// Every file under the state folder.
    pub fn state_files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.state(), &mut out);
        out
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An example built by `cargo build --examples` (`target/debug/examples/NAME`, next to this
/// test binary's folder); `scripts/test.sh` builds them before the tests.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p opentally --examples` first",
        path.display()
    );
    path
}

/// The `hello` example as a user would run it: a clean environment, a private home, and the
/// collector at `endpoint`.
pub fn hello(home: &Home, endpoint: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(example("hello"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home.0)
        .env("XDG_STATE_HOME", home.0.join("xdg-state"))
        .env("XDG_CONFIG_HOME", home.0.join("xdg-config"))
        .env("OPENTALLY_ENDPOINT", endpoint)
        .current_dir(home.work());
    cmd
}
