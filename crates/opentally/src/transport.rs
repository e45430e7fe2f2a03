//! How a batch leaves the process: the HTTP transport (ureq, blocking, on the worker thread
//! only, through the host's proxy and trusted roots), a local file for `OPENTALLY_TELEMETRY=local`, and a recording transport for tests.

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
    control: Option<opentally_protocol::Control>,
}

/// Reads a delivery's answer: the collector's own (`"ok": true`, a control whose sample is a
/// fraction), or nothing to learn from.
pub(crate) fn read_reply(body: &[u8]) -> Reply {
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer { ok: true, control })
            if control.is_none_or(|c| c.sample.is_none_or(|r| (0.0..=1.0).contains(&r))) =>
        {
            Reply::Answered(control)
        }
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
    /// `None` when the network cannot be used (see [`Network::agent`]): every send fails.
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

/// The network a host runs in, as its environment describes it: the proxy (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl reads them) and the roots trusted for TLS
/// (`OPENTALLY_CA_BUNDLE`, else `SSL_CERT_FILE`: a PEM file; without either, the public roots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub proxy: Option<String>,
    pub ca_bundle: Option<PathBuf>,
}

impl Network {
    /// The network for requests to `endpoint`, from variables looked up with `var`.
    pub fn from_env(endpoint: &str, var: &dyn Fn(&str) -> Option<String>) -> Network {
        let var = |name: &str| {
            var(name)
                .or_else(|| var(&name.to_ascii_lowercase()))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let proxy = endpoint.parse::<ureq::http::Uri>().ok().and_then(|uri| {
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            if bypasses_proxy(uri.host()?, port, var("NO_PROXY").as_deref()) {
                return None;
            }
            if https {
                var("HTTPS_PROXY").or_else(|| var("ALL_PROXY"))
            } else {
                var("HTTP_PROXY").or_else(|| var("ALL_PROXY"))
            }
        });
        Network {
            proxy,
            ca_bundle: var("OPENTALLY_CA_BUNDLE")
                .or_else(|| var("SSL_CERT_FILE"))
                .map(PathBuf::from),
        }
    }

    /// An agent that goes through this network, or why there is none: a proxy that cannot be
    /// used (not a URL, or not `http://` or `https://`: SOCKS is not built in) is never gone
    /// around, since the user set it for a reason, so requests fail instead (and are retried,
    /// spooled and counted: never the host's concern). A CA bundle that cannot be read trusts
    /// nothing, for the same reason.
    pub(crate) fn agent(
        &self,
        config: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
    ) -> Result<ureq::Agent, String> {
        let proxy = match self.proxy.as_deref() {
            None => None,
            Some(p) => match ureq::Proxy::new(p) {
                Ok(proxy)
                    if matches!(
                        proxy.protocol(),
                        ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
                    ) =>
                {
                    Some(proxy)
                }
                _ => {
                    return Err(format!(
                        "the proxy {p:?} cannot be used: only http:// and https:// proxies are"
                    ));
                }
            },
        };
        // Set even when absent, so that ureq does not read the process's variables itself: the
        // client may have been given another environment.
        let mut config = config.proxy(proxy);
        if let Some(path) = &self.ca_bundle {
            let certs: Vec<ureq::tls::Certificate<'static>> = std::fs::read(path)
                .ok()
                .map(|pem| {
                    ureq::tls::parse_pem(&pem)
                        .filter_map(|item| match item {
                            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(config.build().into())
    }
}

/// Whether `NO_PROXY` exempts this host: `*`, exact names or addresses, domain suffixes
/// (`.example.com`, `example.com` for its subdomains too), each with an optional port.
pub fn bypasses_proxy(host: &str, port: u16, no_proxy: Option<&str>) -> bool {
    let Some(no_proxy) = no_proxy else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    no_proxy
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') || n.ends_with(']') => {
                    (n.to_owned(), p.parse::<u16>().ok())
                }
                _ => (entry.clone(), None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let name = name.strip_prefix('*').unwrap_or(name);
            match name.strip_prefix('.') {
                Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
                None => host == name || host.ends_with(&format!(".{name}")),
            }
        })
}

impl HttpTransport {
    pub fn new(
        endpoint: &str,
        write_key: &str,
        connect_timeout: Duration,
        network: &Network,
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

    /// The same cases as the Node SDK's test: both read `NO_PROXY` alike.
    #[test]
    fn no_proxy_matches_names_suffixes_ports_and_star() {
        assert!(bypasses_proxy(
            "collector.example.org",
            443,
            Some("example.org")
        ));
        assert!(bypasses_proxy(
            "collector.example.org",
            443,
            Some(".example.org")
        ));
        assert!(!bypasses_proxy("notexample.org", 443, Some("example.org")));
        assert!(!bypasses_proxy("127.0.0.1", 8080, Some("127.0.0.1:9090")));
        assert!(bypasses_proxy(
            "127.0.0.1",
            8080,
            Some("localhost, 127.0.0.1:8080")
        ));
        assert!(bypasses_proxy("[::1]", 8080, Some("::1")));
        assert!(bypasses_proxy("anything", 80, Some("*")));
        assert!(!bypasses_proxy("anything", 80, None));
    }

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

    #[test]
    fn a_proxy_that_cannot_be_used_is_never_gone_around() {
        let builder = || ureq::Agent::config_builder();
        for p in [
            "socks5h://127.0.0.1:9050",
            "socks5://127.0.0.1:1",
            "ftp://127.0.0.1:1",
            "http://u:%FF@127.0.0.1:1",
        ] {
            let n = Network {
                proxy: Some(p.into()),
                ca_bundle: None,
            };
            // `%FF` is read by ureq as a byte, so only the schemes are certain to be refused.
            if !p.starts_with("http://") {
                assert!(n.agent(builder()).is_err(), "{p}");
            }
        }
        for p in [
            "http://127.0.0.1:3128",
            "127.0.0.1:3128",
            "https://proxy.example.org",
        ] {
            let n = Network {
                proxy: Some(p.into()),
                ca_bundle: None,
            };
            assert!(n.agent(builder()).is_ok(), "{p}");
        }
        // Nothing to read from a transport without an agent: every send is retried later.
        let t = HttpTransport::new(
            "http://127.0.0.1:9",
            "k",
            Duration::from_secs(1),
            &Network {
                proxy: Some("socks5h://127.0.0.1:9050".into()),
                ca_bundle: None,
            },
        );
        assert_eq!(
            t.send(b"", Duration::from_secs(1)),
            Outcome::Retry { after: None }
        );
    }

    #[test]
    fn the_proxy_follows_the_endpoints_scheme_as_curl_reads_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let vars = env(&[
            ("HTTPS_PROXY", "http://secure:3128"),
            ("http_proxy", "http://plain:3128"),
            ("SSL_CERT_FILE", "/etc/ssl/corp.pem"),
        ]);
        let https = Network::from_env("https://t.example.org", &vars);
        assert_eq!(https.proxy.as_deref(), Some("http://secure:3128"));
        assert_eq!(https.ca_bundle, Some(PathBuf::from("/etc/ssl/corp.pem")));
        let http = Network::from_env("http://127.0.0.1:8080", &vars);
        assert_eq!(http.proxy.as_deref(), Some("http://plain:3128"));
        let all = Network::from_env("http://h", &env(&[("ALL_PROXY", "http://all:1")]));
        assert_eq!(all.proxy.as_deref(), Some("http://all:1"));
        let bypass = env(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "127.0.0.1")]);
        assert_eq!(Network::from_env("http://127.0.0.1:9", &bypass).proxy, None);
        let ours = env(&[
            ("OPENTALLY_CA_BUNDLE", "/a.pem"),
            ("SSL_CERT_FILE", "/b.pem"),
        ]);
        assert_eq!(
            Network::from_env("https://h", &ours).ca_bundle,
            Some(PathBuf::from("/a.pem"))
        );
        assert_eq!(
            Network::from_env("https://h", &env(&[])),
            Network::default()
        );
    }
}
