//! `<Javascript>`: runs a script from the bundle's `resources/jsc/` against Apigee's
//! JavaScript object model (`context`, `request`, `response`, `properties`, `print`,
//! `crypto`, `httpClient`) on QuickJS (the rquickjs crate).
//!
//! * **Compile once.** The bundle loader attaches the script files
//!   ([`Javascript::scripts`]); compiling the policy checks the syntax and caches the
//!   compiled function; each worker thread compiles a script once, on first use, and
//!   keeps it.
//! * **Isolation.** One QuickJS runtime and context per thread, reused: scripts run
//!   wrapped in a function (their declarations are local), globals a script creates are
//!   deleted after each run, and the standard objects are frozen, so no exchange sees
//!   another's data. Scripts get no file system or network: only `httpClient`, whose
//!   requests are host steps.
//! * **Limits.** `timeLimit` is a fuel budget of interrupt polls (QuickJS polls every
//!   10,000 branches or calls), [`POLLS_PER_MS`] per millisecond, not a clock read;
//!   memory ([`MEMORY_LIMIT`]) and native stack ([`STACK_LIMIT`]) are capped per
//!   runtime. A broken limit or an uncaught error is the fault
//!   `steps.javascript.ScriptExecutionFailed` with the script file and line.
//! * **Sans-IO `httpClient` by replay.** See [`engine`]: the script runs on a frame of
//!   values read before the run; when it waits for an `httpClient` response the host
//!   has not given yet, the run is aborted, the request goes to the host as a callout
//!   step ([`Outcome::Callout`], endpoint `javascript:{policy}`), and the script runs
//!   again from the start with the recorded responses. Writes of aborted runs are
//!   discarded; `Date` and `Math.random` come from the exchange, so the re-run takes
//!   the same path.

mod crypto;
mod engine;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;
use preflow_condition::Value;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Message, Outcome, PolicyRef, Runtime, Target, TargetError, Timeouts};
use crate::vars::Slot;
use crate::xml::Element;

use engine::{Frame, HttpResult, JsValRef, MessageSnap, OpKind, RunEnd};

/// Interrupt polls allowed per millisecond of `timeLimit`. QuickJS polls once every
/// 10,000 backward branches or calls; a tight loop on this class of machine makes about
/// 1.5 polls per millisecond, so the budget is generous on purpose and, being a count,
/// the same on every machine and every run.
pub const POLLS_PER_MS: u64 = 2;
/// The fuel when `timeLimit` is absent or 0 (Apigee: no limit); 10 s of tight loop.
pub const DEFAULT_FUEL: u64 = 20_000;
/// Bytes a script may allocate on its thread's runtime.
pub const MEMORY_LIMIT: usize = 32 * 1024 * 1024;
/// Native stack for the interpreter, which bounds recursion.
pub const STACK_LIMIT: usize = 512 * 1024;
/// Most re-runs of one execution (variables read by computed names, messages, calls).
const MAX_ATTEMPTS: usize = 24;

/// A script file attached from `resources/jsc/`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Script {
    /// The file name, as in `jsc://name`.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// `<Javascript>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Javascript {
    /// `timeLimit`, in milliseconds.
    pub time_limit_ms: Option<u64>,
    /// `<ResourceURL>`: `jsc://file.js`.
    pub resource_url: Option<String>,
    /// `<IncludeURL>`s, run before the main script in the same scope.
    pub include_urls: Vec<String>,
    /// `<Source>`: an inline script (used when there is no ResourceURL).
    pub source: Option<String>,
    /// `<Properties>`, the script's `properties` object.
    pub properties: Vec<(String, String)>,
    /// The script files, includes first, as the bundle loader found them (see
    /// [`Javascript::attach`]).
    pub scripts: Vec<Script>,
    /// The `jsc://` resources the bundle lacks.
    pub missing: Vec<String>,
}

/// The file name of a `jsc://name` resource URL.
pub fn resource_name(url: &str) -> &str {
    url.trim().strip_prefix("jsc://").unwrap_or(url.trim())
}

