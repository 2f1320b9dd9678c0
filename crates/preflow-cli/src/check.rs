//! `preflow check PATH...`: loads bundles (an `apiproxy/` or `sharedflowbundle/` folder,
//! SAP's `APIProxy/` under any folder name, an SAP policy template, a folder holding them,
//! or a zip), runs the lints, and prints every problem with its rule
//! id, source line and caret (`--format text`, the default), as JSON (`--format json`) or
//! as SARIF 2.1.0 (`--format sarif`). The rule catalogue is `docs/rules.md`.
//!
//! Severities: each rule has a default; `--strict` makes references a build may fill in
//! later (REF001–REF004) errors; an optional config file (`--config FILE`, else
//! `.preflow-check.toml` in the current folder) sets `profile`, `strict` and a severity per
//! rule; `--deny RULE` makes a rule an error and `--allow RULE` silences it, over the file.
//!
//! Exit codes: 0 no error (warnings allowed), 1 at least one error, 2 usage problem (no
//! path, an unknown rule, an unreadable config or environment file).

use preflow::rules::{RULES, Rule, rule_by_id, rule_of};
use preflow::{
    Bundle, BundleKind, Diagnostic, LintOptions, LoadOptions, Platform, Severity, lint_with,
    load_path,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `file:line:column: severity[RULE]: message`, the source line, a caret, the hint.
    #[default]
    Text,
    /// One JSON document: the findings and a summary.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

/// The Apigee platform to check for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileArg {
    /// Apigee Edge.
    Edge,
    /// Apigee X.
    X,
}

/// `preflow check` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Bundles to check.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Environment file to check targets against (API providers, target servers,
    /// trust and key stores). Default: `environment.toml` in a PATH folder, if any.
    #[arg(long = "env", value_name = "FILE")]
    pub env: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The Apigee platform the bundles are for: features of the other are reported
    /// (default: the config file's `profile`, else none: no platform checks).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Missing policies, resource files, target servers and shared flows are errors, as
    /// Apigee's import treats them.
    #[arg(long)]
    pub strict: bool,
    /// Make rule RULE an error (repeatable, or comma-separated).
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    pub deny: Vec<String>,
    /// Do not report rule RULE (repeatable, or comma-separated).
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Config file (TOML: `profile`, `strict`, `[rules] RULE = "error"|"warning"|"off"`).
    /// Default: `.preflow-check.toml` in the current folder, if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What a config file or the flags ask of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Report as an error.
    Error,
    /// Report as a warning.
    Warning,
    /// Do not report.
    Off,
}

/// The config file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `profile = "edge" | "x"`.
    pub profile: Option<ProfileArg>,
    /// `strict = true`.
    #[serde(default)]
    pub strict: bool,
    /// `[rules]`: a level per rule id.
    #[serde(default)]
    pub rules: BTreeMap<String, Level>,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A rule id that is not in the catalogue.
    #[error("unknown rule `{0}` (see docs/rules.md)")]
    UnknownRule(String),
    /// The config file cannot be read.
    #[error("cannot read config file {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("config file {file}: {source}")]
    Parse {
        /// The file.
        file: String,
        /// Why.
        source: Box<toml::de::Error>,
    },
}

/// How findings are judged: the platform, `strict`, and a level per rule.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The platform checked for.
    pub platform: Platform,
    /// Strict references.
    pub strict: bool,
    /// Levels by rule id, flags over the config file.
    pub levels: BTreeMap<&'static str, Level>,
}

