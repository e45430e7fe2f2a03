//! What goes over the wire: a batch's request body, gzip-compressed.

use std::io::{Read, Write};

use opentally_protocol::Timestamp;

/// Compresses a request body.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Decompresses a gzip body; `None` if it is not gzip.
pub fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The request body: the messages with a fresh `sentAt` (so the collector's clock-skew correction
/// measures this attempt, not the first one), gzip-compressed.
pub(crate) fn batch_body(array: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(array.len() + 64);
    body.extend_from_slice(format!("{{\"sentAt\":\"{}\",\"batch\":", Timestamp::now()).as_bytes());
    body.extend_from_slice(array);
    body.push(b'}');
    gzip(&body)
}

/// How many messages a JSON array holds (0 if it is not one).
pub(crate) fn count_messages(array: &[u8]) -> u64 {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(array).map_or(0, |v| v.len() as u64)
}
