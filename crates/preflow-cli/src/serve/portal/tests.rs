//! Tests of the portal over HTTP requests.
