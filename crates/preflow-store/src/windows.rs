//! Quota windows as stored in the file: the arithmetic of `preflow-ratelimit`'s
//! in-memory store (module docs of `preflow_ratelimit::store`), on fixed-size records.

use preflow_ratelimit::Timestamp;
use preflow_ratelimit::store::{QuotaIncr, QuotaReply, QuotaSlide};

use crate::error::StoreError;

/// A fixed window: `expires_at`, `used`, `exceeded` as three little-endian u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixed {
    pub expires_at: u64,
    pub used: u64,
    pub exceeded: u64,
}

pub(crate) const FIXED_LEN: usize = 24;

fn u64_at(bytes: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(i * 8..i * 8 + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

impl Fixed {
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != FIXED_LEN {
            return Err(StoreError::Counter {
                table: "quota",
                len: bytes.len(),
            });
        }
        Ok(Fixed {
            expires_at: u64_at(bytes, 0),
            used: u64_at(bytes, 1),
            exceeded: u64_at(bytes, 2),
        })
    }

    pub fn encode(&self) -> [u8; FIXED_LEN] {
        let mut out = [0u8; FIXED_LEN];
        for (chunk, v) in out
            .chunks_exact_mut(8)
            .zip([self.expires_at, self.used, self.exceeded])
        {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn open(incr: &QuotaIncr) -> Self {
        Fixed {
            expires_at: incr.expires_at.as_nanos(),
            used: 0,
            exceeded: 0,
        }
    }

    /// Applies an increment; rejected weight is not counted as used.
    pub fn apply(&mut self, incr: &QuotaIncr) -> QuotaReply {
        if self.expires_at <= incr.now.as_nanos() {
            *self = Fixed::open(incr);
        }
        let weight = u64::from(incr.weight);
        let allowed = self.used.saturating_add(weight) <= incr.limit;
        if allowed {
            self.used = self.used.saturating_add(weight);
        } else {
            self.exceeded = self.exceeded.saturating_add(weight);
        }
        QuotaReply {
            allowed,
            used: self.used,
            total_exceeded: self.exceeded,
            expires_at: Some(Timestamp::from_nanos(self.expires_at)),
        }
    }
}

/// Slots in the ring of a rolling window (as the in-memory store keeps).
const RING: u64 = 64;
/// Header words of a rolling record: `slot_ns`, `newest`, `exceeded`.
const HEADER: usize = 3;
pub(crate) const ROLLING_LEN: usize = (HEADER + RING as usize) * 8;

/// A rolling window: per-slot counts in a ring of [`RING`] slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rolling {
    slot_ns: u64,
    newest: u64,
    exceeded: u64,
    counts: [u64; RING as usize],
}

impl Rolling {
    pub fn new(slot_ns: u64, index: u64) -> Self {
        Rolling {
            slot_ns,
            newest: index,
            exceeded: 0,
            counts: [0; RING as usize],
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != ROLLING_LEN {
            return Err(StoreError::Counter {
                table: "rolling",
                len: bytes.len(),
            });
        }
        let mut counts = [0u64; RING as usize];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = u64_at(bytes, HEADER + i);
        }
        Ok(Rolling {
            slot_ns: u64_at(bytes, 0),
            newest: u64_at(bytes, 1),
            exceeded: u64_at(bytes, 2),
            counts,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ROLLING_LEN);
        for v in [self.slot_ns, self.newest, self.exceeded]
            .iter()
            .chain(self.counts.iter())
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn slot_ns(&self) -> u64 {
        self.slot_ns
    }

    fn slot(&mut self, index: u64) -> Option<&mut u64> {
        self.counts.get_mut((index % RING) as usize)
    }

    fn advance(&mut self, index: u64) {
        if index <= self.newest {
            return;
        }
        if index - self.newest >= RING {
            self.counts = [0; RING as usize];
        } else {
            for i in self.newest + 1..=index {
                if let Some(c) = self.slot(i) {
                    *c = 0;
                }
            }
        }
        self.newest = index;
    }

    fn sum(&self, span: u64) -> u64 {
        let span = span.min(RING - 1).min(self.newest);
        (self.newest - span..=self.newest)
            .filter_map(|i| self.counts.get((i % RING) as usize))
            .fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// Whether every slot has aged out at `now` (the record equals an absent one).
    pub fn idle(&self, now: u64) -> bool {
        now / self.slot_ns.max(1) >= self.newest.saturating_add(RING)
    }

    /// Applies a slide at slot `index` over `span` slots.
    pub fn apply(&mut self, slide: &QuotaSlide, index: u64, span: u64) -> QuotaReply {
        self.advance(index);
        let before = self.sum(span);
        if before == 0 {
            self.exceeded = 0;
        }
        let weight = u64::from(slide.weight);
        let allowed = before.saturating_add(weight) <= slide.limit;
        if allowed {
            let newest = self.newest;
            if let Some(c) = self.slot(newest) {
                *c = c.saturating_add(weight);
            }
        } else {
            self.exceeded = self.exceeded.saturating_add(weight);
        }
        QuotaReply {
            allowed,
            used: if allowed {
                before.saturating_add(weight)
            } else {
                before
            },
            total_exceeded: self.exceeded,
            expires_at: None,
        }
    }
}
