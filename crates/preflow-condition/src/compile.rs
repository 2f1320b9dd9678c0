//! The compiled form. PLACEHOLDER: replaced by the evaluator work; compiles nothing yet.

use crate::ast::{Condition, Span};
use crate::error::CompileError;
use crate::value::{Resolve, Value, Variables};
use std::collections::HashMap;

/// A compiled condition over handles of type `H`.
#[derive(Debug)]
pub struct Compiled<H> {
    _handles: Vec<H>,
}

impl<H> Compiled<H> {
    /// Evaluates against `vars`.
    pub fn eval<V: Variables<Handle = H>>(&self, _vars: &V) -> bool {
        false
    }
}

pub(crate) fn compile<R: Resolve>(
    _cond: &Condition,
    source: &str,
    _resolver: &R,
) -> Result<Compiled<R::Handle>, CompileError> {
    Err(CompileError::new(source, Span::new(0, 0), "compiler not built yet"))
}

/// A resolver whose handles are the variable names themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Names;

impl Resolve for Names {
    type Handle = Box<str>;
    fn resolve(&self, name: &str) -> Box<str> {
        name.into()
    }
}

/// An owned [`Value`], for hosts and tools that keep variables in a map.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// A string.
    String(String),
}

/// Variables kept in a map by name, for use with [`Names`].
#[derive(Debug, Clone, Default)]
pub struct MapVariables {
    map: HashMap<String, OwnedValue>,
}

impl MapVariables {
    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: OwnedValue) {
        self.map.insert(name.to_owned(), value);
    }
}

impl Variables for MapVariables {
    type Handle = Box<str>;
    fn get(&self, _handle: &Box<str>) -> Value<'_> {
        Value::Null
    }
}
