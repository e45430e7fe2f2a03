//! Scalar functions that can make far more than they read, replaced in each session by ones
//! that refuse to make more than a cap in one call.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Float64Type, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::query::QueryError;

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
    /// `array_resize(x, n [, fill])`: `n` elements.
    Resize,
    /// Output no larger than its inputs together (`concat`, `||`).
    Linear,
}

/// Functions that can make a value far larger than their arguments, and how.
const GROWING: [(&str, Growth); 12] = [
    ("repeat", Growth::Repeat),
    ("array_resize", Growth::Resize),
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
    ctx.register_udf(ScalarUDF::new_from_impl(ConcatOperator {
        signature: Signature::user_defined(Volatility::Immutable),
        cap,
        batch_rows: batch_rows.max(1),
    }));
    Ok(())
}

/// `a || b` on strings as the operator means it (null if either side is null), bounded like
/// `concat`: [`super::statement`] rewrites every `||` into a call of it, since the operator
/// itself is evaluated where no check sees it, and a chain of them over a few CTEs made
/// gigabytes from a statement of a few hundred bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
    cap: usize,
    batch_rows: usize,
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        super::statement::CONCAT_OPERATOR_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        let list = |t: &DataType| {
            matches!(
                t,
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            )
        };
        if arg_types.len() != 2 || arg_types.iter().any(list) {
            return Err(DataFusionError::Plan(
                "`||` joins two strings here; use array_concat() to join arrays".into(),
            ));
        }
        Ok(vec![DataType::Utf8; 2])
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return Err(DataFusionError::Execution("`||` takes two values".into()));
        };
        let constant =
            matches!(a, ColumnarValue::Scalar(_)) && matches!(b, ColumnarValue::Scalar(_));
        let rows = if constant { 1 } else { args.number_rows };
        let bytes = |v: &ColumnarValue| match v {
            ColumnarValue::Array(a) => a.get_array_memory_size() as u128,
            ColumnarValue::Scalar(s) => (s.size() as u128).saturating_mul(rows as u128),
        };
        let mut estimate = bytes(a).saturating_add(bytes(b));
        if constant {
            estimate = estimate.saturating_mul(self.batch_rows as u128);
        }
        if estimate > self.cap as u128 {
            return Err(too_large("||", estimate, self.cap));
        }
        let (a, b) = (a.to_array(rows)?, b.to_array(rows)?);
        let (Some(sa), Some(sb)) = (a.as_string_opt::<i32>(), b.as_string_opt::<i32>()) else {
            return Err(DataFusionError::Execution("`||` joins two strings".into()));
        };
        let out: ArrayRef =
            Arc::new(arrow::compute::kernels::concat_elements::concat_elements_utf8(sa, sb)?);
        if constant {
            Ok(ColumnarValue::Scalar(
                datafusion::scalar::ScalarValue::try_from_array(&out, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
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
            Growth::Linear => {
                // Each argument's bytes; a constant's counts once per output row.
                let total = args
                    .args
                    .iter()
                    .map(|a| match a {
                        ColumnarValue::Array(a) => a.get_array_memory_size() as u128,
                        ColumnarValue::Scalar(s) => (s.size() as u128)
                            .saturating_mul(if constant { 1 } else { rows as u128 }),
                    })
                    .fold(0u128, u128::saturating_add);
                return total.saturating_mul(repeats);
            }
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
            Growth::ArrayRepeat | Growth::Resize => match arg(1) {
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
