//! A statement's checks before it is planned: its size, how deep it nests, how large its plan
//! can grow once common table expressions are inlined; and `||` rewritten into a function whose
//! output is bounded like the others'.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query,
    Select, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

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

/// The largest plan a statement may make, in weight: each `SELECT` and each relation it reads
/// counts one, and a reference to a common table expression counts that expression's weight
/// (planning inlines it). A 1 KB statement whose CTEs each read the one before twice would plan
/// 2^n scans; a chain of 2,000 CTEs, or a union of 3,000 selects, takes minutes to plan, and
/// planning cannot be interrupted.
pub const MAX_WEIGHT: u64 = 2048;

/// The most `SELECT`s a statement may write (a union of 3,000 took minutes to plan).
pub const MAX_SELECTS: usize = 256;

/// The most common table expressions a statement may define (a chain of 2,000 took minutes).
pub const MAX_CTES: usize = 64;

/// The most tables one `SELECT` may join (a 500-way join took half a minute to plan).
pub const MAX_TABLES_PER_SELECT: usize = 64;

/// The function `a || b` is rewritten into (see [`super::functions`]).
pub const CONCAT_OPERATOR_FUNCTION: &str = "opentally_concat";

/// Checks a statement's size, nesting and weight before it is planned (a 1,000-term `1+1+…` is
/// a tree 1,000 deep, which the planner walks recursively), and returns it parsed, with `||`
/// rewritten into a bounded function.
pub fn check_statement(sql: &str, max_bytes: usize) -> Result<Statement, QueryError> {
    if sql.len() > max_bytes {
        return Err(QueryError::BadQuery(format!(
            "the statement is {} bytes; the limit is {max_bytes}",
            sql.len()
        )));
    }
    let dialect = GenericDialect {};
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()?
        .parse_statements()?;
    if statements.len() != 1 {
        return Err(QueryError::BadQuery(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    let mut statement = statements.pop_front().expect("one statement");
    let mut depth = Depth::default();
    if visit(&statement, &mut depth).is_break() {
        return Err(QueryError::BadQuery(format!(
            "the statement nests expressions or subqueries more than {MAX_EXPR_DEPTH} deep"
        )));
    }
    let mut weight = Weight::default();
    if visit(&statement, &mut weight).is_break() {
        return Err(QueryError::BadQuery(format!(
            "the statement's plan would be too large: it may have at most {MAX_SELECTS} \
             selects, {MAX_CTES} common table expressions and {MAX_TABLES_PER_SELECT} tables in \
             one select, and at most {MAX_WEIGHT} selects and tables once each common table \
             expression is counted every time it is used"
        )));
    }
    rewrite_concat(&mut statement)?;
    Ok(statement)
}

/// The weight of a statement and of each common table expression, by name, and the selects
/// and CTEs it writes.
#[derive(Default)]
struct Weight {
    ctes: HashMap<String, u64>,
    selects: usize,
    defined: usize,
}

/// A relation's name as a CTE would be named: its last part, lowercase, unquoted.
fn relation_key(name: &ObjectName) -> String {
    let text = name.to_string();
    let last = text.rsplit('.').next().unwrap_or_default();
    last.trim_matches('"').to_ascii_lowercase()
}

/// Counts a query's selects and relations, a CTE's reference as its weight.
struct Weigh<'a> {
    ctes: &'a HashMap<String, u64>,
    total: u64,
}

impl Visitor for Weigh<'_> {
    type Break = ();

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        // The planner orders a select's joins at a cost that grows faster than their number.
        let tables: usize = select.from.iter().map(|t| 1 + t.joins.len()).sum();
        if tables > MAX_TABLES_PER_SELECT {
            return ControlFlow::Break(());
        }
        self.add(1)
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let w = self.ctes.get(&relation_key(relation)).copied().unwrap_or(1);
        self.add(w)
    }
}

impl Weigh<'_> {
    fn add(&mut self, w: u64) -> ControlFlow<()> {
        self.total = self.total.saturating_add(w);
        if self.total > MAX_WEIGHT {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Weight {
    /// A query's weight: its body's (its own CTEs are weighed apart, before it).
    fn weigh(&self, q: &Query) -> ControlFlow<(), u64> {
        let mut w = Weigh {
            ctes: &self.ctes,
            total: 0,
        };
        match q.body.visit(&mut w) {
            ControlFlow::Break(()) => ControlFlow::Break(()),
            ControlFlow::Continue(()) => ControlFlow::Continue(w.total),
        }
    }
}

impl Visitor for Weight {
    type Break = ();

    /// Every query: its CTEs weighed in order (each may read the ones before it), then the
    /// query itself. A query inside a CTE is visited after the CTE is weighed, so a CTE of its
    /// own is weighed then, and checked, even if the outer one counted it as one relation.
    fn pre_visit_select(&mut self, _: &Select) -> ControlFlow<()> {
        self.selects += 1;
        if self.selects > MAX_SELECTS {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            self.defined += with.cte_tables.len();
            if self.defined > MAX_CTES {
                return ControlFlow::Break(());
            }
            for cte in &with.cte_tables {
                let ControlFlow::Continue(w) = self.weigh(&cte.query) else {
                    return ControlFlow::Break(());
                };
                let w = w.saturating_add(1);
                if w > MAX_WEIGHT {
                    return ControlFlow::Break(());
                }
                self.ctes
                    .insert(cte.alias.name.value.to_ascii_lowercase(), w);
            }
        }
        match self.weigh(q) {
            ControlFlow::Continue(_) => ControlFlow::Continue(()),
            ControlFlow::Break(()) => ControlFlow::Break(()),
        }
    }
}

/// Rewrites every `a || b` into a call of [`CONCAT_OPERATOR_FUNCTION`], which is bounded like
/// `concat`; the operator itself is evaluated where no check can see it.
fn rewrite_concat(statement: &mut Statement) -> Result<(), QueryError> {
    let template = Parser::new(&GenericDialect {})
        .try_with_sql(&format!("{CONCAT_OPERATOR_FUNCTION}(a, b)"))
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    let mut rewrite = Rewrite { template };
    let _ = match statement {
        Statement::Statement(s) => VisitMut::visit(s.as_mut(), &mut rewrite),
        Statement::Explain(e) => match e.statement.as_mut() {
            Statement::Statement(s) => VisitMut::visit(s.as_mut(), &mut rewrite),
            _ => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    Ok(())
}

struct Rewrite {
    template: Expr,
}

impl VisitorMut for Rewrite {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } = expr
        {
            let mut call = self.template.clone();
            if let Expr::Function(f) = &mut call
                && let FunctionArguments::List(list) = &mut f.args
            {
                let take = |e: &mut Box<Expr>| {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(std::mem::replace(
                        e.as_mut(),
                        Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                    )))
                };
                list.args = vec![take(left), take(right)];
                *expr = call;
            }
        }
        ControlFlow::Continue(())
    }
}

fn visit<V: Visitor<Break = ()>>(s: &Statement, visitor: &mut V) -> ControlFlow<()> {
    match s {
        Statement::Statement(s) => s.visit(visitor),
        Statement::Explain(e) => visit(&e.statement, visitor),
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