impl Settings {
    /// Settings from a config file (if any) and the flags.
    ///
    /// # Errors
    /// An unknown rule id, or a config file that cannot be read or parsed.
    pub fn new(args: &Args) -> Result<Self, SettingsError> {
        let file = match &args.config {
            Some(f) => Some(f.clone()),
            None => Some(PathBuf::from(".preflow-check.toml")).filter(|f| f.is_file()),
        };
        let config = match file {
            None => ConfigFile::default(),
            Some(f) => {
                let name = f.display().to_string();
                let text = std::fs::read_to_string(&f).map_err(|source| SettingsError::Read {
                    file: name.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| SettingsError::Parse {
                    file: name,
                    source: Box::new(source),
                })?
            }
        };
        let mut levels = BTreeMap::new();
        for (id, level) in &config.rules {
            levels.insert(known(id)?.id, *level);
        }
        for id in &args.deny {
            levels.insert(known(id)?.id, Level::Error);
        }
        for id in &args.allow {
            levels.insert(known(id)?.id, Level::Off);
        }
        let platform = match args.profile.or(config.profile) {
            Some(ProfileArg::Edge) => Platform::Edge,
            Some(ProfileArg::X) => Platform::X,
            None => Platform::Any,
        };
        Ok(Self {
            platform,
            strict: args.strict || config.strict,
            levels,
        })
    }

    /// Gives each diagnostic its rule and the severity these settings ask for, and drops
    /// the silenced ones.
    pub fn apply(&self, diagnostics: &mut Vec<Diagnostic>) {
        diagnostics.retain_mut(|d| {
            let id = rule_of(d);
            d.rule = Some(id);
            if self.strict && rule_by_id(id).is_some_and(|r| r.strict) {
                d.severity = Severity::Error;
            }
            match self.levels.get(id) {
                Some(Level::Off) => false,
                Some(Level::Error) => {
                    d.severity = Severity::Error;
                    true
                }
                Some(Level::Warning) => {
                    d.severity = Severity::Warning;
                    true
                }
                None => true,
            }
        });
    }
}

fn known(id: &str) -> Result<&'static Rule, SettingsError> {
    rule_by_id(id.trim()).ok_or_else(|| SettingsError::UnknownRule(id.trim().to_owned()))
}

/// The outcome of checking some paths.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// The bundles loaded.
    pub bundles: Vec<Bundle>,
    /// The SAP policy templates loaded.
    pub templates: Vec<preflow::PolicyTemplate>,
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
        let templates = if self.templates.is_empty() {
            String::new()
        } else {
            let policies: usize = self.templates.iter().map(|t| t.policies.len()).sum();
            format!(
                ", {} ({})",
                count(self.templates.len(), "policy template", "policy templates"),
                count(policies, "policy", "policies")
            )
        };
        format!(
            "checked {}{templates}, {} ({supported} supported, {} unsupported): {}, {}",
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

    /// Every problem with its source line and caret, and the summary, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render());
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// The findings and the summary as one JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                serde_json::json!({
                    "rule": d.rule,
                    "severity": d.severity.to_string(),
                    "file": d.location.file.as_ref(),
                    "line": d.location.line,
                    "column": d.location.column,
                    "message": d.message,
                    "hint": d.hint,
                    "source_line": d.line_text,
                })
            })
            .collect();
        serde_json::json!({
            "findings": findings,
            "errors": self.errors(),
            "warnings": self.warnings(),
            "bundles": self.bundles.len(),
            "summary": self.summary(),
        })
    }

    /// The findings as a SARIF 2.1.0 log, every rule of the catalogue described in
    /// `tool.driver.rules`.
    pub fn to_sarif(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = RULES
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "shortDescription": { "text": r.summary },
                    "fullDescription": { "text": r.rationale },
                    "help": { "text": format!("{} {}", r.summary, r.rationale) },
                    "defaultConfiguration": { "level": level(r.severity) },
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let id = d.rule.unwrap_or("LOAD002");
                let mut text = d.message.clone();
                if let Some(h) = &d.hint {
                    text.push_str(" (");
                    text.push_str(h);
                    text.push(')');
                }
                let mut region = serde_json::json!({
                    "startLine": d.location.line,
                    "startColumn": d.location.column,
                });
                if !d.line_text.is_empty()
                    && let Some(r) = region.as_object_mut()
                {
                    r.insert(
                        "snippet".to_owned(),
                        serde_json::json!({ "text": d.line_text }),
                    );
                }
                serde_json::json!({
                    "ruleId": id,
                    "ruleIndex": RULES.iter().position(|r| r.id == id),
                    "level": level(d.severity),
                    "message": { "text": text },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": uri(&d.location.file) },
                            "region": region,
                        }
                    }],
                })
            })
            .collect();
        serde_json::json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "preflow",
                        "version": env!("CARGO_PKG_VERSION"),
                        "informationUri": "https://github.com/preflow/preflow/blob/main/docs/rules.md",
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }]
        })
    }
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A file name as a SARIF URI: relative to the current folder when it is under it, else a
/// `file://` URI; `/`-separated, spaces and `%` escaped.
fn uri(file: &str) -> String {
    let path = Path::new(file);
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf());
    let text = rel
        .to_string_lossy()
        .replace('\\', "/")
        .replace('%', "%25")
        .replace(' ', "%20");
    if rel.is_absolute() {
        format!("file://{text}")
    } else {
        text
    }
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

