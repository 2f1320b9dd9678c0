//! `preflow check PATH...`: loads bundles (an `apiproxy/` or `sharedflowbundle/` folder, a
//! folder holding them, or a zip), runs the lints, prints every problem as
//! `file:line:column: error|warning: message` (errors followed by the source line with a
//! caret and the hint), then a one-line summary. Exit 0 when there is no error, 1 when
//! there is, 2 when no path is given.

use preflow::{Bundle, BundleKind, Diagnostic, LoadOptions, lint, load_path};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The outcome of checking some paths.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// The bundles loaded.
    pub bundles: Vec<Bundle>,
}

impl Report {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        let proxies = self
            .bundles
            .iter()
            .filter(|b| b.kind == BundleKind::ApiProxy)
            .count();
        let shared = self.bundles.len() - proxies;
        let policies: Vec<_> = self
            .bundles
            .iter()
            .flat_map(|b| b.policies.values())
            .collect();
        let supported = policies.iter().filter(|p| p.config.is_supported()).count();
        format!(
            "checked {}, {} ({supported} supported, {} unsupported): {}, {}",
            count(self.bundles.len(), "bundle", "bundles")
                + &format!(
                    " ({}, {})",
                    count(proxies, "API proxy", "API proxies"),
                    count(shared, "shared flow", "shared flows")
                ),
            count(policies.len(), "policy", "policies"),
            policies.len() - supported,
            count(self.errors(), "error", "errors"),
            count(self.warnings(), "warning", "warnings"),
        )
    }

    /// Every problem and the summary, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            if d.is_error() {
                out.push_str(&d.render());
            } else {
                out.push_str(&d.to_string());
                if let Some(hint) = &d.hint {
                    out.push_str("\n  = hint: ");
                    out.push_str(hint);
                }
            }
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

/// Loads and lints `paths`, and checks their targets against `env` (empty: every
/// provider, target server and store named is reported).
pub fn check_with(paths: &[PathBuf], env: &preflow::Environment) -> Report {
    let mut report = check(paths);
    let more = preflow::lint_environment(&report.bundles, env);
    if !more.is_empty() {
        report.diagnostics.extend(more);
        sort(&mut report.diagnostics);
        add_line_texts(&mut report.diagnostics);
    }
    report
}

fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (&a.location.file, a.location.line, a.location.column).cmp(&(
            &b.location.file,
            b.location.line,
            b.location.column,
        ))
    });
    diagnostics.dedup();
}

/// Loads and lints `paths`.
pub fn check(paths: &[PathBuf]) -> Report {
    let options = LoadOptions::default();
    let mut report = Report::default();
    for path in paths {
        let loaded = load_path(path, &options);
        report.bundles.extend(loaded.bundles);
        report.diagnostics.extend(loaded.diagnostics);
    }
    report.diagnostics.extend(lint(&report.bundles));
    sort(&mut report.diagnostics);
    add_line_texts(&mut report.diagnostics);
    report
}

/// Fills in the source line of diagnostics made without one (reference checks and lints),
/// reading each file at most once. Files inside zips are left as they are.
fn add_line_texts(diagnostics: &mut [Diagnostic]) {
    let mut files: std::collections::HashMap<String, Option<String>> = Default::default();
    for d in diagnostics.iter_mut().filter(|d| d.line_text.is_empty()) {
        let file = d.location.file.to_string();
        let text = files
            .entry(file.clone())
            .or_insert_with(|| std::fs::read_to_string(&file).ok());
        if let Some(line) = text
            .as_deref()
            .and_then(|t| t.lines().nth(d.location.line.saturating_sub(1)))
        {
            d.line_text = line.trim_end_matches('\r').to_owned();
        }
    }
}

/// Runs `preflow check` on `paths` (targets checked against the environment file `env`,
/// or the one found beside the bundles) and prints the report to standard output.
pub fn run(paths: &[PathBuf], env: Option<&std::path::Path>) -> ExitCode {
    if paths.is_empty() {
        eprintln!("preflow check: give at least one bundle folder, folder of bundles or zip");
        return ExitCode::from(2);
    }
    let env_file = env
        .map(std::path::Path::to_path_buf)
        .or_else(|| preflow_cli::environment::find(paths));
    let report = match env_file {
        None => check(paths),
        Some(file) => match preflow_cli::environment::Environment::read(&file) {
            Ok(e) => check_with(paths, &e.engine),
            Err(e) => {
                eprintln!("preflow check: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(report.render().as_bytes());
    if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `n` and the noun in the number it takes: `1 error`, `2 errors`.
fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(dir: &std::path::Path, proxy: &str) {
        let root = dir.join("apiproxy");
        std::fs::create_dir_all(root.join("proxies")).unwrap();
        std::fs::create_dir_all(root.join("policies")).unwrap();
        std::fs::write(root.join("proxies/default.xml"), proxy).unwrap();
        std::fs::write(
            root.join("policies/SA.xml"),
            r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#,
        )
        .unwrap();
    }

    #[test]
    fn reports_errors_warnings_and_summary() {
        let dir = std::env::temp_dir().join(format!("preflow-check-{}", std::process::id()));
        bundle(
            &dir.join("good"),
            r#"<ProxyEndpoint name="default"><PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
<HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection><RouteRule name="r"/></ProxyEndpoint>"#,
        );
        let report = check(&[dir.join("good")]);
        assert_eq!(
            (report.errors(), report.warnings()),
            (0, 0),
            "{}",
            report.render()
        );
        assert_eq!(
            report.summary(),
            "checked 1 bundle (1 API proxy, 0 shared flows), 1 policy (1 supported, 0 unsupported): 0 errors, 0 warnings"
        );

        bundle(
            &dir.join("bad"),
            "<ProxyEndpoint name=\"default\">\n<PreFlow><Request><Step><Name>Nope</Name></Step>\n<Step><Condition>a = \"1\" and b = \"2\" or c = \"3\"</Condition><Name>SA</Name></Step></Request></PreFlow>\n<HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection></ProxyEndpoint>",
        );
        let report = check(&[dir.join("bad")]);
        let text = report.render();
        assert_eq!(report.errors(), 0, "{text}");
        assert!(
            text.contains(
                "/bad/apiproxy/proxies/default.xml:2:19: warning: step names policy `Nope`"
            ),
            "{text}"
        );
        assert!(
            text.contains("/bad/apiproxy/proxies/default.xml:3:18: warning: `AND` and `OR` mixed"),
            "{text}"
        );
        assert!(text.ends_with("0 errors, 5 warnings\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
