//! Queries: a DataFusion session over one project's parts and tail, read-only SQL with a time
//! and a memory limit, and results as a plain table.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::Value;

use crate::schema::{self, scalar_text};
use crate::store::Snapshot;

/// Bounds on one query.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub time: Duration,
    pub memory_bytes: usize,
    /// Rows returned at most; the result says when it was cut.
    pub max_rows: usize,
    /// Bytes of values returned at most (strings' lengths, 8 for any other value); the result
    /// says when it was cut.
    pub max_result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_secs(30),
            memory_bytes: 512 << 20,
            max_rows: 10_000,
            max_result_bytes: 32 << 20,
        }
    }
}

impl Limits {
    /// What one call of a growing scalar function may make (`repeat`, `lpad`…): a quarter of
    /// the query's memory, which the pool does not see.
    pub fn function_bytes(&self) -> usize {
        (self.memory_bytes / 4).max(1 << 10)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadQuery(String),
    #[error("the query ran longer than its limit of {0:?}")]
    Timeout(Duration),
    #[error("the query needed more memory than its limit: {0}")]
    Memory(String),
    #[error("the query failed: {0}")]
    Internal(String),
    #[error("{0} queries are running already; try again in a moment")]
    Busy(usize),
}

impl QueryError {
    /// A stable code for API responses.
    pub fn reason(&self) -> &'static str {
        match self {
            QueryError::BadQuery(_) => "bad_query",
            QueryError::Timeout(_) => "query_timeout",
            QueryError::Memory(_) => "query_memory",
            QueryError::Internal(_) => "query_failed",
            QueryError::Busy(_) => "query_busy",
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::BadQuery(root.to_string()),
            DataFusionError::ResourcesExhausted(m) => QueryError::Memory(m.clone()),
            _ => QueryError::Internal(root.to_string()),
        }
    }
}

/// A result: named, typed columns and rows of JSON values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// True when rows beyond the row limit were left off.
    pub truncated: bool,
}

impl Table {
    /// The table as CSV text (RFC 4180 quoting).
    pub fn to_csv(&self) -> String {
        fn field(out: &mut String, s: &str) {
            if s.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(s);
            }
        }
        let mut out = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, c);
        }
        out.push('\n');
        for row in &self.rows {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match v {
                    Value::Null => {}
                    // Text that a spreadsheet would run as a formula (event names and property
                    // values come from clients) is kept as text with a leading `'`.
                    Value::String(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
                        field(&mut out, &format!("'{s}"));
                    }
                    Value::String(s) => field(&mut out, s),
                    other => field(&mut out, &other.to_string()),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The table aligned for a terminal.
    pub fn to_text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n
                            .as_f64()
                            .filter(|_| n.is_f64())
                            .map_or_else(|| n.to_string(), |f| format!("{f:.3}")),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &cells {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |vals: &[String]| {
            let mut s = String::new();
            for (i, (v, w)) in vals.iter().zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let _ = write!(s, "{v:<w$}");
            }
            s.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.columns);
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
        for r in &cells {
            out.push_str(&line(r));
        }
        out
    }
}

