//! The script engine: one QuickJS runtime and context per thread, reused by every
//! execution on that thread, with the Apigee object model of `prelude.js` installed once.
//!
//! Host functions cannot borrow the exchange (QuickJS closures must be `'static`), so an
//! execution works on a [`Frame`]: the variables and messages the script may read,
//! taken from the exchange before the run, and the writes it makes, buffered and applied
//! after a successful run. A read the frame cannot answer (a variable name built at run
//! time, a message, an `httpClient` response) aborts the run uncatchably; the caller
//! fetches what was missing and runs the script again. Nothing of an aborted run is
//! applied, and `Date` and `Math.random` are seeded from the exchange, so the re-run
//! behaves like a single run would have.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use base64::Engine as _;
use rquickjs::{Context, Ctx, Function, Object, Persistent, Runtime, Value};

/// Limits of one execution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Interrupt polls allowed (QuickJS polls every 10,000 branches or calls).
    pub fuel: u64,
    /// Bytes the runtime may allocate, on top of what the object model takes.
    pub memory: usize,
    /// Native stack for the interpreter, in bytes.
    pub stack: usize,
}

/// A typed variable value as the script sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsVal {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
}

/// A snapshot of a message for the script.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessageSnap {
    pub method: String,
    pub url: String,
    pub path: String,
    pub status: u16,
    pub reason: String,
    pub content: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

/// A write the script made, applied after the run in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// `context.setVariable`.
    Set(String, String),
    /// `context.removeVariable`.
    Remove(String),
    /// `context.session.setAttribute` (the value as JSON) or `removeAttribute` (`None`).
    Session(String, Option<String>),
    /// A change to message `kind` (0 request, 1 response): field, name or value, values.
    Message {
        kind: u8,
        field: String,
        a: String,
        b: String,
        set: bool,
    },
}

/// An `httpClient` request the script made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpCall {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The host's answer to an `httpClient` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HttpResult {
    Response {
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        content: String,
    },
    Error(String),
}

/// What a run reads and writes.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub vars: HashMap<String, JsVal>,
    /// Per message: not taken yet (`None`), absent (`Some(None)`) or its snapshot.
    pub messages: [Option<Option<MessageSnap>>; 2],
    pub responses: Vec<HttpResult>,
    /// `context.session` as the exchange holds it: name and value as JSON.
    pub session: Vec<(String, String)>,
    pub now_ms: f64,
    pub flow: &'static str,
    // Outputs.
    pub missing_vars: Vec<String>,
    pub missing_messages: [bool; 2],
    pub wants_call: bool,
    pub calls: Vec<HttpCall>,
    pub ops: Vec<Op>,
    pub prints: Vec<String>,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// It finished.
    Done,
    /// It needs something the frame lacks; see the frame's outputs.
    Missing,
    /// It ran out of fuel.
    TimedOut,
    /// It threw (or broke a limit): the message, and where if known.
    Error { message: String, line: Option<u32> },
}

/// Why a script does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SyntaxError {
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

