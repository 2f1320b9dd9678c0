//! A policy file: the common attributes and the typed configuration.

use crate::diag::{Diagnostic, Location, Source};
use crate::parse::{Cx, ref_attr};
use crate::registry::{PolicyConfig, parse_config};
use crate::xml::{self, Element, XmlLimits};

/// A value written as `<X ref="variable">default</X>`: the variable, when it resolves,
/// takes precedence over the literal default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The literal value, if written and valid.
    pub value: Option<T>,
    /// The name of the variable to read first, if any.
    pub reference: Option<String>,
}

impl<T> Default for Setting<T> {
    fn default() -> Self {
        Self {
            value: None,
            reference: None,
        }
    }
}

impl<T> Setting<T> {
    /// A literal value without a ref.
    pub fn literal(value: T) -> Self {
        Self {
            value: Some(value),
            reference: None,
        }
    }

    /// Whether neither a ref nor a literal is set.
    pub fn is_empty(&self) -> bool {
        self.value.is_none() && self.reference.is_none()
    }
}

/// A loaded policy: the attributes every policy has, and its typed configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The `name` attribute, referenced by `<Step><Name>`.
    pub name: String,
    /// The root element name, such as `SpikeArrest`.
    pub type_name: String,
    /// `<DisplayName>`.
    pub display_name: Option<String>,
    /// `enabled` (default true): a disabled policy is skipped.
    pub enabled: bool,
    /// `continueOnError` (default false): a failure sets `<prefix>.<name>.failed` and the
    /// flow goes on instead of entering the error flow.
    pub continue_on_error: bool,
    /// `async` (default false): deprecated, kept for completeness, no effect.
    pub async_: bool,
    /// The typed configuration.
    pub config: PolicyConfig,
    /// Where the root element is.
    pub location: Location,
}

/// Parses the policy file `src`. Problems go to `diags`; `None` when the file is not a
/// usable policy at all (not well-formed, or without a name).
pub fn parse_policy(
    src: &Source,
    limits: &XmlLimits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let root = match xml::parse(src.text(), limits) {
        Ok(root) => root,
        Err(e) => {
            diags.push(src.error(e.offset, e.message));
            return None;
        }
    };
    crate::placeholder::warn_placeholders(src, &root, diags);
    policy_from_element(src, &root, diags)
}

/// Builds a policy from the already parsed root element of `src`.
pub fn policy_from_element(
    src: &Source,
    root: &Element,
    diags: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let mut cx = Cx { src, diags };
    let Some(name) = root.attr("name").map(str::trim).filter(|n| !n.is_empty()) else {
        cx.error(
            root.offset,
            format!("policy `<{}>` has no `name` attribute", root.name),
        );
        return None;
    };
    let enabled = cx.attr_bool(root, "enabled", true);
    let continue_on_error = cx.attr_bool(root, "continueOnError", false);
    let async_ = cx.attr_bool(root, "async", false);
    let display_name = cx.child_text(root, "DisplayName");
    let config = match parse_config(&mut cx, root) {
        Some(config) => config,
        None => {
            let other = root.name.as_str();
            cx.warning(
                root.offset,
                format!("policy type `{other}` is not supported; `{name}` loads but cannot run"),
            );
            PolicyConfig::Unsupported {
                type_name: other.to_owned(),
            }
        }
    };
    Some(Policy {
        name: name.to_owned(),
        type_name: root.name.clone(),
        display_name,
        enabled,
        continue_on_error,
        async_,
        config,
        location: src.location(root.offset),
    })
}

/// A variable reference written as `<X ref="var"/>` or `<X>var</X>`.
pub(crate) fn variable_of(el: &Element) -> Option<String> {
    ref_attr(el).or_else(|| el.non_empty_text().map(str::to_owned))
}
