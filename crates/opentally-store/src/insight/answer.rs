//! An insight's answer: named tables of JSON values.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::query::Table;

/// An insight's answer: one or more named tables.
#[derive(Debug, Clone, Serialize)]
pub struct InsightResult {
    pub kind: &'static str,
    pub tables: BTreeMap<&'static str, Table>,
    /// What answered: `rollups` (per-day sketches made at sealing), `sequences` (per-install
    /// event sequences made at sealing: funnels and paths) or `events` (a scan).
    pub source: &'static str,
    /// How distinct installs were counted: `exact`, or estimated by a theta sketch (only
    /// rollups estimate: counts of more than 4,096 installs, and set operations over
    /// sketches past their exact size).
    pub distinct: &'static str,
    /// How long the query took, in milliseconds.
    pub query_ms: f64,
}

pub(crate) fn round(x: f64, digits: i32) -> Value {
    let p = 10f64.powi(digits);
    serde_json::Number::from_f64((x * p).round() / p).map_or(Value::Null, Value::Number)
}

pub(crate) fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> Table {
    Table {
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows,
        truncated: false,
    }
}
