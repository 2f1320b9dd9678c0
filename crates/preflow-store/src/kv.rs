//! The key-value entries of [`preflow::KvOp`] in memory ([`MemoryKv`]) and the encoding
//! of one entry in the redb file.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use preflow::{KvOp, KvReply};

use crate::error::StoreError;

/// Whether an entry expiring at `expires_at` (ns) is still live at `now`.
pub(crate) fn live(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// An entry as stored in the file: the expiry (ns, big-endian, 0 for none), then the
/// value's bytes.
pub(crate) fn encode(value: &str, expires_at: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
    out
}

/// The expiry of an encoded entry.
pub(crate) fn expiry(bytes: &[u8]) -> Result<Option<u64>, StoreError> {
    let head: [u8; 8] =
        bytes
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(StoreError::Counter {
                table: "kv",
                len: bytes.len(),
            })?;
    Ok(Some(u64::from_be_bytes(head)).filter(|&at| at != 0))
}

/// Decodes an entry: its value and expiry.
pub(crate) fn decode(bytes: &[u8]) -> Result<(String, Option<u64>), StoreError> {
    let at = expiry(bytes)?;
    let value = bytes.get(8..).unwrap_or_default();
    let value = String::from_utf8(value.to_vec()).map_err(|_| StoreError::Counter {
        table: "kv",
        len: bytes.len(),
    })?;
    Ok((value, at))
}

/// Key-value entries in process memory. Expired entries are absent on read and reclaimed
/// once the number of writes since the last sweep reaches the number of entries (amortised
/// O(1) per write), using the newest `now` a write carried.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: DashMap<(String, String), (String, Option<u64>)>,
    puts_since_sweep: AtomicUsize,
}

impl MemoryKv {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored entries, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes the entries expired at `now` (ns); how many were.
    pub fn purge_expired(&self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (_, at)| live(*at, now));
        before.saturating_sub(self.entries.len())
    }

    /// Performs one operation.
    pub fn run(&self, op: &KvOp) -> KvReply {
        match op {
            KvOp::Get {
                namespace,
                key,
                now,
            } => KvReply::Value(
                self.entries
                    .get(&(namespace.clone(), key.clone()))
                    .filter(|e| live(e.1, *now))
                    .map(|e| e.0.clone()),
            ),
            KvOp::Put {
                namespace,
                key,
                value,
                expires_at,
                overwrite,
                now,
            } => {
                let written = match self.entries.entry((namespace.clone(), key.clone())) {
                    dashmap::Entry::Occupied(mut e) if *overwrite || !live(e.get().1, *now) => {
                        e.insert((value.clone(), *expires_at));
                        true
                    }
                    dashmap::Entry::Occupied(_) => false,
                    dashmap::Entry::Vacant(e) => {
                        e.insert((value.clone(), *expires_at));
                        true
                    }
                };
                let puts = self
                    .puts_since_sweep
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if puts >= self.entries.len().max(1024) {
                    self.puts_since_sweep.store(0, Ordering::Relaxed);
                    self.purge_expired(*now);
                }
                KvReply::Written(written)
            }
            KvOp::Delete { namespace, key } => {
                self.entries.remove(&(namespace.clone(), key.clone()));
                KvReply::Done
            }
            _ => KvReply::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_their_encoding() {
        let bytes = encode("vé", Some(7));
        assert_eq!(decode(&bytes).ok(), Some(("vé".to_owned(), Some(7))));
        assert_eq!(decode(&encode("", None)).ok(), Some((String::new(), None)));
        assert!(decode(b"short").is_err());
    }

    #[test]
    fn the_sweep_reclaims_expired_entries() {
        let kv = MemoryKv::new();
        for i in 0..2000u64 {
            kv.run(&KvOp::Put {
                namespace: "ns".into(),
                key: i.to_string(),
                value: "v".into(),
                expires_at: Some(i + 1),
                overwrite: true,
                now: i,
            });
        }
        assert!(kv.len() < 2000, "{} entries kept", kv.len());
    }
}
