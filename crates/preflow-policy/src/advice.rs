//! What a policy module knows is wrong or risky in a configuration that still loads, for
//! `preflow check`: each policy type says it of its own configuration.

/// One piece of advice about a policy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Advice {
    /// The stable id of the lint rule (see the rule catalogue of `preflow check`).
    pub rule: &'static str,
    /// The element to point at (a child of the policy root, first of that name), or
    /// `None` for the root.
    pub element: Option<&'static str>,
    /// Which element of that name, counted from 0 in document order.
    pub nth: usize,
    /// What is wrong and what to change.
    pub message: String,
}

impl Advice {
    /// Advice under `rule` about `element` (`None`: the policy root).
    pub fn new(
        rule: &'static str,
        element: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            element,
            nth: 0,
            message: message.into(),
        }
    }

    /// About the `nth` element of that name (from 0) rather than the first.
    #[must_use]
    pub fn nth(mut self, nth: usize) -> Self {
        self.nth = nth;
        self
    }
}
