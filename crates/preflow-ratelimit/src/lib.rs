//! SpikeArrest and Quota algorithms over a counter-store interface, with an in-memory store.
#![deny(missing_docs)]
