//! The OpenTally event: a Segment `track` message with reserved properties and typed context
//! blocks, as the SDKs build it (DESIGN §2).

use serde::{Deserialize, Serialize};

/// Reserved property: how long the tracked call took, in milliseconds.
pub const DURATION_MS: &str = "duration_ms";
/// Reserved property: `ok` or `error`.
pub const OUTCOME: &str = "outcome";
/// Reserved property: the exception class or error kind, never its message.
pub const ERROR_TYPE: &str = "error_type";

/// How a tracked call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// A name and a version, the shape of the `library`, `app`, `os` and `runtime` blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameVersion {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The language runtime: name and version, and for Python the implementation and whether it
/// runs in a virtualenv or a conda environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualenv: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda: Option<bool>,
}

/// Where the host runs. Detected from files and environment variables only, never the network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub ci: bool,
    pub docker: bool,
    pub kubernetes: bool,
    /// `jupyter`, `colab`, `vscode`… or none.
    pub notebook: Option<String>,
    /// `aws`, `gcp`, `azure`… from environment variables, or none.
    pub cloud: Option<String>,
}

/// Coarse hardware facts; memory is rounded so it cannot single out a machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    pub arch: String,
    pub cpus: u32,
    pub memory_gb: u32,
    pub gpu: bool,
}

/// The `context` of an OpenTally event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub library: NameVersion,
    pub app: NameVersion,
    pub os: NameVersion,
    pub runtime: Runtime,
    pub environment: Environment,
    pub hardware: Hardware,
    /// Random per process.
    pub session: String,
    /// Set when the install id lives only as long as the process (a container without
    /// persistent state), so insights can count such installs apart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}
