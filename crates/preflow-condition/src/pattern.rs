//! Pattern matchers. PLACEHOLDER: replaced by the evaluator work.
