//! Policy decisions and secret redaction: pure functions over the call's facts. No IO, no clock.

pub mod decide;
pub mod redact;

pub use decide::{PolicyInput, ToolFacts, decide};
pub use redact::Redactor;
