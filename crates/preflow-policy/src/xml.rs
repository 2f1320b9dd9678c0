//! A small XML element tree with byte positions, built with quick-xml.
//!
//! Every element, attribute value and text run keeps its byte offset in the file, so that
//! messages can point at line and column, and so that offsets inside a text (such as the
//! position of a mistake in a condition) can be mapped back to the file even when the text
//! holds entity references or CDATA.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Limits on one XML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Deepest accepted element nesting (the root element is depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_elements: 100_000,
        }
    }
}

/// A document that is not well-formed or exceeds a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct XmlError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// An attribute with its unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Local name (any namespace prefix removed).
    pub name: String,
    /// Unescaped value.
    pub value: String,
    /// Byte offset of the value (just after the opening quote).
    pub offset: usize,
}

/// How a piece of an element's text maps to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    /// Byte offset of the piece in the element's text.
    text_at: usize,
    /// Byte offset in the file.
    source_at: usize,
    /// Whether offsets inside the piece map one to one (false for entity references).
    verbatim: bool,
}

/// An element: name, attributes, child elements and the text directly inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (any namespace prefix removed).
    pub name: String,
    /// Attributes in document order.
    pub attributes: Vec<Attribute>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Byte offset of the `<` that opens the element.
    pub offset: usize,
    /// Byte range of the content between the start and end tags (empty for `<a/>`).
    pub inner: std::ops::Range<usize>,
    text: String,
    segments: Vec<Segment>,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attribute(name).map(|a| a.value.as_str())
    }

    /// Attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child element called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The `<Properties><Property name="…">value</Property></Properties>` child of an
    /// endpoint or connection, as `(name, value)` pairs in document order.
    pub fn properties(&self) -> Vec<(String, String)> {
        self.child("Properties")
            .map(|p| {
                p.children_named("Property")
                    .map(|p| {
                        (
                            p.attr("name").unwrap_or_default().to_owned(),
                            p.text().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The text directly inside the element (text runs, CDATA and entity references
    /// joined, child elements left out), unescaped and untrimmed.
    pub fn raw_text(&self) -> &str {
        &self.text
    }

    /// The text with surrounding white space removed.
    pub fn text(&self) -> &str {
        self.text.trim()
    }

    /// The trimmed text, or `None` when it is empty.
    pub fn non_empty_text(&self) -> Option<&str> {
        Some(self.text()).filter(|t| !t.is_empty())
    }

    /// The file offset of the trimmed text (the element's offset when there is no text).
    pub fn text_offset(&self) -> usize {
        let lead = self.text.len() - self.text.trim_start().len();
        if self.text.trim().is_empty() {
            return self.offset;
        }
        self.source_offset(lead)
    }

    /// Maps byte `at` of [`Element::raw_text`] to a byte offset in the file.
    pub fn source_offset(&self, at: usize) -> usize {
        let index = self.segments.partition_point(|s| s.text_at <= at);
        match index.checked_sub(1).and_then(|i| self.segments.get(i)) {
            Some(seg) if seg.verbatim => seg.source_at + (at - seg.text_at),
            Some(seg) => seg.source_at,
            None => self.offset,
        }
    }

    /// Maps byte `at` of [`Element::text`] (the trimmed text) to a byte offset in the file.
    pub fn trimmed_source_offset(&self, at: usize) -> usize {
        let lead = self.text.len() - self.text.trim_start().len();
        self.source_offset(lead + at)
    }

    /// The source between the start and end tags, markup included, as written.
    pub fn inner_xml<'s>(&self, source: &'s str) -> &'s str {
        source.get(self.inner.clone()).unwrap_or("")
    }
}

/// Parses `text` into its root element.
///
/// Comments, processing instructions and the XML declaration are skipped; a declaration
/// after a comment is tolerated. White space outside the root is allowed; anything else is
/// an error.
///
/// # Errors
/// An [`XmlError`] for text that is not well-formed XML or that exceeds `limits`.
pub fn parse(text: &str, limits: &XmlLimits) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);
    let offset_of = |s: &[u8]| offset_in(text, s);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| XmlError {
            offset: usize::try_from(reader.error_position()).unwrap_or(at),
            message: format!("not well-formed XML: {e}"),
        })?;
        let after = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                let _ = start;
                return Err(XmlError {
                    offset: at,
                    message: "a second root element".into(),
                });
            }
            Event::Start(start) => {
                elements += 1;
                if stack.len() >= limits.max_depth {
                    return Err(XmlError {
                        offset: at,
                        message: format!(
                            "elements nest deeper than the limit of {}",
                            limits.max_depth
                        ),
                    });
                }
                check_count(elements, limits, at)?;
                let mut element = element_from(&start, at, offset_of)?;
                element.inner = after..after;
                stack.push(element);
            }
            Event::Empty(start) => {
                elements += 1;
                check_count(elements, limits, at)?;
                if stack.len() >= limits.max_depth {
                    return Err(XmlError {
                        offset: at,
                        message: format!(
                            "elements nest deeper than the limit of {}",
                            limits.max_depth
                        ),
                    });
                }
                let mut element = element_from(&start, at, offset_of)?;
                element.inner = after..after;
                attach(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                if let Some(mut element) = stack.pop() {
                    element.inner = element.inner.start..at;
                    attach(&mut stack, &mut root, element);
                }
            }
            Event::Text(t) => {
                let raw: &[u8] = &t;
                let s = t.decode().map_err(|e| XmlError {
                    offset: at,
                    message: format!("invalid text: {e}"),
                })?;
                match stack.last_mut() {
                    Some(element) => {
                        let source_at = offset_of(raw).unwrap_or(at);
                        push_text(element, &s, source_at, true);
                    }
                    None if s.trim().is_empty() => {}
                    None => {
                        return Err(XmlError {
                            offset: at + (s.len() - s.trim_start().len()),
                            message: "text outside the root element".into(),
                        });
                    }
                }
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| XmlError {
                    offset: at,
                    message: format!("invalid CDATA: {e}"),
                })?;
                match stack.last_mut() {
                    Some(element) => push_text(element, &s, at + "<![CDATA[".len(), true),
                    None => {
                        return Err(XmlError {
                            offset: at,
                            message: "CDATA outside the root element".into(),
                        });
                    }
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| XmlError {
                    offset: at,
                    message: format!("invalid reference: {e}"),
                })?;
                let resolved: String = if let Ok(Some(c)) = r.resolve_char_ref() {
                    c.to_string()
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                    s.to_owned()
                } else {
                    return Err(XmlError {
                        offset: at,
                        message: format!("unknown entity `&{name};`"),
                    });
                };
                match stack.last_mut() {
                    Some(element) => push_text(element, &resolved, at, false),
                    None => {
                        return Err(XmlError {
                            offset: at,
                            message: "text outside the root element".into(),
                        });
                    }
                }
            }
            Event::DocType(_) => {
                return Err(XmlError {
                    offset: at,
                    message: "a DOCTYPE is not allowed".into(),
                });
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError {
            offset: open.offset,
            message: format!("element `<{}>` is never closed", open.name),
        });
    }
    root.ok_or(XmlError {
        offset: text.len(),
        message: "no root element".into(),
    })
}

