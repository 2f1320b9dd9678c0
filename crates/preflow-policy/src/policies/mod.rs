//! The policies, one module per policy type, grouped by family. Each holds its
//! configuration and XML parsing, its compile and run steps, the variables it sets and
//! its faults; [`registry`](crate::registry) lists them.

pub mod access_entity;
pub mod cache;
pub mod callout;
pub(crate) mod condition;
pub mod cors;
pub mod extract;
pub mod format;
pub mod javascript;
pub mod jwt;
pub mod kvm;
pub mod message;
pub mod oas_validation;
pub mod protect;
pub mod security;
pub mod service;
pub(crate) mod source;
pub mod traffic;

/// A named input (a query or form parameter, a header, a variable) with the patterns
/// checked against it, first match first: ExtractVariables captures with them,
/// RegularExpressionProtection rejects with them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Named<P> {
    /// The parameter, header or variable name.
    pub name: String,
    /// The patterns.
    pub patterns: Vec<P>,
}