struct Engine {
    // Field order is drop order: JS values before the context, the context before the
    // runtime.
    /// Compiled scripts by id, with their frozen `properties` object.
    scripts: HashMap<
        u64,
        (
            Persistent<Function<'static>>,
            Option<Persistent<Object<'static>>>,
        ),
    >,
    run: Persistent<Function<'static>>,
    frame: Rc<RefCell<Frame>>,
    fuel: Rc<Cell<u64>>,
    abort: Rc<Cell<bool>>,
    memory: usize,
    ctx: Context,
    rt: Runtime,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// The file name QuickJS puts in stack traces for scripts, so lines can be found.
pub(crate) const SCRIPT_FILE: &str = "__script__";

/// Most compiled scripts kept per thread (old bundles' scripts go when it fills up).
const MAX_CACHED: usize = 4096;

const PRELUDE: &str = include_str!("prelude.js");

fn js_err(e: rquickjs::Error) -> String {
    e.to_string()
}

fn engine_new(limits: &Limits) -> Result<Engine, String> {
    let rt = Runtime::new().map_err(js_err)?;
    let ctx = Context::full(&rt).map_err(js_err)?;
    let frame = Rc::new(RefCell::new(Frame::default()));
    let fuel = Rc::new(Cell::new(u64::MAX));
    let abort = Rc::new(Cell::new(false));
    let run = ctx.with(|ctx| -> rquickjs::Result<Persistent<Function<'static>>> {
        let pf = Object::new(ctx.clone())?;
        install_natives(&ctx, &pf, &frame, &abort)?;
        let make: Function = ctx.eval(PRELUDE)?;
        let run: Function = make.call((pf, ctx.globals()))?;
        Ok(Persistent::save(&ctx, run))
    });
    let run = match run {
        Ok(r) => r,
        Err(e) => return Err(ctx.with(|ctx| describe(&ctx, e).0)),
    };
    rt.set_max_stack_size(limits.stack);
    let base = rt.memory_usage().malloc_size.max(0);
    let memory = usize::try_from(base).unwrap_or(0);
    rt.set_memory_limit(memory.saturating_add(limits.memory));
    rt.set_gc_threshold(memory.saturating_add(limits.memory / 4));
    let (f, a) = (fuel.clone(), abort.clone());
    rt.set_interrupt_handler(Some(Box::new(move || {
        if a.get() {
            return true;
        }
        let left = f.get();
        if left == 0 {
            return true;
        }
        f.set(left - 1);
        false
    })));
    Ok(Engine {
        scripts: HashMap::new(),
        run,
        frame,
        fuel,
        abort,
        memory,
        ctx,
        rt,
    })
}

