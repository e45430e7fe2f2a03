//! The collector's remote control as this app remembers it: the last one a batch's answer
//! carried for this app version, kept in the app's state folder so that the next process obeys
//! it before it sends anything. A stopped install asks again (with its next batch, which the
//! collector drops if collection is still stopped) once [`RECHECK`] has passed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use opentally_protocol::Control;
use serde::{Deserialize, Serialize};

/// The file in an app's state folder holding the remembered control.
const FILE: &str = "control.json";

/// How long a remembered control holds before the install asks the collector again.
pub const RECHECK: Duration = Duration::from_secs(24 * 3600);

/// A control as remembered: what the collector said, for which app version, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteControl {
    pub app_version: Option<String>,
    pub collect: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
    /// Unix seconds.
    pub received_at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RemoteControl {
    pub(crate) fn new(app_version: Option<&str>, control: Control) -> RemoteControl {
        RemoteControl {
            app_version: app_version.map(str::to_owned),
            collect: control.collect,
            sample: control.sample,
            received_at: unix_now(),
        }
    }

    /// The control remembered in `app_state`, if any.
    pub fn load(app_state: &Path) -> Option<RemoteControl> {
        crate::paths::read_json(app_state, FILE)
    }

    pub(crate) fn save(&self, app_state: &Path) -> std::io::Result<()> {
        crate::paths::write_json(app_state, FILE, self)
    }

    pub(crate) fn remove(app_state: &Path) -> std::io::Result<()> {
        crate::paths::remove_if_present(&app_state.join(FILE))
    }

    pub fn control(&self) -> Control {
        Control {
            collect: self.collect,
            sample: self.sample,
        }
    }

    /// Whether this control still binds an app of `version`: it was given for that version
    /// and less than [`RECHECK`] ago (a clock set back counts as now).
    pub fn binds(&self, version: Option<&str>) -> bool {
        self.app_version.as_deref() == version
            && unix_now().saturating_sub(self.received_at) < RECHECK.as_secs()
    }

    /// Whether the same control, received now, would be worth writing again: it changed, or
    /// half the re-check time has passed (so the file's time stays fresh without a write a
    /// batch).
    pub(crate) fn stale_against(&self, other: &RemoteControl) -> bool {
        self.app_version != other.app_version
            || self.control() != other.control()
            || other.received_at.saturating_sub(self.received_at) >= RECHECK.as_secs() / 2
    }
}

impl std::fmt::Display for RemoteControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.sample {
            _ if !self.collect => "collection stopped".to_owned(),
            Some(rate) => format!("installs sampled at {rate}"),
            None => "collect".to_owned(),
        };
        write!(
            f,
            "{what} for version {} (received at unix time {})",
            self.app_version.as_deref().unwrap_or("(none)"),
            self.received_at
        )
    }
}
