//! The user's rights over what an app sent: which collector the app sends to (kept in its state
//! folder once it has delivered there), and the erase and export requests made to that
//! collector with the install id, which is the credential.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file in an app's state folder naming its collector.
const FILE: &str = "collector.json";

/// How long an erase or export request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The collector an app delivered to from this machine, and the write key it used (a public
/// value, shipped in the app): what `opentally forget` and `export` need to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedCollector {
    pub endpoint: String,
    pub write_key: String,
}

impl SavedCollector {
    /// The collector recorded in `app_state`, if any.
    pub fn load(app_state: &Path) -> Option<SavedCollector> {
        crate::paths::read_json(app_state, FILE)
    }

    /// Records the collector in `app_state` unless it is already what the file says; written to
    /// a temporary file and renamed, so a reader never sees half of it.
    pub(crate) fn save(&self, app_state: &Path) -> std::io::Result<()> {
        if SavedCollector::load(app_state).as_ref() == Some(self) {
            return Ok(());
        }
        // Readable by the user alone: it says where the install id, the credential, is sent.
        crate::paths::write_json(app_state, FILE, self)
    }

    /// Forgets the collector (after an erasure: the new install id has sent nothing there).
    pub(crate) fn remove(app_state: &Path) -> std::io::Result<()> {
        crate::paths::remove_if_present(&app_state.join(FILE))
    }

    /// An agent through the proxy and trusted roots the process's environment names, as the
    /// app's own deliveries use.
    fn agent(&self) -> Result<ureq::Agent, RightsError> {
        crate::network::Network::from_env(&self.endpoint, &|k| std::env::var(k).ok())
            .agent(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(TIMEOUT))
                    .max_redirects(0),
            )
            .map_err(|message| RightsError::Unreachable {
                endpoint: self.endpoint.clone(),
                message,
            })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.trim_end_matches('/'))
    }

    fn authorization(&self) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", self.write_key))
        )
    }

    /// Asks the collector to erase every event stored under `install_id`. The collector answers
    /// the same whether or not it held any.
    pub fn erase(&self, install_id: &str) -> Result<(), RightsError> {
        let body = serde_json::json!({ "installId": install_id }).to_string();
        let agent = self.agent()?;
        let response = with_retries(|| {
            agent
                .post(&self.url("/v1/privacy/erase"))
                .header("Content-Type", "application/json")
                .header("Authorization", &self.authorization())
                .send(body.as_bytes())
        });
        self.answer(response).map(|_| ())
    }

    /// Fetches every event stored under `install_id`, as the collector's JSON answer
    /// `{"ok": true, "events": […]}`.
    pub fn export(&self, install_id: &str) -> Result<String, RightsError> {
        let agent = self.agent()?;
        let response = with_retries(|| {
            agent
                .get(&self.url("/v1/privacy/export"))
                .header("Authorization", &self.authorization())
                .header("OpenTally-Install-Id", install_id)
                .call()
        });
        self.answer(response)
    }

    fn answer(&self, response: Answer) -> Result<String, RightsError> {
        let mut response = response.map_err(|e| RightsError::Unreachable {
            endpoint: self.endpoint.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| RightsError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            })?;
        // A confirmation is the collector's own answer, not any 2xx (a proxy's page, say).
        let confirmed = serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|v| v.get("ok") == Some(&serde_json::Value::Bool(true)));
        if (200..300).contains(&status) && confirmed {
            Ok(text)
        } else if (200..300).contains(&status) {
            Err(RightsError::Refused {
                endpoint: self.endpoint.clone(),
                status,
                message: "the answer is not an OpenTally collector's".into(),
            })
        } else {
            // The collector's error body says what was wrong in its `message`.
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                .unwrap_or(text);
            Err(RightsError::Refused {
                endpoint: self.endpoint.clone(),
                status,
                message,
            })
        }
    }
}

type Answer = Result<ureq::http::Response<ureq::Body>, ureq::Error>;

/// Makes a request again while the collector asks for patience (429 or 503 with a
/// `Retry-After` of at most 10 s), three times at most and only while the whole stays within
/// [`TIMEOUT`]: a user's erasure should not fail because others asked at the same moment.
fn with_retries(send: impl Fn() -> Answer) -> Answer {
    let started = std::time::Instant::now();
    let mut answer = send();
    for _ in 0..3 {
        let wait = match &answer {
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => crate::transport::retry_after(
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            )
            .filter(|w| *w <= Duration::from_secs(10)),
            _ => None,
        };
        let Some(wait) = wait.filter(|w| started.elapsed() + *w < TIMEOUT) else {
            break;
        };
        std::thread::sleep(wait);
        answer = send();
    }
    answer
}

/// Why an erase or export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RightsError {
    #[error("telemetry was not initialised in this process")]
    NotInitialised,
    #[error(
        "no collector is recorded for {0}: it has delivered nothing from this machine, so there is nothing stored to erase or export"
    )]
    NoCollector(String),
    #[error("{0} has no install id on this machine: nothing was sent under one")]
    NoInstallId(String),
    #[error("the collector at {endpoint} could not be reached: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("the collector at {endpoint} answered {status}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("cannot update the app's state folder: {0}")]
    State(#[from] std::io::Error),
}
