//! Developers, apps, products, credentials and an OAuth 2.0 authorization server and verifier.
#![deny(missing_docs)]
