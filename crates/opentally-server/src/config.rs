//! The collector's settings: read from a TOML file, `OPENTALLY_*` environment variables and
//! command-line flags, combined in one place with one precedence:
//!
//! **flags > environment > file > defaults.**
//!
//! Each source is read into a [`RawConfig`] (every field optional, unknown fields refused), then
//! [`resolve`] merges them and validates the result into a [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr ; )*) => {
        /// Settings as read from one source; `None` means "not set here".
        #[derive(Debug, Default, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawConfig {
            $( $(#[doc = $doc])* pub $name: Option<$ty>, )*
        }

        /// The name of every setting (its environment variable is `OPENTALLY_` + the name in
        /// upper case).
        pub const SETTINGS: &[&str] = &[ $( stringify!($name), )* ];

        impl RawConfig {
            /// Fields set here win; the rest come from `lower`.
            #[must_use]
            pub fn over(self, lower: RawConfig) -> RawConfig {
                RawConfig { $( $name: self.$name.or(lower.$name), )* }
            }

            fn defaults() -> RawConfig {
                RawConfig { $( $name: Some($default.into()), )* }
            }
        }
    };
}

settings! {
    /// Directory for the log, the dedup index and the project database.
    data: PathBuf = "./opentally-data";
    /// Address and port to listen on.
    listen: String = "127.0.0.1:8080";
    /// Sync the log before acknowledging. Turn off only to measure what durability costs.
    fsync: bool = true;
    /// Days over which a repeated messageId is recognised and not stored twice.
    dedup_window_days: u32 = 7u32;
    /// Largest message, in bytes of its JSON text.
    max_message_bytes: usize = 32_768usize;
    /// Largest request body, compressed and decompressed, in bytes.
    max_body_bytes: usize = 512_000usize;
    /// Most messages in one batch.
    max_batch_messages: usize = 2_500usize;
    /// Below this much free disk space (MiB), ingest answers 503 with Retry-After.
    disk_low_water_mb: u64 = 256u64;
    /// Requests per second allowed per write key (token bucket; bursts of twice this).
    key_requests_per_sec: u32 = 5_000u32;
    /// Events per second allowed per install (token bucket).
    install_events_per_sec: u32 = 100u32;
    /// Burst of events allowed per install above the steady rate.
    install_events_burst: u32 = 5_000u32;
    /// Erase and export requests allowed per project and minute (a user's rights are asked for
    /// rarely; each erasure rewrites the parts that hold the install).
    privacy_requests_per_minute: u32 = 30u32;
    /// Requests that may wait for the log writer before ingest answers 429.
    writer_queue: usize = 1_024usize;
    /// Longest time a request may take, reading its body included, in seconds.
    request_timeout_secs: u64 = 30u64;
    /// Longest time a client may take to send a request's headers, in seconds; a connection
    /// that sends none (an idle or a slowloris socket) is closed after it.
    header_timeout_secs: u64 = 10u64;
    /// Most connections open at once; further clients wait in the listen queue. Lowered at
    /// start to what the process's open-file limit leaves room for.
    max_connections: usize = 1_024usize;
    /// Longest time a shutdown waits for connections in flight, in seconds.
    shutdown_grace_secs: u64 = 10u64;
    /// Size at which a log segment is closed and a new one started, in MiB.
    segment_mb: u64 = 64u64;
    /// Seal the store's in-memory tail into Parquet parts once it holds this many events…
    store_seal_events: usize = 25_000usize;
    /// …or once its oldest event has waited this many seconds.
    store_seal_secs: u64 = 10u64;
    /// Above this many acknowledged events not yet sealed into parts, ingest answers 429.
    store_max_unsealed_events: usize = 2_000_000usize;
    /// Nice value of the store's loader thread (Linux), 0 to 19: above 0, bursts of ingest get
    /// the cores first and loading catches up after; 0 gives loading an equal share.
    store_loader_nice: i32 = 10i32;
    /// Days of events the store keeps (older days are dropped hourly); 0 keeps them forever.
    store_retention_days: u32 = 0u32;
    /// Memory the store may keep parts' per-install sequences in (funnels, paths), with the
    /// spans that join a block of past days for paths and the "ok" installs friction merges per
    /// block, in MiB; 0 reads them from disk at every query.
    store_sequence_cache_mb: usize = 256usize;
    /// Longest time an insight or SQL query may run, in seconds.
    query_timeout_secs: u64 = 30u64;
    /// Most memory one query may use, in MiB.
    query_memory_mb: usize = 512usize;
    /// Most insight or SQL queries running at once; more wait a few seconds, then get 503.
    query_max_concurrent: usize = 4usize;
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub fsync: bool,
    pub dedup_window_days: u32,
    pub limits: opentally_protocol::Limits,
    pub disk_low_water_bytes: u64,
    pub key_requests_per_sec: u32,
    pub install_events_per_sec: u32,
    pub install_events_burst: u32,
    pub privacy_requests_per_minute: u32,
    pub writer_queue: usize,
    pub request_timeout: std::time::Duration,
    pub header_timeout: std::time::Duration,
    pub max_connections: usize,
    pub shutdown_grace: std::time::Duration,
    pub segment_bytes: u64,
    pub store: opentally_store::Options,
    pub store_max_unsealed: usize,
    pub loader_nice: i32,
    pub query_limits: opentally_store::Limits,
    pub query_max_concurrent: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("setting `{name}`: {message}")]
    Invalid { name: &'static str, message: String },
}

