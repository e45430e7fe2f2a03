//! The network a host runs in, as its environment describes it: the proxy and the roots trusted
//! for TLS, for the batches and for the user's erase and export requests alike.

use std::path::PathBuf;

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
                    // Named without the credentials it may hold.
                    let shown = match p.split_once("://") {
                        Some((scheme, rest)) => {
                            format!(
                                "{scheme}://{}",
                                rest.rsplit_once('@').map_or(rest, |(_, h)| h)
                            )
                        }
                        None => p.rsplit_once('@').map_or(p, |(_, h)| h).to_owned(),
                    };
                    return Err(format!(
                        "the proxy {shown:?} cannot be used: only http:// and https:// proxies are"
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::{HttpTransport, Outcome, Transport};

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
        // The reason names the proxy without its credentials.
        let err = Network {
            proxy: Some("socks5://user:secret@127.0.0.1:1".into()),
            ca_bundle: None,
        }
        .agent(builder())
        .unwrap_err();
        assert!(
            err.contains("socks5://127.0.0.1:1") && !err.contains("secret"),
            "{err}"
        );
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
