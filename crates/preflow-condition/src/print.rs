//! Canonical printing. PLACEHOLDER: replaced by the parser work.
