//! What keeps one query from taking the process down: a cap on the statement's size and on how
//! deep its expressions nest (checked before planning), scalar functions whose output could be
//! far larger than their input checked before and after they run, and [`QueryRunner`], which
//! runs every query on threads of its own with deep stacks, a few at a time.
//!
//! It must never let a query's failure reach the threads that acknowledge events: a query
//! that is too deep, too large or too slow gets an error, and the collector goes on.

mod functions;
mod runner;
mod statement;

pub use functions::bound_functions;
pub use runner::QueryRunner;
pub use statement::{
    MAX_CTES, MAX_EXPR_DEPTH, MAX_SELECTS, MAX_SQL_BYTES, MAX_TABLES_PER_SELECT, MAX_WEIGHT,
    check_statement, max_statement_bytes,
};