/// `json_get(json_text, 'a.b')`: the scalar at a dotted path of a JSON object, as text; null
/// when the text is null or not JSON, the path is missing, or the value is not a scalar.
fn json_get_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "json_get",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (texts, paths) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
            let out: StringArray = (0..rows)
                .map(|i| {
                    if texts.is_null(i) || paths.is_null(i) {
                        return None;
                    }
                    let v: Value = serde_json::from_str(texts.value(i)).ok()?;
                    let mut cur = &v;
                    for key in paths.value(i).split('.') {
                        cur = cur.as_object()?.get(key)?;
                    }
                    scalar_text(cur).map(std::borrow::Cow::into_owned)
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// A session whose `events` table is the snapshot: its parts and its tail.
pub async fn session(snapshot: &Snapshot, limits: &Limits) -> Result<SessionContext, QueryError> {
    // A fair pool: operators that can spill (sorts, repartitions) share what the ones that
    // cannot (a sort's final merge) leave, instead of the first sort taking it all.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
        .build_arc()?;
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_udf(json_get_udf());
    let batch_rows = ctx.state().config().batch_size();
    crate::guard::bound_functions(&ctx, limits.function_bytes(), batch_rows)?;
    let tail = MemTable::try_new(
        schema::schema(),
        vec![snapshot.tail.iter().map(|b| b.rows.clone()).collect()],
    )?;
    ctx.register_table("tail", Arc::new(tail))?;
    if snapshot.parts.is_empty() {
        ctx.sql("CREATE VIEW events AS SELECT * FROM tail").await?;
    } else {
        let urls = snapshot
            .parts
            .iter()
            .map(|p| ListingTableUrl::parse(p.path.to_string_lossy()))
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema::schema());
        ctx.register_table("parts", Arc::new(ListingTable::try_new(config)?))?;
        ctx.sql("CREATE VIEW events AS SELECT * FROM parts UNION ALL SELECT * FROM tail")
            .await?;
    }
    Ok(ctx)
}

/// Runs one read-only statement over the snapshot.
pub async fn run_sql(snapshot: &Snapshot, sql: &str, limits: &Limits) -> Result<Table, QueryError> {
    let work = async {
        let ctx = session(snapshot, limits).await?;
        run_in(&ctx, sql, limits).await
    };
    tokio::time::timeout(limits.time, work)
        .await
        .map_err(|_| QueryError::Timeout(limits.time))?
}

/// Runs one read-only statement in a session made by [`session`], within `limits.time`: the
/// statement's size and depth are checked first, and its rows are streamed and cut at the row
/// and byte limits, never collected whole.
pub async fn run_in(ctx: &SessionContext, sql: &str, limits: &Limits) -> Result<Table, QueryError> {
    let started = Instant::now();
    let batch_rows = ctx.state().config().batch_size();
    let statement = crate::guard::check_statement(
        sql,
        crate::guard::max_statement_bytes(limits.memory_bytes, batch_rows),
    )?;
    let work = async {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let plan = ctx.state().statement_to_plan(statement).await?;
        options.verify_plan(&plan)?;
        let df = ctx.execute_logical_plan(plan).await?;
        let columns: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // One row past the limit says whether there were more.
        let mut stream = df
            .limit(0, Some(limits.max_rows + 1))?
            .execute_stream()
            .await?;
        let mut table = TableBuilder::new(columns, limits);
        while let Some(batch) = stream.next().await {
            if table.push(&batch?)?.is_break() {
                break;
            }
        }
        Ok::<_, QueryError>(table.finish())
    };
    let table = tokio::time::timeout(limits.time, work)
        .await
        .map_err(|_| QueryError::Timeout(limits.time))??;
    tracing::debug!(elapsed = ?started.elapsed(), rows = table.rows.len(), "query");
    Ok(table)
}

/// Rows gathered from a stream of batches, up to the row and byte limits.
struct TableBuilder {
    table: Table,
    max_rows: usize,
    max_bytes: usize,
    bytes: usize,
}

impl TableBuilder {
    fn new(columns: Vec<String>, limits: &Limits) -> TableBuilder {
        TableBuilder {
            table: Table {
                columns,
                rows: Vec::new(),
                truncated: false,
            },
            max_rows: limits.max_rows,
            max_bytes: limits.max_result_bytes,
            bytes: 0,
        }
    }

    /// Adds a batch's rows; `Break` once a limit is reached.
    fn push(&mut self, b: &RecordBatch) -> Result<std::ops::ControlFlow<()>, QueryError> {
        use std::ops::ControlFlow;
        let room = self.max_rows.saturating_sub(self.table.rows.len());
        if b.num_rows() > room {
            self.table.truncated = true;
        }
        // Only the rows that can still be returned are turned into values, one row at a time:
        // the rows of a batch may share one large buffer (a constant, a view), so the batch as
        // values can be far larger than the batch itself.
        for i in 0..b.num_rows().min(room) {
            let mut row: Vec<Value> = Vec::with_capacity(b.num_columns());
            for c in b.columns() {
                row.extend(json_values(&c.slice(i, 1))?);
            }
            self.bytes += row.iter().map(value_size).sum::<usize>();
            if self.bytes > self.max_bytes {
                self.table.truncated = true;
                return Ok(ControlFlow::Break(()));
            }
            self.table.rows.push(row);
        }
        Ok(if self.table.truncated {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }

    fn finish(self) -> Table {
        self.table
    }
}

/// What a value counts against the byte limit.
fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        _ => 8,
    }
}

fn json_values(a: &ArrayRef) -> Result<Vec<Value>, QueryError> {
    let cast =
        |t: &DataType| arrow::compute::cast(a, t).map_err(|e| QueryError::Internal(e.to_string()));
    let vals: Vec<Value> = match a.data_type() {
        DataType::Null => vec![Value::Null; a.len()],
        DataType::Boolean => a
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            cast(&DataType::Int64)?
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map_or(Value::Null, Value::from))
                .collect()
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            cast(&DataType::UInt64)?
                .as_primitive::<UInt64Type>()
                .iter()
                .map(|v| v.map_or(Value::Null, Value::from))
                .collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            cast(&DataType::Float64)?
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| {
                    v.and_then(serde_json::Number::from_f64)
                        .map_or(Value::Null, Value::Number)
                })
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            cast(&DataType::Utf8)?
                .as_string::<i32>()
                .iter()
                .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_owned())))
                .collect()
        }
        _ => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(a.as_ref(), &opts)
                .map_err(|e| QueryError::Internal(e.to_string()))?;
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(f.value(i).to_string())
                    }
                })
                .collect()
        }
    };
    Ok(vals)
}

#[cfg(test)]
mod tests {
    use super::Table;
    use serde_json::json;

    #[test]
    fn csv_quotes_and_keeps_formulas_as_text() {
        let t = Table {
            columns: vec!["event".into(), "n".into()],
            rows: vec![
                vec![json!("=HYPERLINK(\"http://x\",\"a\")"), json!(-3)],
                vec![json!("a,b"), json!(null)],
                vec![json!("@sum"), json!(1.5)],
            ],
            truncated: false,
        };
        assert_eq!(
            t.to_csv(),
            "event,n\n\"'=HYPERLINK(\"\"http://x\"\",\"\"a\"\")\",-3\n\"a,b\",\n'@sum,1.5\n"
        );
    }
}
