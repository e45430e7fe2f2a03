//! OpenTally's wire format, shared by the SDKs and the collector: Segment v1 messages and
//! batches, the OpenTally event, per-message validation, the event catalog and the response
//! bodies.
//!
//! This crate does no I/O: it reads bytes and strings it is given and returns values. Parsing
//! never panics on any input, and a bad message is rejected alone with a [`Rejection`] that says
//! why.

pub mod batch;
pub mod catalog;
pub mod context;
pub mod control;
pub mod event;
pub mod json;
pub mod message;
pub mod names;
pub mod privacy;
pub mod reject;
pub mod response;
pub mod timestamp;
pub mod validate;

pub use batch::{
    Batch, BatchError, Item, Limits, ParsedRequest, WriteKey, parse_batch, parse_single,
};
pub use catalog::{Catalog, CatalogError, Mode};
pub use control::Control;
pub use message::{Map, Message, MessageType};
pub use reject::{Reason, Rejection};
pub use response::{BatchResponse, ErrorResponse, ItemRejection};
pub use timestamp::Timestamp;
pub use validate::{check_message, effective_timestamp};
