//! Deploy-time placeholders: text such as `@TARGETURL@` or `${client_id}` that build
//! scripts replace before a bundle is deployed. They are kept as found and reported as
//! warnings.

use crate::diag::{Diagnostic, Source};
use crate::xml::Element;

/// The placeholders in `text`, each with its byte offset.
pub fn find_placeholders(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = text.get(i..).unwrap_or("");
        if rest.starts_with("${") {
            if let Some(end) = rest.find('}') {
                let inner = rest.get(2..end).unwrap_or("");
                if !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                {
                    found.push((i, rest.get(..=end).unwrap_or("")));
                    i += end + 1;
                    continue;
                }
            }
        } else if rest.starts_with('@') {
            let after = rest.get(1..).unwrap_or("");
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = after.get(..len).unwrap_or("");
            if after.get(len..).is_some_and(|t| t.starts_with('@'))
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            {
                found.push((i, rest.get(..len + 2).unwrap_or("")));
                i += len + 2;
                continue;
            }
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

/// Adds a warning for every placeholder in the texts and attribute values of `root` and
/// its descendants (iteratively, depth bounded by the XML limits).
pub fn warn_placeholders(src: &Source, root: &Element, diags: &mut Vec<Diagnostic>) {
    let mut stack = vec![root];
    while let Some(el) = stack.pop() {
        for attr in &el.attributes {
            for (at, p) in find_placeholders(&attr.value) {
                let offset = attr.offset + at;
                diags.push(placeholder_warning(src, offset, p));
            }
        }
        for (at, p) in find_placeholders(el.raw_text()) {
            diags.push(placeholder_warning(src, el.source_offset(at), p));
        }
        stack.extend(el.children.iter().rev());
    }
}

fn placeholder_warning(src: &Source, offset: usize, p: &str) -> Diagnostic {
    src.warning(
        offset,
        format!("deploy-time placeholder `{p}` left in the bundle"),
    )
    .with_hint("replace it with the real value before loading, as the deployment scripts do")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders() {
        assert_eq!(find_placeholders("@TARGETURL@/x"), [(0, "@TARGETURL@")]);
        assert_eq!(find_placeholders("a ${client_id} b"), [(2, "${client_id}")]);
        assert!(find_placeholders("user@example.com").is_empty());
        assert!(find_placeholders("{a} @ b @").is_empty());
        assert!(find_placeholders("${}").is_empty());
    }
}
