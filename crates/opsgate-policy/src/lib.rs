//! Policy decisions (Rego, evaluated in-process) and secret redaction: pure functions over the
//! call's facts. No IO, no clock: the caller reads policy files and passes the time in.

pub mod decide;
pub mod redact;

pub use decide::{
    Annotations, BlastRadius, Limits, Policy, PolicyError, PolicyInput, PolicySource, TestOutcome, ToolFacts,
};
pub use redact::Redactor;
