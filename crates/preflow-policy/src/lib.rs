//! Apigee policy XML to typed policy configurations, and bundle loading.
#![deny(missing_docs)]