fn install_natives<'js>(
    ctx: &Ctx<'js>,
    pf: &Object<'js>,
    frame: &Rc<RefCell<Frame>>,
    abort: &Rc<Cell<bool>>,
) -> rquickjs::Result<()> {
    let (fr, ab) = (frame.clone(), abort.clone());
    pf.set(
        "gv",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, name: String| -> rquickjs::Result<Value<'js>> {
                let mut f = fr.borrow_mut();
                match f.vars.get(&name) {
                    Some(JsVal::Null) => Ok(Value::new_null(ctx)),
                    Some(JsVal::Str(s)) => {
                        rquickjs::String::from_str(ctx, s).map(|s| s.into_value())
                    }
                    Some(JsVal::Num(n)) => Ok(Value::new_number(ctx, *n)),
                    Some(JsVal::Bool(b)) => Ok(Value::new_bool(ctx, *b)),
                    None => {
                        f.missing_vars.push(name);
                        ab.set(true);
                        Ok(Value::new_undefined(ctx))
                    }
                }
            },
        )?,
    )?;
    let fr = frame.clone();
    pf.set(
        "sv",
        Function::new(ctx.clone(), move |name: String, value: String| {
            let mut f = fr.borrow_mut();
            f.vars.insert(name.clone(), JsVal::Str(value.clone()));
            f.ops.push(Op::Set(name, value));
        })?,
    )?;
    let fr = frame.clone();
    pf.set(
        "rv",
        Function::new(ctx.clone(), move |name: String| {
            let mut f = fr.borrow_mut();
            f.vars.insert(name.clone(), JsVal::Null);
            f.ops.push(Op::Remove(name));
        })?,
    )?;
    let fr = frame.clone();
    pf.set(
        "sess",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>| -> rquickjs::Result<Object<'js>> {
                let out = Object::new(ctx.clone())?;
                let f = fr.borrow();
                for (name, json) in &f.session {
                    // A value that no longer parses is left out rather than failing the run.
                    if let Ok(v) = ctx.json_parse(json.as_str()) {
                        out.set(name.as_str(), v)?;
                    }
                }
                Ok(out)
            },
        )?,
    )?;
    let fr = frame.clone();
    pf.set(
        "sset",
        Function::new(ctx.clone(), move |name: String, json: Option<String>| {
            fr.borrow_mut().ops.push(Op::Session(name, json));
        })?,
    )?;
    let fr = frame.clone();
    pf.set(
        "print",
        Function::new(ctx.clone(), move |s: String| {
            let mut f = fr.borrow_mut();
            if f.prints.len() < 256 {
                f.prints.push(s.chars().take(4096).collect());
            }
        })?,
    )?;
    let fr = frame.clone();
    pf.set(
        "flow",
        Function::new(ctx.clone(), move || fr.borrow().flow)?,
    )?;
    let fr = frame.clone();
    pf.set(
        "now",
        Function::new(ctx.clone(), move || fr.borrow().now_ms)?,
    )?;
    let (fr, ab) = (frame.clone(), abort.clone());
    pf.set(
        "msg",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, kind: i32| -> rquickjs::Result<Value<'js>> {
                let k = usize::from(kind == 1);
                let mut f = fr.borrow_mut();
                let json = match f.messages.get(k) {
                    Some(Some(Some(m))) => snapshot_json(m),
                    Some(Some(None)) => return Ok(Value::new_undefined(ctx)),
                    _ => {
                        if let Some(m) = f.missing_messages.get_mut(k) {
                            *m = true;
                        }
                        ab.set(true);
                        return Ok(Value::new_undefined(ctx));
                    }
                };
                drop(f);
                ctx.json_parse(json)
            },
        )?,
    )?;
    let fr = frame.clone();
    pf.set(
        "mop",
        Function::new(
            ctx.clone(),
            move |kind: i32, field: String, a: String, b: String, set: i32| {
                fr.borrow_mut().ops.push(Op::Message {
                    kind: u8::from(kind == 1),
                    field,
                    a,
                    b,
                    set: set != 0,
                });
            },
        )?,
    )?;
    pf.set(
        "hash",
        Function::new(
            ctx.clone(),
            |alg: String,
             data: String,
             key: Option<String>,
             enc: String|
             -> rquickjs::Result<String> {
                let bytes =
                    super::crypto::digest(&alg, data.as_bytes(), key.as_deref().map(str::as_bytes))
                        .ok_or_else(|| {
                            rquickjs::Error::new_from_js_message(
                                "string",
                                "hash",
                                format!("unknown algorithm {alg}"),
                            )
                        })?;
                Ok(if enc == "base64" {
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                } else {
                    hex::encode(bytes)
                })
            },
        )?,
    )?;
    pf.set(
        "b64",
        Function::new(ctx.clone(), |s: String| {
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        })?,
    )?;
    let fr = frame.clone();
    pf.set(
        "call",
        Function::new(
            ctx.clone(),
            move |method: String, url: String, headers: String, body: String| -> i32 {
                let headers: Vec<(String, String)> =
                    serde_json::from_str(&headers).unwrap_or_default();
                let mut f = fr.borrow_mut();
                f.calls.push(HttpCall {
                    method,
                    url,
                    headers,
                    body,
                });
                i32::try_from(f.calls.len() - 1).unwrap_or(i32::MAX)
            },
        )?,
    )?;
    let (fr, ab) = (frame.clone(), abort.clone());
    pf.set(
        "wait",
        Function::new(ctx.clone(), move |i: i32| {
            let mut f = fr.borrow_mut();
            let have = usize::try_from(i).is_ok_and(|i| i < f.responses.len());
            if !have {
                f.wants_call = true;
                ab.set(true);
            }
        })?,
    )?;
    let (fr, ab) = (frame.clone(), abort.clone());
    pf.set(
        "res",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, i: i32| -> rquickjs::Result<Value<'js>> {
                let mut f = fr.borrow_mut();
                let r = usize::try_from(i).ok().and_then(|i| f.responses.get(i));
                match r {
                    Some(r) => {
                        let json = result_json(r);
                        drop(f);
                        ctx.json_parse(json)
                    }
                    None => {
                        f.wants_call = true;
                        ab.set(true);
                        Ok(Value::new_undefined(ctx))
                    }
                }
            },
        )?,
    )?;
    Ok(())
}

fn pairs(v: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Array(v.iter().map(|(k, v)| serde_json::json!([k, v])).collect())
}