impl Javascript {
    /// Attaches the script files, includes first, with `lookup` giving the text of a
    /// `resources/jsc/` file by name. Names it cannot find are kept in
    /// [`Javascript::missing`] and returned; the policy faults when reached.
    pub fn attach(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
        self.scripts.clear();
        self.missing.clear();
        let urls: Vec<String> = self
            .include_urls
            .iter()
            .chain(self.resource_url.as_ref())
            .cloned()
            .collect();
        for url in urls {
            let name = resource_name(&url).to_owned();
            match lookup(&name) {
                Some(text) => self.scripts.push(Script { name, text }),
                None => self.missing.push(url),
            }
        }
        self.missing.clone()
    }

    /// The whole program: includes and main script (or `<Source>`), with where each
    /// file starts (its first line in the program).
    fn program(&self) -> (String, Vec<(u32, String)>) {
        let mut text = String::new();
        let mut map = Vec::new();
        let mut line = 1u32;
        let files = self
            .scripts
            .iter()
            .map(|s| (s.name.as_str(), s.text.as_str()));
        let inline = self
            .source
            .as_deref()
            .filter(|_| self.resource_url.is_none())
            .map(|s| ("Source", s));
        for (name, body) in files.chain(inline) {
            map.push((line, name.to_owned()));
            text.push_str(body);
            text.push('\n');
            line = line.saturating_add(u32::try_from(body.matches('\n').count() + 1).unwrap_or(0));
        }
        (text, map)
    }
}

/// Checks that a script compiles: `Err((message, line, column))` on a syntax error,
/// with the line and column (1-based) in `text` when QuickJS gives them. Compiles on
/// the calling thread's engine.
pub fn check_syntax(text: &str) -> Result<(), (String, Option<u32>, Option<u32>)> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    engine::compile(id, text, &limits(None)).map_err(|e| (e.message, e.line, e.column))
}

