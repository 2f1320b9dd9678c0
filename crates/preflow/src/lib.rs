//! preflow.
#![deny(missing_docs)]
