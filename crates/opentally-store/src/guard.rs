//! What keeps one query from taking the process down: a cap on the statement's size and on how
//! deep its expressions nest (checked before planning), scalar functions whose output could be
//! far larger than their input checked before and after they run, and [`QueryRunner`], which
//! runs every query on threads of its own with deep stacks, a few at a time.
//!
//! It must never let a query's failure reach the threads that acknowledge events: a query
//! that is too deep, too large or too slow gets an error, and the collector goes on.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Float64Type, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::query::QueryError;

/// The longest statement accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 64 << 10;

/// How deep expressions and subqueries may nest in a statement.
pub const MAX_EXPR_DEPTH: usize = 64;

/// The longest statement a query with `memory_bytes` may run: [`MAX_SQL_BYTES`], or less, so
/// that its literals, each repeated for every row of a batch of `batch_rows`, fit in its memory.
pub fn max_statement_bytes(memory_bytes: usize, batch_rows: usize) -> usize {
    MAX_SQL_BYTES
        .min(memory_bytes / batch_rows.max(1))
        .max(1 << 10)
}

/// Checks a statement's size and nesting before it is planned: a 1,000-term `1+1+…` is a tree
/// 1,000 deep, which the planner walks recursively.
pub fn check_statement(sql: &str, max_bytes: usize) -> Result<(), QueryError> {
    if sql.len() > max_bytes {
        return Err(QueryError::BadQuery(format!(
            "the statement is {} bytes; the limit is {max_bytes}",
            sql.len()
        )));
    }
    let dialect = GenericDialect {};
    let statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()?
        .parse_statements()?;
    if statements.len() != 1 {
        return Err(QueryError::BadQuery(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    let mut depth = Depth::default();
    for s in &statements {
        if visit(s, &mut depth).is_break() {
            return Err(QueryError::BadQuery(format!(
                "the statement nests expressions or subqueries more than {MAX_EXPR_DEPTH} deep"
            )));
        }
    }
    Ok(())
}

fn visit(s: &Statement, depth: &mut Depth) -> ControlFlow<()> {
    match s {
        Statement::Statement(s) => s.visit(depth),
        Statement::Explain(e) => visit(&e.statement, depth),
        // Refused as DDL or statements when planned.
        _ => ControlFlow::Continue(()),
    }
}

#[derive(Default)]
struct Depth {
    now: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        if self.now > MAX_EXPR_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<()> {
        self.now = self.now.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.leave()
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.leave()
    }
}

/// How a function's output size follows from its arguments, checked before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) × n` bytes.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: `n` characters, up to 4 bytes each.
    Pad,
    /// `replace(s, from, to)`, `regexp_replace(s, pattern, to [, flags])`: at most
    /// `(len(s) + 1) × len(to)` bytes.
    Replace,
    /// `array_repeat(x, n)`: `n` elements.
    ArrayRepeat,
    /// `range(start, stop [, step])`, `generate_series`: `(stop − start) / step` elements.
    Range,
    /// Output no larger than its inputs together (`concat`): checked after it runs only.
    Linear,
}

/// Functions that can make a value far larger than their arguments, and how.
const GROWING: [(&str, Growth); 11] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::Replace),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
    ("concat", Growth::Linear),
    ("concat_ws", Growth::Linear),
    ("array_concat", Growth::Linear),
];

/// Replaces the session's growing functions with ones that refuse, before allocating, to make
/// more than `cap` bytes in one call, and check every result against `cap` after. A constant
/// result counts `batch_rows` times: it is repeated for every row of a batch (and folded into
/// a literal when the statement is planned, out of reach of any later check).
pub fn bound_functions(
    ctx: &SessionContext,
    cap: usize,
    batch_rows: usize,
) -> Result<(), QueryError> {
    for (name, growth) in GROWING {
        let Ok(inner) = ctx.udf(name) else { continue };
        let bounded = Bounded {
            inner: inner.as_ref().clone(),
            growth,
            cap,
            batch_rows: batch_rows.max(1),
        };
        ctx.register_udf(ScalarUDF::new_from_impl(bounded));
    }
    Ok(())
}

/// A scalar function with a cap on what one call may allocate.
#[derive(Debug, PartialEq, Eq)]
struct Bounded {
    inner: ScalarUDF,
    growth: Growth,
    cap: usize,
    /// How many times a constant result is repeated: the rows of a batch.
    batch_rows: usize,
}

impl Hash for Bounded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.growth.hash(state);
        self.cap.hash(state);
        self.batch_rows.hash(state);
    }
}

fn too_large(name: &str, bytes: u128, cap: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name}() would make {bytes} bytes in one call; a function may make at most {cap}"
    ))
}

/// An argument's values as 64-bit integers, one per row (null as 0).
fn ints(v: &ColumnarValue, rows: usize) -> Vec<i128> {
    let Ok(a) = v.to_array(rows) else {
        return vec![0; rows];
    };
    let as_int = arrow::compute::cast(&a, &DataType::Int64).ok().map(|a| {
        a.as_primitive::<Int64Type>()
            .iter()
            .map(|x| i128::from(x.unwrap_or(0)))
            .collect::<Vec<_>>()
    });
    as_int.unwrap_or_else(|| {
        // Floats (`range` takes them too) round up.
        arrow::compute::cast(&a, &DataType::Float64).map_or_else(
            |_| vec![0; rows],
            |a| {
                a.as_primitive::<Float64Type>()
                    .iter()
                    .map(|x| {
                        #[allow(clippy::cast_possible_truncation)]
                        let n = x.unwrap_or(0.0).abs().ceil().min(1e30) as i128;
                        n
                    })
                    .collect()
            },
        )
    })
}

