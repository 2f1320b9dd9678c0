//! Checks beyond loading.
use crate::Bundle;
use preflow_policy::Diagnostic;
/// Lints.
pub fn lint(_b: &[Bundle]) -> Vec<Diagnostic> {
    Vec::new()
}
