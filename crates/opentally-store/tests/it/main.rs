//! The embedded store on hand-built data: every insight's answer written out by hand, checked
//! on the in-memory tail, on sealed parts and on compacted parts.

mod data;
mod insights;
mod sequences;
mod store;