fn snapshot_json(m: &MessageSnap) -> String {
    serde_json::json!({
        "method": m.method,
        "url": m.url,
        "path": m.path,
        "status": m.status,
        "reasonPhrase": m.reason,
        "content": m.content,
        "body": m.content,
        "headers": pairs(&m.headers),
        "query": pairs(&m.query),
        "form": pairs(&m.form),
    })
    .to_string()
}

fn result_json(r: &HttpResult) -> String {
    match r {
        HttpResult::Response {
            status,
            reason,
            headers,
            content,
        } => serde_json::json!({
            "status": status,
            "reason": reason,
            "headers": pairs(headers),
            "content": content,
        }),
        HttpResult::Error(e) => serde_json::json!({ "error": e }),
    }
    .to_string()
}

/// The message and script line of a JS error.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> (String, Option<u32>, Option<u32>) {
    if !matches!(e, rquickjs::Error::Exception) {
        return (e.to_string(), None, None);
    }
    let ex = ctx.catch();
    let (message, stack) = match ex.as_object() {
        Some(o) if ex.is_error() => {
            let name: String = o.get("name").unwrap_or_else(|_| "Error".to_owned());
            let msg: String = o.get("message").unwrap_or_default();
            let stack: String = o.get("stack").unwrap_or_default();
            (format!("{name}: {msg}"), stack)
        }
        _ => {
            let s = ex
                .as_string()
                .and_then(|s| s.to_string().ok())
                .or_else(|| {
                    ctx.json_stringify(ex.clone())
                        .ok()
                        .flatten()
                        .and_then(|s| s.to_string().ok())
                })
                .unwrap_or_else(|| "uncaught exception".to_owned());
            (s, String::new())
        }
    };
    let (line, col) = position(&stack);
    (message, line, col)
}

/// Finds `__script__:LINE:COL` in a QuickJS stack trace.
fn position(stack: &str) -> (Option<u32>, Option<u32>) {
    let Some(at) = stack.find(SCRIPT_FILE) else {
        return (None, None);
    };
    let rest = stack.get(at + SCRIPT_FILE.len()..).unwrap_or("");
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    let line = nums.next().flatten();
    let col = if rest.starts_with(':') {
        nums.next().flatten()
    } else {
        None
    };
    (line, col)
}

/// Wraps a script in a function so its top-level declarations stay local to one run.
/// The wrapper adds nothing before the first line, so line numbers are the file's.
fn wrapped(source: &str) -> String {
    format!("(function(){{{source}\n}})")
}

fn compile_in<'js>(ctx: &Ctx<'js>, source: &str) -> Result<Function<'js>, SyntaxError> {
    let mut opts = rquickjs::context::EvalOptions::default();
    opts.global = true;
    opts.strict = false;
    opts.filename = Some(SCRIPT_FILE.to_owned());
    ctx.eval_with_options::<Function, _>(wrapped(source), opts)
        .map_err(|e| {
            let (message, line, column) = describe(ctx, e);
            SyntaxError {
                message,
                line,
                column,
            }
        })
}

/// Runs `f` with this thread's engine, creating it first if needed.
fn with_engine<T>(limits: &Limits, f: impl FnOnce(&mut Engine) -> T) -> Result<T, String> {
    ENGINE.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "the script engine is busy".to_owned())?;
        if slot.is_none() {
            *slot = Some(engine_new(limits)?);
        }
        match slot.as_mut() {
            Some(e) => Ok(f(e)),
            None => Err("no script engine".to_owned()),
        }
    })
}

/// Drops this thread's engine (after a limit was hit, its state is not trusted).
fn reset() {
    ENGINE.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = None;
        }
    });
}

/// Checks that `source` compiles, and caches the compiled function as script `id` on
/// this thread.
pub(crate) fn compile(id: u64, source: &str, limits: &Limits) -> Result<(), SyntaxError> {
    let r = with_engine(limits, |e| {
        // Compiling runs no script code; it must not inherit a spent budget.
        e.fuel.set(u64::MAX);
        e.abort.set(false);
        e.ctx.with(|ctx| {
            let f = compile_in(&ctx, source)?;
            e.scripts.insert(id, (Persistent::save(&ctx, f), None));
            Ok(())
        })
    });
    match r {
        Ok(r) => r,
        Err(message) => Err(SyntaxError {
            message,
            line: None,
            column: None,
        }),
    }
}