/// The offset of `part` in `whole` when `part` borrows from it.
fn offset_in(whole: &str, part: &[u8]) -> Option<usize> {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= start && at + part.len() <= start + whole.len()).then(|| at - start)
}

fn check_count(elements: usize, limits: &XmlLimits, at: usize) -> Result<(), XmlError> {
    if elements > limits.max_elements {
        return Err(XmlError {
            offset: at,
            message: format!(
                "more elements than the limit of {} per file",
                limits.max_elements
            ),
        });
    }
    Ok(())
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(element: &mut Element, s: &str, source_at: usize, verbatim: bool) {
    if s.is_empty() {
        return;
    }
    element.segments.push(Segment {
        text_at: element.text.len(),
        source_at,
        verbatim,
    });
    element.text.push_str(s);
}

fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_owned(),
        None => name.into_owned(),
    }
}

fn element_from(
    start: &BytesStart<'_>,
    at: usize,
    offset_of: impl Fn(&[u8]) -> Option<usize>,
) -> Result<Element, XmlError> {
    let mut element = Element {
        name: local(start.local_name().as_ref()),
        offset: at,
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| XmlError {
            offset: at,
            message: format!("bad attribute: {e}"),
        })?;
        let key = attr.key.as_ref();
        if key.starts_with(b"xmlns") {
            continue;
        }
        let offset = match &attr.value {
            std::borrow::Cow::Borrowed(b) => offset_of(b).unwrap_or(at),
            std::borrow::Cow::Owned(_) => at,
        };
        let value = attr
            .unescape_value()
            .map_err(|e| XmlError {
                offset,
                message: format!("bad attribute value: {e}"),
            })?
            .into_owned();
        element.attributes.push(Attribute {
            name: local(key),
            value,
            offset,
        });
    }
    Ok(element)
}

