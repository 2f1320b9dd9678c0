//! Loading: bundles and policy templates from files in memory, a folder on disk, or a
//! zip.
//!
//! All three go through [`load_files`]: the folder and zip loaders only gather
//! `(path, bytes)` pairs within the limits and hand them over; each root then goes to
//! [`crate::bundle`] or [`crate::policy_template`].

use crate::bundle::{Bundle, BundleKind, Limits, LoadOptions, load_bundle};
use crate::layout::{self, RootKind};
use preflow_policy::{Diagnostic, Severity};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The result of a load: the bundles found and every problem, in file order.
///
/// A bundle is returned even when it has errors, so that tools can report on all of it;
/// a host must not serve bundles from a load with errors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Loaded {
    /// The bundles, in path order.
    pub bundles: Vec<Bundle>,
    /// Errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
    /// SAP policy templates (`PolicyTemplateContainer/`), which are not served but can be
    /// applied to a proxy ([`crate::PolicyTemplate::apply`]).
    pub templates: Vec<crate::PolicyTemplate>,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    fn file_error(&mut self, file: &str, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::for_file(file, Severity::Error, message));
    }
}

/// Loads the bundles among `files`, given as `(path, bytes)` with `/`-separated paths.
///
/// Each file belongs to the outermost bundle folder in its path: one named `apiproxy`,
/// `sharedflowbundle`, `APIProxy` or `PolicyTemplateContainer`, or one holding a
/// descriptor and the folders of a bundle under any name. Files outside any bundle are
/// ignored, as are macOS metadata (`__MACOSX/`, `._*`, `.DS_Store`) and everything under
/// `resources/` but scripts and specifications. Paths appear in messages as given.
pub fn load_files<P, B>(files: impl IntoIterator<Item = (P, B)>, options: &LoadOptions) -> Loaded
where
    P: AsRef<str>,
    B: AsRef<[u8]>,
{
    let mut loaded = Loaded::default();
    let mut all: Vec<(String, B)> = Vec::new();
    for (path, bytes) in files {
        let path = path.as_ref().replace('\\', "/");
        if layout::is_macos_metadata(&path) {
            continue;
        }
        if all.len() >= options.limits.max_files {
            loaded.file_error(
                &path,
                format!(
                    "more than {} files; the rest are not read",
                    options.limits.max_files
                ),
            );
            break;
        }
        all.push((path, bytes));
    }
    let roots = layout::roots(&all);
    let mut groups: BTreeMap<String, Vec<(String, String, Vec<u8>)>> = BTreeMap::new();
    let mut total = 0usize;
    for (path, bytes) in &all {
        let Some((root, rel)) = layout::root_of(path, &roots) else {
            continue;
        };
        let bytes = bytes.as_ref();
        if bytes.len() > options.limits.max_file_size {
            loaded.file_error(
                path,
                format!(
                    "file is {} bytes, larger than the limit of {} bytes",
                    bytes.len(),
                    options.limits.max_file_size
                ),
            );
            continue;
        }
        if !within_total(
            &mut total,
            bytes.len(),
            &options.limits,
            path,
            &mut loaded.diagnostics,
        ) {
            break;
        }
        groups.entry(root.to_owned()).or_default().push((
            rel.to_owned(),
            path.clone(),
            bytes.to_vec(),
        ));
    }
    for (root, files) in groups {
        let kind = roots.get(&root).copied().unwrap_or(RootKind::Proxy);
        let kind = match kind {
            RootKind::Proxy => BundleKind::ApiProxy,
            RootKind::SharedFlow => BundleKind::SharedFlow,
            RootKind::Template => {
                if let Some(t) =
                    crate::policy_template::load(&root, files, options, &mut loaded.diagnostics)
                {
                    loaded.templates.push(t);
                }
                continue;
            }
        };
        if let Some(bundle) = load_bundle(&root, kind, files, options, &mut loaded.diagnostics) {
            loaded.bundles.push(bundle);
        }
    }
    loaded
}

/// Loads every path of `paths` ([`load_path`]) into one [`Loaded`], in order.
pub fn load_paths<P: AsRef<Path>>(
    paths: impl IntoIterator<Item = P>,
    options: &LoadOptions,
) -> Loaded {
    let mut all = Loaded::default();
    for p in paths {
        let mut one = load_path(p.as_ref(), options);
        all.bundles.append(&mut one.bundles);
        all.diagnostics.append(&mut one.diagnostics);
        all.templates.append(&mut one.templates);
    }
    all
}

