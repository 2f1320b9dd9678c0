//! Typed values of flow variables, and the traits through which a compiled condition
//! reads them.
//!
//! A condition is compiled once against a [`Resolve`]r, which turns each variable name into
//! a handle of the host's choosing (an enum slot, an interned id, or simply the name). At
//! evaluation the condition asks a [`Variables`] implementation for the value behind each
//! handle. Values borrow from the host, so evaluation allocates nothing.

/// The runtime value of a flow variable or literal, with Apigee's Java types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Unset or null.
    Null,
    /// `java.lang.String`.
    String(&'a str),
    /// `java.lang.Integer`.
    Integer(i32),
    /// `java.lang.Long`.
    Long(i64),
    /// `java.lang.Float`.
    Float(f32),
    /// `java.lang.Double`.
    Double(f64),
    /// `java.lang.Boolean`.
    Boolean(bool),
    /// A collection or any other object; every comparison with it is false.
    Object,
}

/// Turns variable names into handles when a condition is compiled.
pub trait Resolve {
    /// What a name compiles to.
    type Handle;

    /// The handle for `name`. Unknown names are not an error: they read as null.
    fn resolve(&self, name: &str) -> Self::Handle;
}

/// Reads variable values while a compiled condition is evaluated.
pub trait Variables {
    /// The handle type produced by the matching [`Resolve`]r.
    type Handle;

    /// The current value behind `handle`; [`Value::Null`] when unset.
    fn get(&self, handle: &Self::Handle) -> Value<'_>;
}