/// Reads an `<SSLInfo>` element (of a TargetEndpoint's or a ServiceCallout's
/// `<HTTPTargetConnection>`, or a TargetServer). Store names lose a `ref://` prefix.
pub fn ssl_info(el: &Element) -> crate::runtime::TlsSettings {
    let flag = |name: &str| {
        el.child(name)
            .is_some_and(|c| c.text().trim().eq_ignore_ascii_case("true"))
    };
    let name = |name: &str| {
        el.child(name).and_then(Element::non_empty_text).map(|t| {
            let t = t.trim();
            t.strip_prefix("ref://").unwrap_or(t).to_owned()
        })
    };
    let list = |outer: &str, inner: &str| {
        el.child(outer).map_or_else(Vec::new, |o| {
            o.children_named(inner)
                .filter_map(Element::non_empty_text)
                .map(|t| t.trim().to_owned())
                .collect()
        })
    };
    crate::runtime::TlsSettings {
        enabled: flag("Enabled"),
        truststore: name("TrustStore"),
        keystore: name("KeyStore"),
        key_alias: name("KeyAlias"),
        client_auth: flag("ClientAuthEnabled"),
        ignore_validation_errors: flag("IgnoreValidationErrors"),
        protocols: list("Protocols", "Protocol"),
        ciphers: list("Ciphers", "Cipher"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_tree_with_positions() {
        let src =
            "<?xml version=\"1.0\"?>\n<A x=\"1\">\n  <B>hi &amp; <![CDATA[<c>]]></B><C/>\n</A>";
        let root = parse(src, &XmlLimits::default()).unwrap();
        assert_eq!(root.name, "A");
        assert_eq!(root.attr("x"), Some("1"));
        assert_eq!(
            root.attribute("x").unwrap().offset,
            src.find("\"1\"").unwrap() + 1
        );
        let b = root.child("B").unwrap();
        assert_eq!(b.text(), "hi & <c>");
        assert_eq!(b.offset, src.find("<B>").unwrap());
        assert_eq!(b.text_offset(), src.find("hi").unwrap());
        // "& " starts at text byte 3, which is the entity reference.
        assert_eq!(b.source_offset(3), src.find("&amp;").unwrap());
        // "<c>" is inside CDATA.
        assert_eq!(b.source_offset(5), src.find("<c>").unwrap());
        assert_eq!(root.children.len(), 2);
        assert_eq!(b.inner_xml(src), "hi &amp; <![CDATA[<c>]]>");
    }

    #[test]
    fn rejects_bad_documents() {
        let limits = XmlLimits::default();
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "x<a/>",
            "<a>&foo;</a>",
            "<a x=1/>",
        ] {
            assert!(parse(bad, &limits).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_and_count_limits() {
        let deep = "<a>".repeat(10) + &"</a>".repeat(10);
        let limits = XmlLimits {
            max_depth: 5,
            max_elements: 100,
        };
        let err = parse(&deep, &limits).unwrap_err();
        assert!(err.message.contains("deeper"), "{err}");
        let many = format!("<a>{}</a>", "<b/>".repeat(200));
        let err = parse(&many, &limits).unwrap_err();
        assert!(err.message.contains("more elements"), "{err}");
    }

    #[test]
    fn comment_before_declaration_is_tolerated() {
        let src = "<!-- c -->\n<?xml version=\"1.0\"?>\n<A/>";
        assert!(parse(src, &XmlLimits::default()).is_ok());
    }
}