/// Constructs of Apigee's Rhino that QuickJS cannot run, found in `text`: byte offset
/// and a message for each (E4X XML literals and `.asXML`, Java classes).
pub fn unsupported_constructs(text: &str) -> Vec<(usize, String)> {
    const CONSTRUCTS: &[(&str, &str)] = &[
        (
            ".asXML",
            "E4X (`.asXML`) is not supported: the value is undefined here; parse the XML with the XMLToJSON policy",
        ),
        ("new XML(", "E4X (`new XML`) is not supported"),
        ("new XMLList(", "E4X (`new XMLList`) is not supported"),
        (
            "importPackage(",
            "Java classes (`importPackage`) are not available",
        ),
        (
            "importClass(",
            "Java classes (`importClass`) are not available",
        ),
        ("Packages.", "Java classes (`Packages.`) are not available"),
        ("java.lang.", "Java classes (`java.lang`) are not available"),
        ("java.util.", "Java classes (`java.util`) are not available"),
        (
            "JavaImporter(",
            "Java classes (`JavaImporter`) are not available",
        ),
    ];
    let mut out = Vec::new();
    for (needle, message) in CONSTRUCTS {
        if let Some(at) = text.find(needle) {
            out.push((at, (*message).to_owned()));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

fn javascript(cx: &mut Cx<'_>, el: &Element) -> Javascript {
    cx.known_policy(el, &["ResourceURL", "IncludeURL", "Source", "SSLInfo"]);
    let time_limit_ms = cx.attr_number::<u64>(el, "timeLimit");
    let resource_url = cx.child_text(el, "ResourceURL");
    let include_urls = el
        .children_named("IncludeURL")
        .filter_map(|e| e.non_empty_text().map(str::to_owned))
        .collect();
    let source = el.child("Source").map(|s| s.text().to_owned());
    if resource_url.is_none() && source.is_none() {
        cx.warning(
            el.offset,
            "Javascript policy has neither <ResourceURL> nor <Source>; it faults when reached",
        );
    }
    Javascript {
        time_limit_ms,
        resource_url,
        include_urls,
        source,
        properties: el.properties(),
        scripts: Vec::new(),
        missing: Vec::new(),
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn limits(time_limit_ms: Option<u64>) -> engine::Limits {
    engine::Limits {
        fuel: time_limit_ms
            .filter(|t| *t > 0)
            .map_or(DEFAULT_FUEL, |t| t.saturating_mul(POLLS_PER_MS).max(1)),
        memory: MEMORY_LIMIT,
        stack: STACK_LIMIT,
    }
}

/// A compiled Javascript policy.
#[derive(Debug)]
pub(crate) struct CompiledJavascript {
    name: String,
    id: u64,
    /// `None` when a resource is missing.
    source: Option<Arc<str>>,
    missing: Vec<String>,
    files: Vec<(u32, String)>,
    properties: Vec<(String, String)>,
    limits: engine::Limits,
    prefetch: Vec<(String, Slot)>,
    messages: bool,
    /// The script may define globals other than by assignment: compare all of them.
    thorough: bool,
}

/// How the attempts of an execution ended.
// Returned once per execution, never stored: boxing the outcome would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Attempts {
    /// With this outcome.
    Done(Outcome),
    /// With a request for the host to send.
    Callout(engine::HttpCall),
}

/// What an execution remembers across its callouts.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    vars: Vec<String>,
    messages: [bool; 2],
    responses: Vec<HttpResult>,
}

/// Variable names the script reads with string literals: read before each run.
fn literal_names(source: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("getVariable(") {
        rest = rest.get(at + "getVariable(".len()..).unwrap_or("");
        let trimmed = rest.trim_start();
        let Some(q) = trimmed
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
        else {
            continue;
        };
        let body = trimmed.get(1..).unwrap_or("");
        if let Some(end) = body.find(q) {
            let name = body.get(..end).unwrap_or("");
            if !name.contains('\\') && !name.contains("${") && !out.iter().any(|n| n == name) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// Whether the script uses the message objects (then they are read before each run).
fn uses_messages(source: &str) -> bool {
    const WORDS: &[&str] = &[
        "request",
        "response",
        "proxyRequest",
        "proxyResponse",
        "targetRequest",
        "targetResponse",
    ];
    let bytes = source.as_bytes();
    WORDS.iter().any(|w| {
        source.match_indices(w).any(|(i, _)| {
            let before = i.checked_sub(1).and_then(|b| bytes.get(b)).copied();
            let after = bytes.get(i + w.len()).copied();
            !matches!(before, Some(b'"' | b'\'' | b'`' | b'_' | b'$') | Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'))
                && matches!(after, Some(b'.' | b'['))
        })
    })
}

fn fault(name: &str, file: &str, what: &str) -> Fault {
    Fault::new(
        "steps.javascript.ScriptExecutionFailed",
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "Execution of {name} failed with error: Javascript runtime error: \"{what}. ({file})\""
        ),
    )
}

impl CompiledJavascript {
    fn locate(&self, line: Option<u32>) -> String {
        let Some(line) = line else {
            return self.files.first().map(|f| f.1.clone()).unwrap_or_default();
        };
        let file = self.files.iter().rev().find(|(start, _)| *start <= line);
        match file {
            Some((start, name)) => format!("{name}:{}", line - start + 1),
            None => format!("line {line}"),
        }
    }

    /// Fills `f` (reset) with what a run may read.
    fn fill<R: Runtime>(&self, rt: &R, replay: &Replay, f: &mut Frame) {
        f.now_ms = (rt.now_ns() / 1_000_000) as f64;
        f.flow = if rt.is_response_side() {
            "PROXY_RESP_FLOW"
        } else {
            "PROXY_REQ_FLOW"
        };
        for (name, slot) in &self.prefetch {
            set_var(rt, f, slot, name);
        }
        for name in &replay.vars {
            let slot = rt.resolve(name);
            set_var(rt, f, &slot, name);
        }
        if self.messages || replay.messages[0] {
            f.messages[0] = Some(Some(Box::new(snapshot(rt, rt.request(), true))));
        }
        if self.messages || replay.messages[1] {
            f.messages[1] = Some(rt.response().map(|m| Box::new(snapshot(rt, m, false))));
        }
        f.responses.clone_from(&replay.responses);
        f.session.clone_from(&rt.state().javascript_session);
    }

    fn execute<R: Runtime>(&self, rt: &mut R, mut replay: Replay) -> Outcome {
        let Some(source) = &self.source else {
            return Outcome::Fault(Fault::new(
                "steps.javascript.ScriptExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                if self.missing.is_empty() {
                    format!(
                        "Execution of {} failed with error: the policy has no script",
                        self.name
                    )
                } else {
                    format!(
                        "Execution of {} failed with error: resource {} is not in the bundle's resources/jsc/",
                        self.name,
                        self.missing.join(", ")
                    )
                },
            ));
        };
        let mut frame = engine::take_frame();
        let out = self.attempts(rt, &mut replay, source, &mut frame);
        engine::give_frame(frame);
        match out {
            Attempts::Done(outcome) => outcome,
            Attempts::Callout(call) => self.callout(rt, replay, call),
        }
    }

    /// Runs the script until it finishes, faults or needs an `httpClient` response.
    fn attempts<R: Runtime>(
        &self,
        rt: &mut R,
        replay: &mut Replay,
        source: &str,
        frame: &mut Frame,
    ) -> Attempts {
        let seed = (rt.now_ns() as u32) ^ (rt.policy().policy as u32).wrapping_mul(0x9e37_79b9);
        for _ in 0..MAX_ATTEMPTS {
            frame.reset();
            self.fill(rt, replay, frame);
            let end = engine::run(
                self.id,
                source,
                &self.properties,
                seed,
                self.thorough,
                &self.limits,
                frame,
            );
            match end {
                RunEnd::Done => {
                    if let Some(call) = frame.calls.get(replay.responses.len()) {
                        // A request nobody waited for: still sent, as Apigee does.
                        return Attempts::Callout(call.clone());
                    }
                    self.apply(rt, frame);
                    return Attempts::Done(Outcome::Continue);
                }
                RunEnd::Missing => {
                    let before = (replay.vars.len(), replay.messages);
                    for v in frame.missing_vars.drain(..) {
                        if !replay.vars.contains(&v) {
                            replay.vars.push(v);
                        }
                    }
                    for (k, m) in frame.missing_messages.iter().enumerate() {
                        if *m && let Some(slot) = replay.messages.get_mut(k) {
                            *slot = true;
                        }
                    }
                    if (replay.vars.len(), replay.messages) != before {
                        continue;
                    }
                    if frame.wants_call
                        && let Some(call) = frame.calls.get(replay.responses.len())
                    {
                        return Attempts::Callout(call.clone());
                    }
                    return Attempts::Done(Outcome::Fault(fault(
                        &self.name,
                        &self.locate(None),
                        "Error: the script waited for a response to a request it did not send",
                    )));
                }
                RunEnd::TimedOut => {
                    return Attempts::Done(Outcome::Fault(Fault::new(
                        "steps.javascript.ScriptExecutionFailed",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "Execution of {} failed with error: Javascript runtime exceeded limit of {}ms",
                            self.name,
                            self.limits.fuel / POLLS_PER_MS
                        ),
                    )));
                }
                RunEnd::Error { message, line } => {
                    return Attempts::Done(Outcome::Fault(fault(
                        &self.name,
                        &self.locate(line),
                        &message,
                    )));
                }
            }
        }
        Attempts::Done(Outcome::Fault(fault(
            &self.name,
            &self.locate(None),
            "Error: too many variables read by computed names or httpClient requests",
        )))
    }

    fn callout<R: Runtime>(&self, rt: &mut R, replay: Replay, call: engine::HttpCall) -> Outcome {
        let mut builder = http::Request::builder()
            .method(call.method.as_str())
            .uri(call.url.as_str());
        for (k, v) in &call.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Bytes::from(call.body))
            .ok()
            .filter(|r| r.uri().scheme().is_some() && r.uri().authority().is_some());
        let Some(request) = request else {
            let mut replay = replay;
            replay.responses.push(HttpResult::Error(format!(
                "invalid request URL `{}`",
                call.url
            )));
            return self.execute(rt, replay);
        };
        let at = rt.policy();
        let state = &mut rt.state_mut().javascript;
        state.retain(|(p, _)| *p != at);
        state.push((at, replay));
        Outcome::Callout(Target {
            request,
            timeouts: Timeouts::default(),
            endpoint: format!("javascript:{}", self.name).into(),
            tls: None,
            server: None,
            address: None,
            stream_request_body: false,
            stream_response_body: false,
        })
    }

    fn apply<R: Runtime>(&self, rt: &mut R, frame: &mut Frame) {
        if !frame.prints.is_empty() {
            for p in &frame.prints {
                rt.print(p);
            }
            if let Some(sink) = rt.env().resources.log_sink.clone() {
                for p in frame.prints.drain(..) {
                    sink.log(crate::service::LogRecord::print(&self.name, p));
                }
            }
        }
        let mut request_changed = false;
        for op in frame.ops.iter() {
            match op.kind {
                OpKind::Set => rt.set_variable(&op.a, op.b.clone()),
                OpKind::Remove => rt.remove_variable(&op.a),
                OpKind::Session { remove } => {
                    let session = &mut rt.state_mut().javascript_session;
                    session.retain(|(n, _)| *n != op.a);
                    if !remove {
                        session.push((op.a.clone(), op.b.clone()));
                    }
                }
                OpKind::Message { kind, set } => {
                    if kind == 0 {
                        request_changed = true;
                        if op.c == "url" && op.a.contains("://") {
                            rt.set_variable("target.url", op.a.clone());
                            continue;
                        }
                        apply_message(rt.request_mut(), &op.c, op.a.clone(), &op.b, set);
                    } else {
                        let m = rt
                            .response_mut()
                            .get_or_insert_with(|| Message::response(StatusCode::OK));
                        apply_message(m, &op.c, op.a.clone(), &op.b, set);
                    }
                }
            }
        }
        if request_changed {
            rt.invalidate_params();
        }
    }
}

fn apply_message(m: &mut Message, field: &str, a: String, b: &str, set: bool) {
    match field {
        "headers" => {
            let Ok(name) = http::HeaderName::from_bytes(a.as_bytes()) else {
                return;
            };
            m.headers.remove(&name);
            if set {
                for v in b.split('\u{0}') {
                    if let Ok(v) = http::HeaderValue::from_str(v) {
                        m.headers.append(name.clone(), v);
                    }
                }
            }
        }
        "query" => {
            let old = m.query.take().unwrap_or_default();
            let mut out = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form_urlencoded::parse(old.as_bytes()) {
                if k != a.as_str() {
                    out.append_pair(&k, &v);
                }
            }
            if set {
                for v in b.split('\u{0}') {
                    out.append_pair(&a, v);
                }
            }
            let q = out.finish();
            m.query = (!q.is_empty()).then_some(q);
        }
        "content" => {
            m.body = Bytes::from(a);
            m.headers.remove(http::header::CONTENT_LENGTH);
        }
        "method" => {
            if let Ok(method) = http::Method::from_bytes(a.as_bytes()) {
                m.method = method;
            }
        }
        "url" | "path" => match a.split_once('?') {
            Some((p, q)) => {
                m.path = p.to_owned();
                m.query = Some(q.to_owned());
            }
            None => m.path = a,
        },
        "status" => {
            if let Ok(s) = a.trim().parse::<u16>()
                && let Ok(s) = StatusCode::from_u16(s)
            {
                m.status = s;
            }
        }
        "reason" => m.reason = Some(a),
        _ => {}
    }
}

/// Puts variable `name` (at `slot`) into the frame, as the script will read it.
fn set_var<R: Runtime>(rt: &R, f: &mut Frame, slot: &Slot, name: &str) {
    let v = match rt.value(slot) {
        Value::Null => JsValRef::Null,
        Value::String(s) => JsValRef::Str(s),
        Value::Integer(i) => JsValRef::Num(f64::from(i)),
        Value::Long(i) => JsValRef::Num(i as f64),
        Value::Float(x) => JsValRef::Num(f64::from(x)),
        Value::Double(x) => JsValRef::Num(x),
        Value::Boolean(b) => JsValRef::Bool(b),
        Value::Object => {
            let text = rt.variable(name);
            f.vars
                .set(name, text.as_deref().map_or(JsValRef::Null, JsValRef::Str));
            return;
        }
    };
    f.vars.set(name, v);
}

fn snapshot<R: Runtime>(rt: &R, m: &Message, request: bool) -> MessageSnap {
    let headers = m
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (url, path, query, form) = if request {
        let uri = rt.original_uri();
        let host = m
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(http::uri::Authority::as_str))
            .unwrap_or("localhost");
        let pq = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        (
            format!("{}://{host}{pq}", rt.client().scheme.as_str()),
            rt.variable("request.path").unwrap_or_default(),
            rt.query_params().to_vec(),
            rt.form_params().to_vec(),
        )
    } else {
        (String::new(), String::new(), Vec::new(), Vec::new())
    };
    MessageSnap {
        method: m.method.as_str().to_owned(),
        url,
        path,
        status: m.status.as_u16(),
        reason: m
            .reason
            .clone()
            .or_else(|| m.status.canonical_reason().map(str::to_owned))
            .unwrap_or_default(),
        content: String::from_utf8_lossy(&m.body).into_owned(),
        headers,
        query,
        form,
    }
}

/// The Javascript policy type.
#[derive(Debug)]
pub(crate) struct JavascriptPolicy;

impl PolicyType for JavascriptPolicy {
    type Config = Box<Javascript>;
    type Compiled = CompiledJavascript;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Box<Javascript> {
        Box::new(javascript(cx, el))
    }

    fn compile(c: &Box<Javascript>, cx: &BuildCx<'_>) -> Result<CompiledJavascript, CompileError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let limits = limits(c.time_limit_ms);
        let have = c.missing.is_empty() && (!c.scripts.is_empty() || c.source.is_some());
        let missing = if have {
            Vec::new()
        } else if c.missing.is_empty() {
            c.resource_url.iter().cloned().collect()
        } else {
            c.missing.clone()
        };
        let (text, files) = c.program();
        let source: Option<Arc<str>> = have.then(|| Arc::from(text.as_str()));
        let mut prefetch = Vec::new();
        let mut messages = false;
        let mut thorough = true;
        if let Some(src) = &source {
            if let Err(e) = engine::compile(id, src, &limits) {
                let cj = CompiledJavascript {
                    name: cx.name.to_owned(),
                    id,
                    source: None,
                    missing: Vec::new(),
                    files,
                    properties: Vec::new(),
                    limits,
                    prefetch,
                    messages,
                    thorough: true,
                };
                return Err(CompileError::new(format!(
                    "syntax error in {}: {}",
                    cj.locate(e.line),
                    e.message
                )));
            }
            prefetch = literal_names(src)
                .into_iter()
                .map(|n| {
                    let slot = cx.resolve(&n);
                    (n, slot)
                })
                .collect();
            messages = uses_messages(src);
            thorough = [
                "defineProperty",
                "globalThis",
                "Reflect",
                "__proto__",
                "eval",
                "Function(",
            ]
            .iter()
            .any(|w| src.contains(w));
        }
        Ok(CompiledJavascript {
            name: cx.name.to_owned(),
            id,
            source,
            missing,
            files,
            properties: c.properties.clone(),
            limits,
            prefetch,
            messages,
            thorough,
        })
    }

    fn run<R: Runtime>(c: &CompiledJavascript, rt: &mut R) -> Outcome {
        let at = rt.policy();
        rt.state_mut().javascript.retain(|(p, _)| *p != at);
        c.execute(rt, Replay::default())
    }

    fn resume_callout<R: Runtime>(
        c: &CompiledJavascript,
        rt: &mut R,
        result: Result<http::Response<Bytes>, TargetError>,
    ) -> Outcome {
        let at: PolicyRef = rt.policy();
        let state = &mut rt.state_mut().javascript;
        let mut replay = match state.iter().position(|(p, _)| *p == at) {
            Some(i) => state.swap_remove(i).1,
            None => Replay::default(),
        };
        replay.responses.push(match result {
            Ok(r) => HttpResult::Response {
                status: r.status().as_u16(),
                reason: r.status().canonical_reason().unwrap_or("").to_owned(),
                headers: r
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                content: String::from_utf8_lossy(r.body()).into_owned(),
            },
            Err(e) => HttpResult::Error(e.to_string()),
        });
        c.execute(rt, replay)
    }

    fn variables_set(c: &Box<Javascript>) -> Vec<String> {
        let mut out = Vec::new();
        for s in &c.scripts {
            let mut rest = s.text.as_str();
            while let Some(at) = rest.find("setVariable(") {
                rest = rest.get(at + "setVariable(".len()..).unwrap_or("");
                let t = rest.trim_start();
                if let Some(q) = t.chars().next().filter(|c| matches!(c, '"' | '\''))
                    && let Some(body) = t.get(1..)
                    && let Some(end) = body.find(q)
                    && let Some(name) = body.get(..end)
                {
                    out.push(name.to_owned());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
