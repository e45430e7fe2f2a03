//! Integration tests of the wire format: real client captures, tables of bad input, round trips
//! and catalogs. One binary, one module per subject.

mod catalog;
mod fixtures;
mod messages;
mod roundtrip;

use opentally_protocol::{
    Catalog, Limits, ParsedRequest, Timestamp, check_message, effective_timestamp, parse_batch,
};

/// The receipt time every table test uses.
pub fn received_at() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:05Z").unwrap()
}

/// Runs a request body through the whole per-message pipeline the collector uses (parse,
/// required fields, timestamp, catalog) and describes each item's fate in one line:
/// `ok`, `ok dropped=[…]` or `reason: detail`.
pub fn outcomes(body: &[u8], catalog: Option<&Catalog>) -> Result<Vec<String>, String> {
    let limits = Limits::default();
    let ParsedRequest { items, sent_at, .. } =
        parse_batch(body, &limits).map_err(|e| format!("{}: {e}", e.code()))?;
    Ok(items
        .into_iter()
        .map(|item| {
            let result = item.message.and_then(|mut m| {
                check_message(&m, &limits)?;
                effective_timestamp(&m, sent_at, received_at(), &limits)?;
                opentally_protocol::privacy::apply(&mut m, catalog)
            });
            match result {
                Ok(d) if d.is_empty() => "ok".to_owned(),
                Ok(d) => format!("ok dropped=[{}]", d.join(", ")),
                Err(r) => r.to_string(),
            }
        })
        .collect())
}

/// The example catalog shipped in the repository.
pub fn example_catalog() -> Catalog {
    let src = include_str!("../../../../examples/catalog.toml");
    Catalog::from_toml_str(src).expect("the example catalog is valid")
}