/// Loads `path`: a bundle folder, a folder holding bundles at any depth, or a zip.
pub fn load_path(path: &Path, options: &LoadOptions) -> Loaded {
    let display = path.to_string_lossy().into_owned();
    if path.is_file() {
        let is_zip = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        if !is_zip {
            let mut loaded = Loaded::default();
            loaded.file_error(&display, "not a bundle folder or a zip");
            return loaded;
        }
        return match std::fs::File::open(path) {
            Ok(file) => load_zip(&display, file, options),
            Err(e) => {
                let mut loaded = Loaded::default();
                loaded.file_error(&display, format!("cannot open: {e}"));
                loaded
            }
        };
    }
    if !path.is_dir() {
        let mut loaded = Loaded::default();
        loaded.file_error(&display, "no such file or folder");
        return loaded;
    }
    let mut problems = Vec::new();
    let files = read_folder(path, options, &mut problems);
    let mut loaded = load_files(files, options);
    if loaded.bundles.is_empty() && loaded.templates.is_empty() && problems.is_empty() {
        loaded.file_error(&display, layout::NO_BUNDLE);
    }
    problems.append(&mut loaded.diagnostics);
    loaded.diagnostics = problems;
    loaded
}

/// Whether a loader reads the file at `rel`, a path inside a bundle (or anywhere, for
/// zips, whose bundles are found afterwards): XML files outside `resources/`, and the
/// scripts and specs policies run (`resources/jsc/`, `resources/oas/`, SAP's
/// `FileResource/`, whose scripts a policy template carries to the proxy). Never macOS
/// metadata.
fn wanted_file(rel: &str) -> bool {
    if layout::is_macos_metadata(rel) {
        return false;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.iter().position(|p| *p == "resources") {
        Some(i) => matches!(parts.get(i + 1), Some(&"jsc" | &"oas")) && parts.len() > i + 2,
        None => {
            let lower = rel.to_ascii_lowercase();
            lower.ends_with(".xml") || parts.iter().rev().nth(1) == Some(&"FileResource")
        }
    }
}

/// What `dir` is by its entries' names and its XML files' root elements.
fn folder_kind(dir: &Path, entries: &[std::fs::DirEntry]) -> Option<RootKind> {
    let mut signs = layout::FolderSigns::default();
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        match e.file_type() {
            Ok(t) if t.is_dir() => signs.folder(&name),
            _ => {}
        }
    }
    if !signs.parts {
        return None;
    }
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if signs.descriptor.is_some() || layout::is_macos_metadata(&name) {
            break;
        }
        if e.file_type().is_ok_and(|t| t.is_file()) && name.to_ascii_lowercase().ends_with(".xml") {
            let mut head = Vec::new();
            if let Ok(f) = std::fs::File::open(dir.join(&name)) {
                let _ = f.take(4096).read_to_end(&mut head);
            }
            signs.file(&name, &head);
        }
    }
    signs.kind()
}

