//! Library parts of the `preflow` command line, kept apart from the binary so that they
//! can be tested and fuzzed on their own.
//!
//! * [`apps`]: the apps file of `preflow serve` (developers, products, apps and
//!   credentials in TOML).
//! * [`environment`]: the environment file of `preflow serve` (virtual hosts, trust and
//!   key stores, target servers, API providers).
//! * [`hosted`]: bundles, apps, environment and Redis loaded into a gateway for the host
//!   adapters (`preflow ext-proc`, the Pingora example).
#![deny(missing_docs)]

pub mod apps;
pub mod environment;
pub mod hosted;
