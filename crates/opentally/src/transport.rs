//! How a batch leaves the process: the HTTP transport (ureq, blocking, on the worker thread
//! only, through the host's proxy and trusted roots, `network`), a local file for `OPENTALLY_TELEMETRY=local`, and a recording transport for tests.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

/// The fate of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The collector has it; `reply` is what its answer says besides.
    Delivered { reply: Reply },
    /// Try again later (network error, timeout, 408, 429, 5xx), after `after` if the server said.
    Retry { after: Option<Duration> },
    /// The collector refused it for good (400, 401, 413…): never retried.
    Rejected { status: u16 },
}

/// What a delivery's answer tells the SDK besides the delivery itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// Nothing: the local file, or a 2xx answer that is not a collector's (cut short, too long,
    /// not its JSON, a control out of range). A remembered control stays as it is.
    Unread,
    /// The collector's answer, with the remote control it carried (none: collect as usual).
    Answered(Option<opentally_protocol::Control>),
}

impl Outcome {
    /// Delivered, and the collector's answer carried no remote control.
    pub const DELIVERED: Outcome = Outcome::Delivered {
        reply: Reply::Answered(None),
    };
}

/// The largest answer to a batch read for its remote control; a collector's is a few hundred
/// bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// The part of a collector's answer the SDK reads.
#[derive(serde::Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    control: Option<serde_json::Value>,
}

/// Reads a delivery's answer: the collector's own (`"ok": true`, a control that is an object
/// whose sample is a fraction), or nothing to learn from.
pub(crate) fn read_reply(body: &[u8]) -> Reply {
    let Ok(Answer { ok: true, control }) = serde_json::from_slice::<Answer>(body) else {
        return Reply::Unread;
    };
    let control = match control {
        None | Some(serde_json::Value::Null) => return Reply::Answered(None),
        // An object only: serde would read an array as the struct's fields in order.
        Some(v @ serde_json::Value::Object(_)) => {
            serde_json::from_value::<opentally_protocol::Control>(v)
        }
        Some(_) => return Reply::Unread,
    };
    match control {
        Ok(c) if c.sample.is_none_or(|r| (0.0..=1.0).contains(&r)) => Reply::Answered(Some(c)),
        _ => Reply::Unread,
    }
}

/// A way to deliver a batch. `body` is the gzip-compressed JSON of a Segment batch; `timeout`
/// bounds the whole attempt.
pub trait Transport: Send + Sync + fmt::Debug {
    fn send(&self, body: &[u8], timeout: Duration) -> Outcome;
}

/// Segment-compatible HTTP: `POST {endpoint}/v1/batch`, gzip, Basic auth with the write key.
pub struct HttpTransport {
    /// `None` when the network cannot be used (see [`crate::network::Network::agent`]): every send fails.
    agent: Option<ureq::Agent>,
    url: String,
    authorization: String,
    user_agent: String,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    pub fn new(
        endpoint: &str,
        write_key: &str,
        connect_timeout: Duration,
        network: &crate::network::Network,
    ) -> HttpTransport {
        let agent = network.agent(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(connect_timeout))
                .max_redirects(0),
        );
        HttpTransport {
            agent: agent.ok(),
            url: format!("{}/v1/batch", endpoint.trim_end_matches('/')),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
            ),
            user_agent: format!("opentally-rust/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A `Retry-After` in seconds (the form collectors use); a date is not read.
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Transport for HttpTransport {
    fn send(&self, body: &[u8], timeout: Duration) -> Outcome {
        let Some(agent) = &self.agent else {
            return Outcome::Retry { after: None };
        };
        let result = agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Authorization", &self.authorization)
            .header("User-Agent", &self.user_agent)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body);
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Outcome::Delivered {
                        reply: resp
                            .body_mut()
                            .with_config()
                            .limit(MAX_ANSWER_BYTES)
                            .read_to_vec()
                            .map_or(Reply::Unread, |b| read_reply(&b)),
                    },
                    408 | 429 | 500..=599 => Outcome::Retry {
                        after: retry_after(
                            resp.headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok()),
                        ),
                    },
                    _ => Outcome::Rejected { status },
                }
            }
            Err(_) => Outcome::Retry { after: None },
        }
    }
}

/// `OPENTALLY_TELEMETRY=local`: each batch appended to a file in the app's state folder, as
/// JSON lines (one message a line), never uploaded.
#[derive(Debug)]
pub struct LocalFile {
    pub path: PathBuf,
}

impl Transport for LocalFile {
    fn send(&self, body: &[u8], _timeout: Duration) -> Outcome {
        let Some(batch) = crate::wire::gunzip(body)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            return Outcome::Rejected { status: 0 };
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            for m in batch["batch"].as_array().into_iter().flatten() {
                writeln!(f, "{m}")?;
            }
            Ok(())
        };
        match write() {
            Ok(()) => Outcome::Delivered {
                reply: Reply::Unread,
            },
            Err(_) => Outcome::Retry { after: None },
        }
    }
}

/// Records every batch it is given (decompressed) and answers with a scripted outcome; for
/// tests of the client without a network (feature `test-util`).
#[cfg(feature = "test-util")]
#[derive(Debug, Default)]
pub struct RecordingTransport {
    pub batches: std::sync::Mutex<Vec<serde_json::Value>>,
    /// Outcomes to give, first to last; `Delivered` once they run out.
    pub script: std::sync::Mutex<Vec<Outcome>>,
}

#[cfg(feature = "test-util")]
impl RecordingTransport {
    /// Every message recorded so far, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.batches
            .lock()
            .expect("not poisoned")
            .iter()
            .flat_map(|b| b["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

#[cfg(feature = "test-util")]
impl Transport for RecordingTransport {
    fn send(&self, body: &[u8], _timeout: Duration) -> Outcome {
        let outcome = {
            let mut script = self.script.lock().expect("not poisoned");
            if script.is_empty() {
                Outcome::DELIVERED
            } else {
                script.remove(0)
            }
        };
        if matches!(outcome, Outcome::Delivered { .. })
            && let Some(v) = crate::wire::gunzip(body).and_then(|b| serde_json::from_slice(&b).ok())
        {
            self.batches.lock().expect("not poisoned").push(v);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_collectors_answer_with_a_fraction_for_a_sample_is_read() {
        use opentally_protocol::Control;
        let off = Control {
            collect: false,
            sample: None,
        };
        assert_eq!(
            read_reply(br#"{"ok":true,"control":{"collect":false}}"#),
            Reply::Answered(Some(off))
        );
        assert_eq!(
            read_reply(br#"{"ok":true,"accepted":3}"#),
            Reply::Answered(None)
        );
        for strange in [
            &br#"{"control":{"collect":false}}"#[..],
            br#"{"ok":false,"control":{"collect":false}}"#,
            br#"{"ok":true,"control":{"collect":"no"}}"#,
            br#"{"ok":true,"control":{"sample":-1e308}}"#,
            br#"{"ok":true,"control":{"sample":1.5}}"#,
            br#"{"ok":true,"control":[]}"#,
            br#"{"ok":true,"control":[false]}"#,
            br#"{"ok":true,"control":{"collect":false},"control":{"collect":true}}"#,
            b"<html>proxy error</html>",
            b"",
        ] {
            assert_eq!(
                read_reply(strange),
                Reply::Unread,
                "{}",
                String::from_utf8_lossy(strange)
            );
        }
    }
}
