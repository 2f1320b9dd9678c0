//! Where bundles are among a set of files: by folder name (`apiproxy/`,
//! `sharedflowbundle/`, SAP's `APIProxy/` and `PolicyTemplateContainer/`) or by content (a
//! folder holding a descriptor and the folders of a bundle, whatever the folder is called,
//! as SAP exports renamed to `OAuthTokenGeneration-APIProxy/` are). macOS archive
//! metadata (`__MACOSX/`, `._*`, `.DS_Store`) is never part of a bundle.

use std::collections::BTreeMap;

/// What a bundle folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootKind {
    /// An API proxy (Apigee or SAP).
    Proxy,
    /// An Apigee shared flow.
    SharedFlow,
    /// An SAP policy template.
    Template,
}

/// Folders recognised by their name alone.
pub(crate) const NAMED_ROOTS: &[(&str, RootKind)] = &[
    ("apiproxy", RootKind::Proxy),
    ("sharedflowbundle", RootKind::SharedFlow),
    ("APIProxy", RootKind::Proxy),
    ("PolicyTemplateContainer", RootKind::Template),
];

/// Sub-folders of a bundle: a folder holding one of them and a descriptor is a bundle.
const PARTS: &[&str] = &[
    "proxies",
    "targets",
    "policies",
    "sharedflows",
    "APIProxyEndPoint",
    "APITargetEndPoint",
    "Policy",
];

/// Sub-folders only SAP API proxies have: enough on their own.
const SAP_PARTS: &[&str] = &["APIProxyEndPoint", "APITargetEndPoint"];

/// The message for a place holding no bundle, naming every accepted layout.
pub(crate) const NO_BUNDLE: &str = "no bundle found: expected an Apigee `apiproxy/` or `sharedflowbundle/` folder, an SAP API Management `APIProxy/` folder (`APIProxyEndPoint/`, `APITargetEndPoint/`, `Policy/` and the `<APIProxy>` descriptor, also under another folder name such as `OAuthTokenGeneration-APIProxy/`), an SAP policy template (`PolicyTemplateContainer/` with its descriptor and `Policy/`), a folder holding any of these, or a zip of them";

/// Whether `path` is macOS metadata that archivers add beside real files: anything under
/// `__MACOSX/`, AppleDouble `._name` files and `.DS_Store`.
pub fn is_macos_metadata(path: &str) -> bool {
    let mut parts = path.split(['/', '\\']);
    let last = path.rsplit(['/', '\\']).next().unwrap_or(path);
    parts.any(|p| p == "__MACOSX") || last.starts_with("._") || last == ".DS_Store"
}

/// The kind a folder name gives, if it is one of [`NAMED_ROOTS`].
pub(crate) fn named(name: &str) -> Option<RootKind> {
    NAMED_ROOTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, kind)| *kind)
}

/// The local name of the root element of an XML document, from its first bytes (BOM,
/// declaration, comments and doctype skipped).
pub(crate) fn root_element(bytes: &[u8]) -> Option<&str> {
    let mut rest = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    loop {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        rest = rest.get(start..)?;
        let skip_to = |rest: &[u8], end: &[u8]| -> Option<usize> {
            rest.windows(end.len())
                .position(|w| w == end)
                .map(|i| i + end.len())
        };
        if rest.starts_with(b"<?") {
            rest = rest.get(skip_to(rest, b"?>")?..)?;
        } else if rest.starts_with(b"<!--") {
            rest = rest.get(skip_to(rest, b"-->")?..)?;
        } else if rest.starts_with(b"<!") {
            rest = rest.get(skip_to(rest, b">")?..)?;
        } else if rest.starts_with(b"<") {
            let name = rest.get(1..)?;
            let end = name
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
                .unwrap_or(name.len());
            let qname = std::str::from_utf8(name.get(..end)?).ok()?;
            return Some(qname.rsplit(':').next().unwrap_or(qname));
        } else {
            return None;
        }
    }
}

/// The kind of bundle a descriptor with this root element describes.
pub(crate) fn descriptor_kind(root: &str) -> Option<RootKind> {
    match root {
        "APIProxy" => Some(RootKind::Proxy),
        "SharedFlowBundle" => Some(RootKind::SharedFlow),
        "PolicyTemplateContainer" | "PolicyTemplate" => Some(RootKind::Template),
        _ => None,
    }
}

/// What one folder shows of itself, gathered from its entries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FolderSigns {
    /// It holds one of [`PARTS`].
    pub parts: bool,
    /// It holds one of [`SAP_PARTS`].
    pub sap_parts: bool,
    /// It holds `sharedflows/`.
    pub shared_flows: bool,
    /// The kind its descriptor (a direct `.xml` child) names.
    pub descriptor: Option<RootKind>,
}

impl FolderSigns {
    /// Records a sub-folder called `name`.
    pub fn folder(&mut self, name: &str) {
        self.parts |= PARTS.contains(&name);
        self.sap_parts |= SAP_PARTS.contains(&name);
        self.shared_flows |= name == "sharedflows";
    }