/// Gathers the files of every bundle folder under `path`, as `(display path, bytes)`
/// where the display path starts with `path`. Only XML files outside `resources/` are
/// read.
fn read_folder(
    path: &Path,
    options: &LoadOptions,
    problems: &mut Vec<Diagnostic>,
) -> Vec<(String, Vec<u8>)> {
    let limits = &options.limits;
    let mut out = Vec::new();
    // (folder, depth, the bundle folder holding it)
    let mut stack: Vec<(std::path::PathBuf, usize, Option<std::rc::Rc<Path>>)> =
        vec![(path.to_path_buf(), 0usize, None)];
    let mut seen = 0usize;
    let mut total = 0usize;
    while let Some((dir, depth, mut root)) = stack.pop() {
        let shown = dir.to_string_lossy().into_owned();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                problems.push(Diagnostic::for_file(
                    shown,
                    Severity::Error,
                    format!("cannot read folder: {e}"),
                ));
                continue;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        if root.is_none() {
            let by_name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(layout::named);
            if by_name.or_else(|| folder_kind(&dir, &entries)).is_some() {
                root = Some(std::rc::Rc::from(dir.as_path()));
            }
        }
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let entry_path = entry.path();
            if layout::is_macos_metadata(&name) {
                continue;
            }
            if file_type.is_dir() {
                if name.starts_with('.') || name == "node_modules" {
                    continue;
                }
                if depth + 1 > limits.max_dir_depth {
                    problems.push(Diagnostic::for_file(
                        entry_path.to_string_lossy().into_owned(),
                        Severity::Error,
                        format!(
                            "folders nest deeper than the limit of {}",
                            limits.max_dir_depth
                        ),
                    ));
                    continue;
                }
                stack.push((entry_path, depth + 1, root.clone()));
            } else if file_type.is_file()
                && let Some(root) = &root
                && wanted_file(
                    &entry_path
                        .strip_prefix(root)
                        .unwrap_or(&entry_path)
                        .to_string_lossy()
                        .replace('\\', "/"),
                )
            {
                seen += 1;
                let shown = entry_path.to_string_lossy().into_owned();
                if seen > limits.max_files {
                    problems.push(Diagnostic::for_file(
                        shown,
                        Severity::Error,
                        format!(
                            "more than {} files; the rest are not read",
                            limits.max_files
                        ),
                    ));
                    return out;
                }
                match read_limited(std::fs::File::open(&entry_path), limits.max_file_size) {
                    Ok(bytes) => {
                        if !within_total(&mut total, bytes.len(), limits, &shown, problems) {
                            return out;
                        }
                        out.push((shown, bytes));
                    }
                    Err(e) => {
                        problems.push(Diagnostic::for_file(shown, Severity::Error, e.to_string()))
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Counts a file of `len` bytes against the limit on all files together; past it, records
/// why at `shown` and answers false, and the caller reads no more.
fn within_total(
    total: &mut usize,
    len: usize,
    limits: &Limits,
    shown: &str,
    problems: &mut Vec<Diagnostic>,
) -> bool {
    *total = total.saturating_add(len);
    if *total <= limits.max_total_size {
        return true;
    }
    problems.push(Diagnostic::for_file(
        shown,
        Severity::Error,
        format!(
            "the files add up to more than the limit of {} bytes; the rest are not read",
            limits.max_total_size
        ),
    ));
    false
}

/// Why a file of a bundle could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("file is larger than the limit of {0} bytes")]
    TooLarge(usize),
}

fn read_limited(reader: std::io::Result<impl Read>, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader?.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(bytes)
}

/// Loads the bundles in a zip as Apigee exports it (`apiproxy/...` at the top). `name`
/// is how the archive appears in messages; entries appear as `name!/entry`.
pub fn load_zip<R: Read + std::io::Seek>(name: &str, reader: R, options: &LoadOptions) -> Loaded {
    let limits = &options.limits;
    let mut archive = match zip::ZipArchive::new(reader) {
        Ok(a) => a,
        Err(e) => {
            let mut loaded = Loaded::default();
            loaded.file_error(name, format!("not a readable zip: {e}"));
            return loaded;
        }
    };
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let mut total = 0usize;
    if archive.len() > limits.max_files {
        problems.push(Diagnostic::for_file(
            name,
            Severity::Error,
            format!(
                "zip holds {} entries, more than the limit of {}",
                archive.len(),
                limits.max_files
            ),
        ));
    }
    for i in 0..archive.len().min(limits.max_files) {
        let entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(Diagnostic::for_file(
                    name,
                    Severity::Error,
                    format!("bad zip entry {i}: {e}"),
                ));
                continue;
            }
        };
        if !entry.is_file() {
            continue;
        }
        let entry_name = entry.name().replace('\\', "/");
        let shown = format!("{name}!/{entry_name}");
        // Bundles are found afterwards, by name or content: read what any bundle might
        // need (a `resources/` above a bundle is rare in a zip).
        if !wanted_file(&entry_name) {
            continue;
        }
        if entry.size() > u64::try_from(limits.max_file_size).unwrap_or(u64::MAX) {
            problems.push(Diagnostic::for_file(
                shown,
                Severity::Error,
                format!(
                    "file is larger than the limit of {} bytes",
                    limits.max_file_size
                ),
            ));
            continue;
        }
        match read_limited(Ok(entry), limits.max_file_size) {
            Ok(bytes) => {
                if !within_total(&mut total, bytes.len(), limits, &shown, &mut problems) {
                    break;
                }
                files.push((shown, bytes));
            }
            Err(e) => problems.push(Diagnostic::for_file(shown, Severity::Error, e.to_string())),
        }
    }
    let mut loaded = load_files(files, options);
    if loaded.bundles.is_empty()
        && loaded.templates.is_empty()
        && problems.is_empty()
        && !loaded.has_errors()
    {
        loaded.file_error(name, layout::NO_BUNDLE);
    }
    problems.append(&mut loaded.diagnostics);
    loaded.diagnostics = problems;
    loaded
}
