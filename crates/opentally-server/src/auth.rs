//! Finding the write key of a request, in every form Segment-style clients send it, and the
//! project it belongs to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use base64::Engine as _;

use crate::meta::{MetaError, MetaStore, Project};

/// The write key named by the request's headers, if any: `Authorization: Basic
/// base64(key:)` (the colon optional), `Authorization: Bearer key`, or `X-Write-Key: key`.
/// A body `writeKey` is the fallback, read by the caller after parsing.
pub fn header_write_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(b64) = strip_scheme(v, "basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            // `key:` with an empty password, as Segment's clients send; also `key` alone.
            let key = text.split_once(':').map_or(text.as_str(), |(k, _)| k);
            return (!key.is_empty()).then(|| key.to_owned());
        }
        if let Some(token) = strip_scheme(v, "bearer") {
            let token = token.trim();
            return (!token.is_empty()).then(|| token.to_owned());
        }
    }
    headers
        .get("x-write-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

fn strip_scheme<'a>(v: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = v.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// A cache of key lookups in front of the metadata store. Admin commands in another process
/// change the store; [`KeyCache::refresh_if_changed`], called every second, clears the cache
/// when SQLite's `data_version` moves, so a rotated key stops working within a second.
#[derive(Debug)]
pub struct KeyCache {
    meta: Arc<MetaStore>,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    version: i64,
    write_keys: HashMap<[u8; 32], Option<Arc<Project>>>,
    admin_tokens: HashMap<[u8; 32], Option<Arc<Project>>>,
}

/// Entries kept at most; unknown keys are cached too, so a flood of bad keys costs one lookup each
/// until the cache is full, then it is cleared.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy)]
enum Kind {
    Write,
    Admin,
}

impl KeyCache {
    pub fn new(meta: Arc<MetaStore>) -> KeyCache {
        KeyCache {
            meta,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn project_for_write_key(&self, key: &str) -> Result<Option<Arc<Project>>, MetaError> {
        self.lookup(key, Kind::Write)
    }

    pub fn project_for_admin_token(&self, token: &str) -> Result<Option<Arc<Project>>, MetaError> {
        self.lookup(token, Kind::Admin)
    }

    fn lookup(&self, secret: &str, kind: Kind) -> Result<Option<Arc<Project>>, MetaError> {
        let h = crate::secret::hash_secret(secret);
        {
            let inner = self.lock();
            let map = match kind {
                Kind::Write => &inner.write_keys,
                Kind::Admin => &inner.admin_tokens,
            };
            if let Some(hit) = map.get(&h) {
                return Ok(hit.clone());
            }
        }
        let found = match kind {
            Kind::Write => self.meta.project_by_write_key(secret)?,
            Kind::Admin => self.meta.project_by_admin_token(secret)?,
        }
        .map(Arc::new);
        let mut inner = self.lock();
        let map = match kind {
            Kind::Write => &mut inner.write_keys,
            Kind::Admin => &mut inner.admin_tokens,
        };
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(h, found.clone());
        Ok(found)
    }

    /// Clears the cache if the metadata changed since the last call.
    pub fn refresh_if_changed(&self) -> Result<(), MetaError> {
        let version = self.meta.data_version()?;
        let mut inner = self.lock();
        if inner.version != version {
            inner.version = version;
            inner.write_keys.clear();
            inner.admin_tokens.clear();
        }
        Ok(())
    }

    /// Forgets every cached lookup (after a change made through this process's own connection,
    /// which `data_version` does not report).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.write_keys.clear();
        inner.admin_tokens.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn every_header_form_yields_the_key() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases: Vec<(HeaderMap, Option<&str>)> = vec![
            (
                headers(&[("authorization", &format!("Basic {}", b64("wk:")))]),
                Some("wk"),
            ),
            (
                headers(&[("authorization", &format!("Basic {}", b64("wk")))]),
                Some("wk"),
            ),
            (
                headers(&[("authorization", &format!("basic {}", b64("wk:ignored")))]),
                Some("wk"),
            ),
            (headers(&[("authorization", "Bearer wk")]), Some("wk")),
            (headers(&[("x-write-key", "wk")]), Some("wk")),
            (headers(&[("authorization", "Basic !!!notbase64")]), None),
            (
                headers(&[("authorization", &format!("Basic {}", b64(":")))]),
                None,
            ),
            (headers(&[("authorization", "Bearer ")]), None),
            (headers(&[]), None),
        ];
        for (i, (h, expected)) in cases.iter().enumerate() {
            assert_eq!(header_write_key(h).as_deref(), *expected, "case {i}");
        }
    }
}
