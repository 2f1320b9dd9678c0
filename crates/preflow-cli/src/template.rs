//! `preflow template apply TEMPLATE PROXY -o OUT`: applies an SAP policy template
//! (`PolicyTemplateContainer/`, a folder or a zip) to an API proxy (a folder or a zip, SAP
//! or Apigee format) and writes the result to OUT (a folder, or a zip when OUT ends in
//! `.zip`), then loads it back and reports its problems as `preflow check` does.
//!
//! Exit codes: 0 applied and the result loads without errors, 1 the template or proxy
//! does not load, a name clash, or a result with errors, 2 usage problems (OUT exists).

use preflow::{LoadOptions, OnClash, is_macos_metadata, load_files, load_path, printable};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `preflow template` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `preflow template` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply a policy template to an API proxy: its policies are added and its steps
    /// appended to the flows it names.
    Apply(ApplyArgs),
}

/// `preflow template apply` arguments.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The policy template: a `PolicyTemplateContainer/` folder, a folder holding one, or
    /// a zip.
    pub template: PathBuf,
    /// The API proxy: a bundle folder, a folder holding one, or a zip.
    pub proxy: PathBuf,
    /// Where to write the result: a new folder, or a zip (`.zip`).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Add a template policy whose name the proxy uses for a different policy as
    /// `NAME-2` (default: refuse and name the clashes).
    #[arg(long)]
    pub rename: bool,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Why the files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file or folder cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The zip cannot be read or written.
    #[error("{path}: {source}")]
    Zip {
        /// The zip.
        path: String,
        /// Why.
        source: zip::result::ZipError,
    },
    /// More files or bytes than the limits.
    #[error("{0}: more than {MAX_FILES} files or {MAX_BYTES} bytes")]
    TooLarge(String),
}