/// An argument's byte length, one per row (null as 0).
fn lengths(v: &ColumnarValue, rows: usize) -> Vec<i128> {
    let Ok(a) = v.to_array(rows) else {
        return vec![0; rows];
    };
    match arrow::compute::kernels::length::length(&a) {
        Ok(l) => ints(&ColumnarValue::Array(l), rows),
        Err(_) => vec![0; rows],
    }
}

/// The bytes an array holds, or a scalar once repeated for each of `batch_rows` rows.
fn value_bytes(v: &ColumnarValue, batch_rows: usize) -> usize {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size().saturating_mul(batch_rows),
    }
}

impl Bounded {
    /// The most bytes the call could make, from its arguments.
    fn estimate(&self, args: &ScalarFunctionArgs) -> u128 {
        let constant = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if constant { 1 } else { args.number_rows };
        // A constant result is repeated for every row of a batch.
        let repeats = if constant { self.batch_rows as u128 } else { 1 };
        let arg = |i: usize| args.args.get(i);
        let per_row: Vec<i128> = match self.growth {
            Growth::Linear => return 0,
            Growth::Repeat => match (arg(0), arg(1)) {
                (Some(s), Some(n)) => lengths(s, rows)
                    .into_iter()
                    .zip(ints(n, rows))
                    .map(|(l, n)| l.saturating_mul(n.max(0)))
                    .collect(),
                _ => return 0,
            },
            Growth::Pad => match arg(1) {
                Some(n) => ints(n, rows)
                    .into_iter()
                    .map(|n| n.max(0).saturating_mul(4))
                    .collect(),
                None => return 0,
            },
            // The replacement is the third argument of both.
            Growth::Replace => match (arg(0), arg(2)) {
                (Some(s), Some(t)) => lengths(s, rows)
                    .into_iter()
                    .zip(lengths(t, rows))
                    .map(|(l, t)| (l + 1).saturating_mul(t.max(1)))
                    .collect(),
                _ => return 0,
            },
            Growth::ArrayRepeat => match arg(1) {
                Some(n) => ints(n, rows)
                    .into_iter()
                    .map(|n| n.max(0).saturating_mul(8))
                    .collect(),
                None => return 0,
            },
            Growth::Range => {
                let (start, stop, step) = match args.args.len() {
                    1 => (vec![0; rows], ints(&args.args[0], rows), vec![1; rows]),
                    2 => (
                        ints(&args.args[0], rows),
                        ints(&args.args[1], rows),
                        vec![1; rows],
                    ),
                    3 => (
                        ints(&args.args[0], rows),
                        ints(&args.args[1], rows),
                        ints(&args.args[2], rows),
                    ),
                    _ => return 0,
                };
                start
                    .into_iter()
                    .zip(stop)
                    .zip(step)
                    .map(|((a, b), s)| ((b - a).abs() / s.abs().max(1) + 1).saturating_mul(8))
                    .collect()
            }
        };
        per_row
            .into_iter()
            .map(|n| u128::try_from(n).unwrap_or(0))
            .fold(0u128, u128::saturating_add)
            .saturating_mul(repeats)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::error::Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let estimate = self.estimate(&args);
        if estimate > self.cap as u128 {
            return Err(too_large(self.name(), estimate, self.cap));
        }
        let out = self.inner.invoke_with_args(args)?;
        let made = value_bytes(&out, self.batch_rows);
        if made > self.cap {
            return Err(too_large(self.name(), made as u128, self.cap));
        }
        Ok(out)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

/// Runs queries on a runtime of their own: threads with deep stacks (a planner's recursion
/// over a deep plan stays on them, never on the threads serving ingest), at most a few at a
/// time, each under its time limit, and cancelled when its caller stops waiting.
#[derive(Debug)]
pub struct QueryRunner {
    runtime: Option<tokio::runtime::Runtime>,
    permits: Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
}

/// The stack each query thread gets: deep plans recurse, and an overflow aborts the process.
const QUERY_STACK_BYTES: usize = 64 << 20;

/// How long a query waits for one of the running ones to finish before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

impl QueryRunner {
    /// A runner with `threads` threads that runs at most `max_concurrent` queries at once.
    pub fn new(threads: usize, max_concurrent: usize) -> std::io::Result<QueryRunner> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("opentally-query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_time()
            .build()?;
        Ok(QueryRunner {
            runtime: Some(runtime),
            permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
        })
    }

    /// Runs `work` on the query threads. Waits at most a few seconds for a turn
    /// ([`QueryError::Busy`] after that); dropping the returned future cancels the query.
    pub async fn run<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let permit = tokio::time::timeout(QUEUE_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| QueryError::Busy(self.max_concurrent))?
            .map_err(|_| QueryError::Internal("the query runner has stopped".into()))?;
        let Some(runtime) = &self.runtime else {
            return Err(QueryError::Internal("the query runner has stopped".into()));
        };
        let mut task = AbortOnDrop(runtime.spawn(async move {
            let _permit = permit;
            work.await
        }));
        match (&mut task.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(QueryError::Internal("the query panicked".into())),
            Err(_) => Err(QueryError::Internal("the query was cancelled".into())),
        }
    }

    /// Runs `work` to its end from a thread outside any runtime (the CLI).
    pub fn block_on<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(QueryError::Internal("the query runner has stopped".into()));
        };
        runtime.block_on(self.run(work))
    }
}

impl Drop for QueryRunner {
    fn drop(&mut self) {
        // Dropped from async code too, where a blocking shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts the task when the caller stops waiting for it (a client that hung up).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