/// Loads and lints `paths` with default settings.
#[cfg(test)]
fn check(paths: &[PathBuf]) -> Report {
    check_settings(paths, None, &Settings::default())
}

/// Loads and lints `paths`, checks targets against `env` when given, and judges the
/// findings by `settings`.
pub fn check_settings(
    paths: &[PathBuf],
    env: Option<&preflow::Environment>,
    settings: &Settings,
) -> Report {
    let options = LoadOptions::default();
    let mut report = Report::default();
    for path in paths {
        let loaded = load_path(path, &options);
        report.bundles.extend(loaded.bundles);
        report.templates.extend(loaded.templates);
        report.diagnostics.extend(loaded.diagnostics);
    }
    let lint_options = LintOptions::for_platform(settings.platform);
    report
        .diagnostics
        .extend(lint_with(&report.bundles, &lint_options));
    // A template's policies get the policy checks; its flows are only fragments of a
    // proxy's, so the flow and route checks do not apply.
    for t in &report.templates {
        let policy_files: Vec<&str> = t.policies.values().map(|p| &*p.location.file).collect();
        report.diagnostics.extend(
            lint_with(&[t.as_bundle()], &lint_options)
                .into_iter()
                .filter(|d| policy_files.contains(&&*d.location.file)),
        );
    }
    if let Some(env) = env {
        report
            .diagnostics
            .extend(preflow::lint_environment(&report.bundles, env));
    }
    settings.apply(&mut report.diagnostics);
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

/// Runs `preflow check` and prints the report to standard output in the chosen format.
pub fn run(args: &Args) -> ExitCode {
    if args.paths.is_empty() {
        eprintln!("preflow check: give at least one bundle folder, folder of bundles or zip");
        return ExitCode::from(2);
    }
    let settings = match Settings::new(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("preflow check: {e}");
            return ExitCode::from(2);
        }
    };
    let env_file = args
        .env
        .clone()
        .or_else(|| preflow_cli::environment::find(&args.paths));
    let report = match env_file {
        None => check_settings(&args.paths, None, &settings),
        Some(file) => match preflow_cli::environment::Environment::read(&file) {
            Ok(e) => check_settings(&args.paths, Some(&e.engine), &settings),
            Err(e) => {
                eprintln!("preflow check: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let text = match args.format {
        Format::Text => report.render(),
        Format::Json => format!("{:#}\n", report.to_json()),
        Format::Sarif => format!("{:#}\n", report.to_sarif()),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
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

    #[test]
    fn templates_get_the_policy_checks() {
        let dir = std::env::temp_dir().join(format!("preflow-check-tpl-{}", std::process::id()));
        let root = dir.join("PolicyTemplateContainer");
        std::fs::create_dir_all(root.join("Policy")).unwrap();
        std::fs::write(
            root.join("T.xml"),
            "<PolicyTemplateContainer><name>T</name><proxyEndPoint><ProxyEndPoint><preFlow><request><steps><step><policy_name>AV</policy_name></step></steps></request></preFlow></ProxyEndPoint></proxyEndPoint></PolicyTemplateContainer>",
        )
        .unwrap();
        std::fs::write(
            root.join("Policy/AV.xml"),
            "<AssignMessage><AssignVariable><Name>x</Name></AssignVariable></AssignMessage>",
        )
        .unwrap();
        let report = check(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        let text = report.render();
        assert!(text.contains("Policy/AV.xml:1:"), "{text}");
        assert!(
            text.ends_with("1 policy template (1 policy), 0 policies (0 supported, 0 unsupported): 0 errors, 1 warning\n"),
            "{text}"
        );
    }

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
            "<ProxyEndpoint name=\"default\">\n<PreFlow><Request><Step><Name>Nope</Name></Step>\n<Step><Condition>a = \"1\" and b = \"2\" or c = \"3\"</Condition><Name>SA</Name></Step></Request></PreFlow>\n<HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection><RouteRule name=\"r\"/></ProxyEndpoint>",
        );
        let report = check(&[dir.join("bad")]);
        let text = report.render();
        assert_eq!(report.errors(), 0, "{text}");
        assert!(
            text.contains(
                "/bad/apiproxy/proxies/default.xml:2:19: warning[REF001]: step names policy `Nope`"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "/bad/apiproxy/proxies/default.xml:3:18: warning[COND001]: `AND` and `OR` mixed"
            ),
            "{text}"
        );
        assert!(text.ends_with("0 errors, 5 warnings\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