    /// Records a direct file called `name` that starts with `head`.
    pub fn file(&mut self, name: &str, head: &[u8]) {
        if self.descriptor.is_none() && name.to_ascii_lowercase().ends_with(".xml") {
            self.descriptor = root_element(head).and_then(descriptor_kind);
        }
    }

    /// The bundle this folder is, judged by its content.
    pub fn kind(&self) -> Option<RootKind> {
        if !self.parts {
            return None;
        }
        match self.descriptor {
            Some(kind) => Some(kind),
            None if self.sap_parts => Some(RootKind::Proxy),
            None => None,
        }
        .map(|kind| {
            if kind == RootKind::Proxy && self.shared_flows {
                RootKind::SharedFlow
            } else {
                kind
            }
        })
    }
}

/// The bundle folders among `files` (`/`-separated paths and their bytes), by name or by
/// content, each with its kind. A file belongs to the outermost bundle folder above it.
pub(crate) fn roots<B: AsRef<[u8]>>(files: &[(String, B)]) -> BTreeMap<String, RootKind> {
    let mut signs: BTreeMap<String, FolderSigns> = BTreeMap::new();
    let mut found = BTreeMap::new();
    for (path, bytes) in files {
        let parts: Vec<&str> = path.split('/').collect();
        let dirs = parts.len().saturating_sub(1);
        for k in 0..dirs {
            let Some(name) = parts.get(k) else { continue };
            let dir = parts.get(..k).unwrap_or_default().join("/");
            if let Some(kind) = named(name) {
                found
                    .entry(parts.get(..=k).unwrap_or_default().join("/"))
                    .or_insert(kind);
            }
            signs.entry(dir).or_default().folder(name);
        }
        let parent = parts.get(..dirs).unwrap_or_default().join("/");
        let file = parts.last().copied().unwrap_or_default();
        signs.entry(parent).or_default().file(file, bytes.as_ref());
    }
    for (dir, s) in signs {
        if let Some(kind) = s.kind() {
            found.entry(dir).or_insert(kind);
        }
    }
    found
}

/// The outermost of `roots` holding `path`, and the path inside it.
pub(crate) fn root_of<'a>(
    path: &'a str,
    roots: &'a BTreeMap<String, RootKind>,
) -> Option<(&'a str, &'a str)> {
    let mut at = 0;
    let mut candidates = std::iter::once(("", path)).chain(std::iter::from_fn(|| {
        let next = path.get(at..)?.find('/')? + at;
        at = next + 1;
        Some((path.get(..next)?, path.get(next + 1..)?))
    }));
    let (dir, rel) = candidates.find(|(dir, rel)| !rel.is_empty() && roots.contains_key(*dir))?;
    let (key, _) = roots.get_key_value(dir)?;
    Some((key.as_str(), rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_elements() {
        let xml = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- c --><!DOCTYPE x>\n<sap:APIProxy xmlns:sap=\"u\">";
        assert_eq!(root_element(xml), Some("APIProxy"));
        assert_eq!(
            root_element(b"<PolicyTemplateContainer/>"),
            Some("PolicyTemplateContainer")
        );
        assert_eq!(root_element(b"\x00\x05\x16\x07"), None);
        assert_eq!(root_element(b"<!-- unterminated"), None);
    }

    #[test]
    fn macos_metadata() {
        assert!(is_macos_metadata("__MACOSX/APIProxy/._a.xml"));
        assert!(is_macos_metadata("x/APIProxy/._a.xml"));
        assert!(is_macos_metadata("x/.DS_Store"));
        assert!(!is_macos_metadata("x/APIProxy/a.xml"));
    }

    #[test]
    fn roots_by_name_and_content() {
        let files: Vec<(String, &[u8])> = vec![
            ("a/apiproxy/proxies/d.xml".into(), b"<ProxyEndpoint/>"),
            ("OAuth-APIProxy/OAuth.xml".into(), b"<APIProxy/>"),
            ("OAuth-APIProxy/Policy/p.xml".into(), b"<Quota/>"),
            (
                "Renamed/APIProxyEndPoint/default.xml".into(),
                b"<ProxyEndPoint/>",
            ),
            ("notes/policies/x.xml".into(), b"<Quota/>"),
            ("t/T.xml".into(), b"<PolicyTemplateContainer/>"),
            ("t/Policy/p.xml".into(), b"<Quota/>"),
        ];
        let found = roots(&files);
        let kinds: Vec<(&str, RootKind)> = found.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            kinds,
            [
                ("OAuth-APIProxy", RootKind::Proxy),
                ("Renamed", RootKind::Proxy),
                ("a/apiproxy", RootKind::Proxy),
                ("t", RootKind::Template),
            ]
        );
        assert_eq!(
            root_of("OAuth-APIProxy/Policy/p.xml", &found),
            Some(("OAuth-APIProxy", "Policy/p.xml"))
        );
        assert_eq!(root_of("notes/policies/x.xml", &found), None);
    }
}