impl RawConfig {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&src).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads `OPENTALLY_<NAME>` for every setting from `vars`. Values are read as TOML (`true`,
    /// `42`) and, failing that, as strings. Other `OPENTALLY_*` variables belong to the SDK and
    /// are ignored here.
    pub fn from_env(vars: impl Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigError> {
        let mut raw = RawConfig::default();
        for name in SETTINGS {
            let var = format!("OPENTALLY_{}", name.to_uppercase());
            let Some(text) = vars(&var) else { continue };
            let value = toml::from_str::<toml::Table>(&format!("v = {text}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(text));
            let mut table = toml::Table::new();
            table.insert((*name).to_owned(), value);
            let one: RawConfig =
                toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::Env {
                        var,
                        message: e.message().to_owned(),
                    })?;
            raw = one.over(raw);
        }
        Ok(raw)
    }
}

fn positive<T: PartialOrd + Default + Copy>(name: &'static str, v: T) -> Result<T, ConfigError> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            name,
            message: "must be greater than zero".into(),
        })
    }
}

/// Merges the sources (flags > env > file > defaults) and validates the result.
pub fn resolve(file: RawConfig, env: RawConfig, flags: RawConfig) -> Result<Config, ConfigError> {
    let r = flags.over(env).over(file).over(RawConfig::defaults());
    // Every field is set now: `defaults()` sets all of them.
    let listen_text = r.listen.expect("defaulted");
    let listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
        name: "listen",
        message: format!("{listen_text:?} is not an address:port such as 127.0.0.1:8080"),
    })?;
    let limits = opentally_protocol::Limits {
        max_message_bytes: positive("max_message_bytes", r.max_message_bytes.expect("defaulted"))?,
        max_body_bytes: positive("max_body_bytes", r.max_body_bytes.expect("defaulted"))?,
        max_batch_messages: positive(
            "max_batch_messages",
            r.max_batch_messages.expect("defaulted"),
        )?,
        ..opentally_protocol::Limits::default()
    };
    Ok(Config {
        data: r.data.expect("defaulted"),
        listen,
        fsync: r.fsync.expect("defaulted"),
        dedup_window_days: positive("dedup_window_days", r.dedup_window_days.expect("defaulted"))?,
        limits,
        disk_low_water_bytes: r.disk_low_water_mb.expect("defaulted") * 1024 * 1024,
        key_requests_per_sec: positive(
            "key_requests_per_sec",
            r.key_requests_per_sec.expect("defaulted"),
        )?,
        install_events_per_sec: positive(
            "install_events_per_sec",
            r.install_events_per_sec.expect("defaulted"),
        )?,
        install_events_burst: positive(
            "install_events_burst",
            r.install_events_burst.expect("defaulted"),
        )?,
        privacy_requests_per_minute: positive(
            "privacy_requests_per_minute",
            r.privacy_requests_per_minute.expect("defaulted"),
        )?,
        writer_queue: positive("writer_queue", r.writer_queue.expect("defaulted"))?,
        header_timeout: std::time::Duration::from_secs(positive(
            "header_timeout_secs",
            r.header_timeout_secs.expect("defaulted"),
        )?),
        max_connections: positive("max_connections", r.max_connections.expect("defaulted"))?,
        shutdown_grace: std::time::Duration::from_secs(positive(
            "shutdown_grace_secs",
            r.shutdown_grace_secs.expect("defaulted"),
        )?),
        request_timeout: std::time::Duration::from_secs(positive(
            "request_timeout_secs",
            r.request_timeout_secs.expect("defaulted"),
        )?),
        segment_bytes: positive("segment_mb", r.segment_mb.expect("defaulted"))? * 1024 * 1024,
        store: opentally_store::Options {
            seal_rows: positive("store_seal_events", r.store_seal_events.expect("defaulted"))?,
            seal_after: std::time::Duration::from_secs(positive(
                "store_seal_secs",
                r.store_seal_secs.expect("defaulted"),
            )?),
            retention_days: Some(r.store_retention_days.expect("defaulted")).filter(|d| *d > 0),
            sequence_cache_bytes: r.store_sequence_cache_mb.expect("defaulted") << 20,
            ..opentally_store::Options::default()
        },
        store_max_unsealed: positive(
            "store_max_unsealed_events",
            r.store_max_unsealed_events.expect("defaulted"),
        )?,
        loader_nice: match r.store_loader_nice.expect("defaulted") {
            n @ 0..=19 => n,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "store_loader_nice",
                    message: "must be from 0 to 19".into(),
                });
            }
        },
        query_limits: opentally_store::Limits {
            time: std::time::Duration::from_secs(positive(
                "query_timeout_secs",
                r.query_timeout_secs.expect("defaulted"),
            )?),
            memory_bytes: positive("query_memory_mb", r.query_memory_mb.expect("defaulted"))? << 20,
            ..opentally_store::Limits::default()
        },
        query_max_concurrent: positive(
            "query_max_concurrent",
            r.query_max_concurrent.expect("defaulted"),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let file: RawConfig = toml::from_str(
            "listen = \"127.0.0.1:1\"\nfsync = false\nwriter_queue = 7\nsegment_mb = 3",
        )
        .unwrap();
        let env = RawConfig::from_env(env(&[
            ("OPENTALLY_LISTEN", "127.0.0.1:2"),
            ("OPENTALLY_WRITER_QUEUE", "9"),
        ]))
        .unwrap();
        let flags = RawConfig {
            listen: Some("127.0.0.1:3".into()),
            ..RawConfig::default()
        };
        let c = resolve(file, env, flags).unwrap();
        assert_eq!(c.listen.port(), 3, "flag wins");
        assert_eq!(c.writer_queue, 9, "env beats file");
        assert!(!c.fsync, "file beats default");
        assert_eq!(c.segment_bytes, 3 * 1024 * 1024);
        assert_eq!(c.dedup_window_days, 7, "default");
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = RawConfig::from_env(env(&[("OPENTALLY_FSYNC", "maybe")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable OPENTALLY_FSYNC: invalid type: string \"maybe\", expected a boolean"
        );
        let e = toml::from_str::<RawConfig>("fsyn = true").unwrap_err();
        assert!(e.to_string().contains("unknown field `fsyn`"), "{e}");
        let e = resolve(
            RawConfig::default(),
            RawConfig::default(),
            RawConfig {
                writer_queue: Some(0),
                ..RawConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting `writer_queue`: must be greater than zero"
        );
        let e = resolve(
            RawConfig::default(),
            RawConfig::default(),
            RawConfig {
                listen: Some("localhost".into()),
                ..RawConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting `listen`: \"localhost\" is not an address:port such as 127.0.0.1:8080"
        );
        for nice in ["-1", "20"] {
            let e = resolve(
                RawConfig::default(),
                RawConfig::from_env(env(&[("OPENTALLY_STORE_LOADER_NICE", nice)])).unwrap(),
                RawConfig::default(),
            )
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                "setting `store_loader_nice`: must be from 0 to 19"
            );
        }
    }

    #[test]
    fn sdk_variables_are_not_server_settings() {
        let raw = RawConfig::from_env(env(&[
            ("OPENTALLY_WRITE_KEY", "k"),
            ("OPENTALLY_ENDPOINT", "x"),
        ]))
        .unwrap();
        assert_eq!(raw, RawConfig::default());
    }

    #[test]
    fn every_setting_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        for name in SETTINGS {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/configuration.md lacks `{name}`"
            );
            let var = format!("OPENTALLY_{}", name.to_uppercase());
            assert!(doc.contains(&var), "docs/configuration.md lacks {var}");
        }
    }
}