const MAX_FILES: usize = 20_000;
const MAX_BYTES: usize = 256 * 1024 * 1024;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Every file of a zip, or of a folder (paths starting with the folder's name), macOS
/// metadata left out.
pub fn read_tree(path: &Path) -> Result<Vec<(String, Vec<u8>)>, TreeError> {
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut add = |name: String, bytes: Vec<u8>| -> Result<(), TreeError> {
        total = total.saturating_add(bytes.len());
        if out.len() >= MAX_FILES || total > MAX_BYTES {
            return Err(TreeError::TooLarge(path.display().to_string()));
        }
        out.push((name, bytes));
        Ok(())
    };
    if path.is_file() {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let zip_err = |source| TreeError::Zip {
            path: path.display().to_string(),
            source,
        };
        let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
        for i in 0..archive.len() {
            let entry = archive.by_index(i).map_err(zip_err)?;
            let name = entry.name().replace('\\', "/");
            if !entry.is_file() || is_macos_metadata(&name) {
                continue;
            }
            let mut bytes = Vec::new();
            entry
                .take(MAX_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(io(path))?;
            add(name, bytes)?;
        }
        return Ok(out);
    }
    let base = path
        .file_name()
        .map_or_else(|| "proxy".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut stack = vec![(path.to_path_buf(), base, 0usize)];
    while let Some((dir, shown, depth)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{shown}/{name}");
            if is_macos_metadata(&rel) || name == ".git" {
                continue;
            }
            let kind = e.file_type().map_err(io(&e.path()))?;
            if kind.is_dir() && depth < 32 {
                stack.push((e.path(), rel, depth + 1));
            } else if kind.is_file() {
                add(rel, std::fs::read(e.path()).map_err(io(&e.path()))?)?;
            }
        }
    }
    Ok(out)
}

/// Writes `files` under the folder `out`, or into the zip `out`.
pub fn write_tree(out: &Path, files: &[(String, Vec<u8>)]) -> Result<(), TreeError> {
    let is_zip = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if is_zip {
        let file = std::fs::File::create(out).map_err(io(out))?;
        let zip_err = |source| TreeError::Zip {
            path: out.display().to_string(),
            source,
        };
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            zip.start_file(name.as_str(), options).map_err(zip_err)?;
            zip.write_all(bytes).map_err(io(out))?;
        }
        zip.finish().map_err(zip_err)?;
        return Ok(());
    }
    for (name, bytes) in files {
        // Paths come from a folder walk or zip entries: keep them inside `out`.
        let rel = Path::new(name);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let path = out.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    Ok(())
}

/// Runs `preflow template`.
pub fn run(args: &Args) -> ExitCode {
    match &args.command {
        Command::Apply(a) => apply(a),
    }
}

fn apply(args: &ApplyArgs) -> ExitCode {
    let options = LoadOptions::default();
    let out_exists = args.out.exists();
    if out_exists && !args.force {
        eprintln!(
            "preflow template apply: {} exists (give --force to replace it)",
            printable(&args.out.display().to_string())
        );
        return ExitCode::from(2);
    }
    let loaded = load_path(&args.template, &options);
    for d in &loaded.diagnostics {
        eprintln!("{}", d.render());
    }
    let template = match loaded.templates.as_slice() {
        [one] if !loaded.has_errors() => one,
        [_] => return ExitCode::from(1),
        [] => {
            eprintln!(
                "preflow template apply: {}: no policy template (`PolicyTemplateContainer/`)",
                printable(&args.template.display().to_string())
            );
            return ExitCode::from(1);
        }
        more => {
            eprintln!(
                "preflow template apply: {}: {} policy templates; give one",
                printable(&args.template.display().to_string()),
                more.len()
            );
            return ExitCode::from(1);
        }
    };
    let mut files = match read_tree(&args.proxy) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("preflow template apply: {}", printable(&e.to_string()));
            return ExitCode::from(1);
        }
    };
    // A folder is read with its own name first; drop it when the bundle is found
    // without it (the folder holds the bundle rather than being it).
    if args.proxy.is_dir() {
        let stripped: Vec<(String, Vec<u8>)> = files
            .iter()
            .filter_map(|(p, b)| Some((p.split_once('/')?.1.to_owned(), b.clone())))
            .collect();
        let found = load_files(
            stripped.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
            &options,
        );
        if !found.bundles.is_empty() {
            files = stripped;
        }
    }
    let on_clash = if args.rename {
        OnClash::Rename
    } else {
        OnClash::Fail
    };
    let applied = match template.apply(files, on_clash, &options) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("preflow template apply: {}", printable(&e.to_string()));
            return ExitCode::from(1);
        }
    };
    if out_exists {
        let removed = if args.out.is_dir() {
            std::fs::remove_dir_all(&args.out)
        } else {
            std::fs::remove_file(&args.out)
        };
        if let Err(e) = removed {
            eprintln!("preflow template apply: {}", printable(&e.to_string()));
            return ExitCode::from(1);
        }
    }
    if let Err(e) = write_tree(&args.out, &applied.files) {
        eprintln!("preflow template apply: {}", printable(&e.to_string()));
        return ExitCode::from(1);
    }
    let mut stdout = std::io::stdout().lock();
    for c in &applied.changes {
        let _ = writeln!(stdout, "{}", printable(c));
    }
    for w in &applied.warnings {
        let _ = writeln!(stdout, "warning: {}", printable(w));
    }
    let check = load_path(&args.out, &options);
    for d in &check.diagnostics {
        let _ = writeln!(stdout, "{}", d.render());
    }
    let errors = check.errors().count();
    let _ = writeln!(
        stdout,
        "applied template `{}` to {}: wrote {} ({} errors, {} warnings)",
        printable(&template.name),
        printable(&args.proxy.display().to_string()),
        printable(&args.out.display().to_string()),
        errors,
        check.warnings().count()
    );
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/sap")
            .join(rel)
    }

    fn zip_of(dir: &Path, out: &Path, macos: bool) {
        let mut files = read_tree(dir).unwrap();
        if macos {
            let extra: Vec<(String, Vec<u8>)> = files
                .iter()
                .map(|(p, _)| {
                    let (d, f) = p.rsplit_once('/').unwrap();
                    (
                        format!("__MACOSX/{d}/._{f}"),
                        b"\x00\x05\x16\x07\x1b[31m".to_vec(),
                    )
                })
                .collect();
            files.extend(extra);
        }
        write_tree(out, &files).unwrap();
    }

    fn args(template: PathBuf, proxy: PathBuf, out: PathBuf) -> ApplyArgs {
        ApplyArgs {
            template,
            proxy,
            out,
            rename: false,
            force: false,
        }
    }

    #[test]
    fn applies_folders_and_zips() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let a = args(
            data("templates/ConnectToCPI"),
            data("regex-protection"),
            out.clone(),
        );
        assert_eq!(apply(&a), ExitCode::SUCCESS);
        assert!(out.join("APIProxy/Policy/cpiSetSender.xml").is_file());
        let loaded = load_path(&out, &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let steps: Vec<&str> = loaded.bundles[0].proxy_endpoints[0]
            .pre_flow
            .request
            .iter()
            .map(|s| s.policy.as_str())
            .collect();
        assert_eq!(steps, ["RegexProtection", "cpiSetSender"]);
        // OUT exists: refused unless --force.
        assert_eq!(apply(&a), ExitCode::from(2));

        // Zips made on macOS in, a zip out; the renamed SAP folder found by content.
        let template_zip = tmp.path().join("template.zip");
        zip_of(&data("templates/ConnectToCPI"), &template_zip, true);
        let proxy_zip = tmp.path().join("proxy.zip");
        zip_of(
            &data("provider-target/OAuthTokenGeneration-APIProxy"),
            &proxy_zip,
            true,
        );
        let out_zip = tmp.path().join("applied.zip");
        assert_eq!(
            apply(&args(template_zip, proxy_zip, out_zip.clone())),
            ExitCode::SUCCESS
        );
        let loaded = load_path(&out_zip, &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let b = &loaded.bundles[0];
        assert_eq!(b.name, "OAuthTokenGeneration");
        assert_eq!(
            b.target_endpoints[0].pre_flow.request[0].policy,
            "cpiTargetHeader"
        );
        let names = read_tree(&out_zip).unwrap();
        assert!(
            names.iter().all(|(n, _)| !n.contains("__MACOSX")),
            "{names:?}"
        );
    }
}