/// Runs script `id` (compiling `source` on first use on this thread) on `frame`.
pub(crate) fn run(
    id: u64,
    source: &str,
    properties: &[(String, String)],
    seed: u32,
    thorough: bool,
    limits: &Limits,
    frame: Frame,
) -> (RunEnd, Frame) {
    let mut frame = Some(frame);
    let r = with_engine(limits, |e| {
        *e.frame.borrow_mut() = frame.take().unwrap_or_default();
        e.fuel.set(limits.fuel);
        e.abort.set(false);
        e.rt.set_memory_limit(e.memory.saturating_add(limits.memory));
        let end = e.ctx.with(|ctx| -> RunEnd {
            let f = match e.scripts.get(&id) {
                Some((p, _)) => p.clone().restore(&ctx).map_err(|e| SyntaxError {
                    message: e.to_string(),
                    line: None,
                    column: None,
                }),
                None => compile_in(&ctx, source).inspect(|f| {
                    if e.scripts.len() >= MAX_CACHED {
                        e.scripts.clear();
                    }
                    e.scripts
                        .insert(id, (Persistent::save(&ctx, f.clone()), None));
                }),
            };
            let f = match f {
                Ok(f) => f,
                Err(s) => {
                    return RunEnd::Error {
                        message: s.message,
                        line: s.line,
                    };
                }
            };
            let run = match e.run.clone().restore(&ctx) {
                Ok(r) => r,
                Err(err) => {
                    return RunEnd::Error {
                        message: err.to_string(),
                        line: None,
                    };
                }
            };
            let cached = e
                .scripts
                .get(&id)
                .and_then(|(_, p)| p.clone())
                .and_then(|p| p.restore(&ctx).ok());
            let props = match cached {
                Some(p) => Ok(p),
                None => Object::new(ctx.clone()).and_then(|o| {
                    for (k, v) in properties {
                        o.set(k.as_str(), v.as_str())?;
                    }
                    let freeze: Function =
                        ctx.globals().get::<_, Object>("Object")?.get("freeze")?;
                    freeze.call::<_, ()>((o.clone(),))?;
                    if let Some(entry) = e.scripts.get_mut(&id) {
                        entry.1 = Some(Persistent::save(&ctx, o.clone()));
                    }
                    Ok(o)
                }),
            };
            let props = match props {
                Ok(p) => p,
                Err(err) => {
                    return RunEnd::Error {
                        message: err.to_string(),
                        line: None,
                    };
                }
            };
            match run.call::<_, ()>((f, props, seed, thorough)) {
                Ok(()) => {
                    if e.abort.get() {
                        RunEnd::Missing
                    } else {
                        RunEnd::Done
                    }
                }
                Err(err) => {
                    if e.abort.get() {
                        let _ = ctx.catch();
                        RunEnd::Missing
                    } else if e.fuel.get() == 0 {
                        let _ = ctx.catch();
                        RunEnd::TimedOut
                    } else {
                        let (message, line, _) = describe(&ctx, err);
                        RunEnd::Error { message, line }
                    }
                }
            }
        });
        let frame = std::mem::take(&mut *e.frame.borrow_mut());
        (end, frame)
    });
    match r {
        Ok((end, frame)) => {
            if matches!(end, RunEnd::TimedOut)
                || matches!(&end, RunEnd::Error { message, .. } if message.contains("out of memory") || message.contains("stack overflow"))
            {
                // An interrupted or exhausted run may leave the context half-way through
                // something: start the next one from a fresh engine.
                reset();
            }
            (end, frame)
        }
        Err(message) => (
            RunEnd::Error {
                message,
                line: None,
            },
            frame.unwrap_or_default(),
        ),
    }
}
