//! Helpers shared by the policy parsers: reading text, booleans, numbers and refs from
//! elements, and reporting unknown elements.

use crate::Setting;
use crate::diag::{Diagnostic, Source};
use crate::xml::Element;
use std::str::FromStr;

/// Parsing context of one XML file (a policy or an endpoint): the file being read and
/// where its problems go, with the readers every element parser shares.
#[derive(Debug)]
pub struct Cx<'a> {
    /// The file.
    pub src: &'a Source,
    /// Where problems go.
    pub diags: &'a mut Vec<Diagnostic>,
}

/// Children accepted in every policy besides its own.
pub(crate) const COMMON_CHILDREN: &[&str] =
    &["DisplayName", "Description", "Properties", "FaultRules"];

impl Cx<'_> {
    /// Reports an error at `offset`.
    pub fn error(&mut self, offset: usize, message: impl Into<String>) {
        self.diags.push(self.src.error(offset, message));
    }

    /// Reports an error at `offset` with a hint.
    pub fn error_hint(
        &mut self,
        offset: usize,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(self.src.error(offset, message).with_hint(hint));
    }

    /// Reports a warning at `offset` with a hint.
    pub fn warning_hint(
        &mut self,
        offset: usize,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(self.src.warning(offset, message).with_hint(hint));
    }

    /// Reports a warning at `offset`.
    pub fn warning(&mut self, offset: usize, message: impl Into<String>) {
        self.diags.push(self.src.warning(offset, message));
    }

    /// Warns about every child of `el` not named in `known`.
    pub fn known(&mut self, el: &Element, known: &[&str]) {
        for child in &el.children {
            if !known.contains(&child.name.as_str()) {
                self.warning(
                    child.offset,
                    format!("unknown element `<{}>` in `<{}>`", child.name, el.name),
                );
            }
        }
    }

    /// Warns about every child of a policy root not in `known` nor common to all policies.
    pub fn known_policy(&mut self, el: &Element, known: &[&str]) {
        for child in &el.children {
            let name = child.name.as_str();
            if !known.contains(&name) && !COMMON_CHILDREN.contains(&name) {
                self.warning(
                    child.offset,
                    format!("unknown element `<{name}>` in `<{}>`", el.name),
                );
            }
        }
    }

    /// Trimmed, non-empty text of child `name`.
    pub fn child_text(&self, el: &Element, name: &str) -> Option<String> {
        el.child(name)
            .and_then(Element::non_empty_text)
            .map(str::to_owned)
    }

    /// A boolean from text; an invalid value is an error and gives `default`.
    pub fn bool_text(&mut self, el: &Element, default: bool) -> bool {
        match el.non_empty_text() {
            None => default,
            Some(t) => match parse_bool(t) {
                Some(b) => b,
                None => {
                    if !is_placeholder(t) {
                        self.error_hint(
                            el.text_offset(),
                            format!("`<{}>` must be `true` or `false`, not `{t}`", el.name),
                            "write `true` or `false`",
                        );
                    }
                    default
                }
            },
        }
    }

    /// A boolean child element, `default` when absent.
    pub fn child_bool(&mut self, el: &Element, name: &str, default: bool) -> bool {
        match el.child(name) {
            Some(c) => self.bool_text(c, default),
            None => default,
        }
    }

    /// A boolean attribute, `default` when absent.
    pub fn attr_bool(&mut self, el: &Element, name: &str, default: bool) -> bool {
        match el.attribute(name) {
            None => default,
            Some(a) => match parse_bool(a.value.trim()) {
                Some(b) => b,
                None => {
                    if !is_placeholder(&a.value) {
                        self.error_hint(
                            a.offset,
                            format!(
                                "attribute `{name}` must be `true` or `false`, not `{}`",
                                a.value
                            ),
                            "write `true` or `false`",
                        );
                    }
                    default
                }
            },
        }
    }

    /// A number from an element's text; an invalid value is an error.
    pub fn number<T: FromStr>(&mut self, el: &Element) -> Option<T> {
        let t = el.non_empty_text()?;
        match t.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                if !is_placeholder(t) {
                    self.error(
                        el.text_offset(),
                        format!("`<{}>` must be a whole number, not `{t}`", el.name),
                    );
                }
                None
            }
        }
    }

    /// A number from attribute `name`.
    pub fn attr_number<T: FromStr>(&mut self, el: &Element, name: &str) -> Option<T> {
        let a = el.attribute(name)?;
        let t = a.value.trim();
        if t.is_empty() {
            return None;
        }
        match t.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                if !is_placeholder(t) {
                    self.error(
                        a.offset,
                        format!("attribute `{name}` must be a whole number, not `{t}`"),
                    );
                }
                None
            }
        }
    }

    /// `<X ref="var">default</X>`: the ref and the literal, the literal parsed by `parse`.
    /// A literal `parse` rejects is an error described by `expected`.
    pub fn setting<T>(
        &mut self,
        el: Option<&Element>,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Setting<T> {
        let Some(el) = el else {
            return Setting::default();
        };
        let reference = ref_attr(el);
        let value = match el.non_empty_text() {
            None => None,
            Some(t) => match parse(t) {
                Some(v) => Some(v),
                None => {
                    if !is_placeholder(t) {
                        self.error(
                            el.text_offset(),
                            format!("`<{}>` must be {expected}, not `{t}`", el.name),
                        );
                    }
                    None
                }
            },
        };
        Setting { value, reference }
    }

    /// A ref-or-text string setting.
    pub fn string_setting(&mut self, el: Option<&Element>) -> Setting<String> {
        self.setting(el, "text", |t| Some(t.to_owned()))
    }
}

/// The non-empty `ref` attribute of `el`.
pub(crate) fn ref_attr(el: &Element) -> Option<String> {
    el.attr("ref")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

/// `true`/`false` in any case.
pub(crate) fn parse_bool(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Whether `t` holds a deploy-time placeholder (`@NAME@`, `${name}`).
pub fn is_placeholder(t: &str) -> bool {
    !crate::placeholder::find_placeholders(t).is_empty()
}
