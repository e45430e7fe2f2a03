//! How a batch leaves the process: the HTTP transport (ureq, blocking, on the worker thread
//! only), a local file for `OPENTALLY_TELEMETRY=local`, and a recording transport for tests.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64_lite::encode as b64;

/// The fate of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The collector has it.
    Delivered,
    /// Try again later (network error, timeout, 408, 429, 5xx), after `after` if the server said.
    Retry { after: Option<Duration> },
    /// The collector refused it for good (400, 401, 413…): never retried.
    Rejected { status: u16 },
}

/// A way to deliver a batch. `body` is the gzip-compressed JSON of a Segment batch; `timeout`
/// bounds the whole attempt.
pub trait Transport: Send + Sync + fmt::Debug {
    fn send(&self, body: &[u8], timeout: Duration) -> Outcome;
}

/// Segment-compatible HTTP: `POST {endpoint}/v1/batch`, gzip, Basic auth with the write key.
pub struct HttpTransport {
    agent: ureq::Agent,
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
    pub fn new(endpoint: &str, write_key: &str, connect_timeout: Duration) -> HttpTransport {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(connect_timeout))
            .max_redirects(0)
            .build()
            .into();
        HttpTransport {
            agent,
            url: format!("{}/v1/batch", endpoint.trim_end_matches('/')),
            authorization: format!("Basic {}", b64(format!("{write_key}:").as_bytes())),
            user_agent: format!("opentally-rust/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Transport for HttpTransport {
    fn send(&self, body: &[u8], timeout: Duration) -> Outcome {
        let result = self
            .agent
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
            Ok(resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Outcome::Delivered,
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
            Ok(()) => Outcome::Delivered,
            Err(_) => Outcome::Retry { after: None },
        }
    }
}

/// Records every batch it is given (decompressed) and answers with a scripted outcome; for
/// tests of the client without a network.
#[derive(Debug, Default)]
pub struct RecordingTransport {
    pub batches: Mutex<Vec<serde_json::Value>>,
    /// Outcomes to give, first to last; `Delivered` once they run out.
    pub script: Mutex<Vec<Outcome>>,
}

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

impl Transport for RecordingTransport {
    fn send(&self, body: &[u8], _timeout: Duration) -> Outcome {
        let outcome = {
            let mut script = self.script.lock().expect("not poisoned");
            if script.is_empty() {
                Outcome::Delivered
            } else {
                script.remove(0)
            }
        };
        if outcome == Outcome::Delivered
            && let Some(v) = crate::wire::gunzip(body).and_then(|b| serde_json::from_slice(&b).ok())
        {
            self.batches.lock().expect("not poisoned").push(v);
        }
        outcome
    }
}

/// Base64 for one header; a dependency would be more than this.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn matches_the_standard_alphabet() {
        assert_eq!(encode(b"otw_k:"), "b3R3X2s6");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"a"), "YQ==");
        assert_eq!(encode(b""), "");
    }
}
