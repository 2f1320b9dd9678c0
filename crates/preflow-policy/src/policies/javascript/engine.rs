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
//!
//! A run is a direct call of the compiled script: no JavaScript runs around it unless
//! the script opened the session or created globals (see `prelude.js`), and the frame
//! is reused from run to run, so a warm run allocates nothing of its own on the Rust
//! heap.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use base64::Engine as _;
use rquickjs::function::Opt;
use rquickjs::{Coerced, Context, Ctx, FromJs, Function, Object, Persistent, Runtime, Value};

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

/// A variable value borrowed from the exchange, copied into a [`JsVal`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum JsValRef<'a> {
    Null,
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

impl JsVal {
    /// Takes `v`, reusing this value's string buffer.
    fn assign(&mut self, v: JsValRef<'_>) {
        match (self, v) {
            (JsVal::Str(s), JsValRef::Str(v)) => {
                s.clear();
                s.push_str(v);
            }
            (this, v) => {
                *this = match v {
                    JsValRef::Null => JsVal::Null,
                    JsValRef::Str(v) => JsVal::Str(v.to_owned()),
                    JsValRef::Num(n) => JsVal::Num(n),
                    JsValRef::Bool(b) => JsVal::Bool(b),
                }
            }
        }
    }
}

/// The variables a run can read, by name. A run reads a handful, so a list beats a map;
/// its entries' buffers are kept from run to run, so filling it allocates nothing once
/// warm.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    entries: Vec<(String, JsVal)>,
    len: usize,
}

impl Vars {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn live(&self) -> &[(String, JsVal)] {
        self.entries.get(..self.len).unwrap_or(&[])
    }

    /// The value of `name`, if the run has it.
    pub(crate) fn get(&self, name: &str) -> Option<&JsVal> {
        self.live().iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets `name` to `value`.
    pub(crate) fn set(&mut self, name: &str, value: JsValRef<'_>) {
        let len = self.len;
        if let Some(live) = self.entries.get_mut(..len)
            && let Some((_, v)) = live.iter_mut().find(|(n, _)| n == name)
        {
            v.assign(value);
            return;
        }
        match self.entries.get_mut(len) {
            Some((n, v)) => {
                n.clear();
                n.push_str(name);
                v.assign(value);
            }
            None => {
                let mut v = JsVal::Null;
                v.assign(value);
                self.entries.push((name.to_owned(), v));
            }
        }
        self.len = len + 1;
    }
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

/// What a write does (its texts are in the [`Op`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// `context.setVariable(a, b)`.
    Set,
    /// `context.removeVariable(a)`.
    Remove,
    /// `context.session.setAttribute(a, b)` (`b` the value as JSON), or
    /// `removeAttribute(a)` when `remove`.
    Session { remove: bool },
    /// A change to message `kind` (0 request, 1 response): field `c`, name or value `a`,
    /// values `b` (joined by NUL); set, or removed.
    Message { kind: u8, set: bool },
}

/// A write the script made, applied after the run in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Op {
    pub kind: OpKind,
    pub a: String,
    pub b: String,
    pub c: String,
}

/// The writes of a run, in order; their buffers are kept from run to run.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    ops: Vec<Op>,
    len: usize,
}

impl Ops {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, kind: OpKind, a: &str, b: &str, c: &str) {
        let fill = |s: &mut String, v: &str| {
            s.clear();
            s.push_str(v);
        };
        match self.ops.get_mut(self.len) {
            Some(op) => {
                op.kind = kind;
                fill(&mut op.a, a);
                fill(&mut op.b, b);
                fill(&mut op.c, c);
            }
            None => self.ops.push(Op {
                kind,
                a: a.to_owned(),
                b: b.to_owned(),
                c: c.to_owned(),
            }),
        }
        self.len += 1;
    }

    /// The writes, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Op> {
        self.ops.get(..self.len).unwrap_or(&[]).iter()
    }
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

/// What a run reads and writes. One per thread is reused ([`take_frame`],
/// [`give_frame`]), so a warm run allocates nothing for it.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub vars: Vars,
    /// Per message: not taken yet (`None`), absent (`Some(None)`) or its snapshot.
    pub messages: [Option<Option<Box<MessageSnap>>>; 2],
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
    pub ops: Ops,
    pub prints: Vec<String>,
    /// The seed of `Math.random`.
    pub seed: u32,
    /// The script opened the session or created a global: the prelude's `end` must run.
    pub dirty: bool,
}

impl Frame {
    /// Empties the frame for the next run, keeping its buffers.
    pub(crate) fn reset(&mut self) {
        self.vars.clear();
        self.messages = [None, None];
        self.responses.clear();
        self.session.clear();
        self.now_ms = 0.0;
        self.flow = "";
        self.missing_vars.clear();
        self.missing_messages = [false; 2];
        self.wants_call = false;
        self.calls.clear();
        self.ops.clear();
        self.prints.clear();
        self.seed = 0;
        self.dirty = false;
    }
}

thread_local! {
    static SPARE: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

/// This thread's spare frame (a new one if it is in use), reset.
pub(crate) fn take_frame() -> Frame {
    let mut f = SPARE
        .with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .unwrap_or_default();
    f.reset();
    f
}

/// Gives a frame back for the next execution on this thread.
pub(crate) fn give_frame(frame: Frame) {
    SPARE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = Some(frame);
        }
    });
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

/// Compiled scripts by id, with their frozen `properties` object once made.
type Scripts = HashMap<
    u64,
    (
        Persistent<Function<'static>>,
        Option<Persistent<Object<'static>>>,
    ),
>;

struct Engine {
    // Field order is drop order: JS values before the context, the context before the
    // runtime.
    /// Compiled scripts by id, with their frozen `properties` object.
    scripts: Scripts,
    /// The prelude's per-run state: `[run number, properties]`.
    state: Persistent<rquickjs::Array<'static>>,
    /// The prelude's `end(ok, thorough)`.
    end: Persistent<Function<'static>>,
    /// The number of the current run.
    run_no: i32,
    /// The script whose `properties` are in `state`.
    props_of: Option<u64>,
    /// The prelude's `Values` (header and parameter lists), which `setVariable` stores
    /// as text rather than JSON. Shared with the native; emptied before the runtime goes.
    values: Rc<RefCell<Option<Persistent<Function<'static>>>>>,
    frame: Rc<RefCell<Frame>>,
    fuel: Rc<Cell<u64>>,
    abort: Rc<Cell<bool>>,
    memory: usize,
    ctx: Context,
    rt: Runtime,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A persistent value must not outlive its runtime.
        if let Ok(mut v) = self.values.try_borrow_mut() {
            *v = None;
        }
    }
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
    let values = Rc::new(RefCell::new(None));
    type Made = (
        Persistent<rquickjs::Array<'static>>,
        Persistent<Function<'static>>,
    );
    let made = ctx.with(|ctx| -> rquickjs::Result<Made> {
        let pf = Object::new(ctx.clone())?;
        install_natives(&ctx, &pf, &frame, &abort, &values)?;
        let make: Function = ctx.eval(PRELUDE)?;
        let out: rquickjs::Array = make.call((pf, ctx.globals()))?;
        let state: rquickjs::Array = out.get(0)?;
        let end: Function = out.get(1)?;
        let v: Function = out.get(2)?;
        *values.borrow_mut() = Some(Persistent::save(&ctx, v));
        Ok((Persistent::save(&ctx, state), Persistent::save(&ctx, end)))
    });
    let (state, end) = match made {
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
        state,
        end,
        run_no: 0,
        props_of: None,
        values,
        frame,
        fuel,
        abort,
        memory,
        ctx,
        rt,
    })
}

/// A JS value as a string, without a Rust allocation.
fn text<'js>(ctx: &Ctx<'js>, v: Value<'js>) -> rquickjs::Result<rquickjs::CString<'js>> {
    let s = match v.as_string() {
        Some(s) => s.clone(),
        None => Coerced::<rquickjs::String>::from_js(ctx, v)?.0,
    };
    rquickjs::CString::from_string(s)
}

/// An optional argument as a string (`undefined` when absent), without a Rust allocation.
fn arg_text<'js>(ctx: &Ctx<'js>, v: Opt<Value<'js>>) -> rquickjs::Result<rquickjs::CString<'js>> {
    text(
        ctx,
        v.0.unwrap_or_else(|| Value::new_undefined(ctx.clone())),
    )
}

/// Installs `pf[name]`: a native returning what `read` takes from the frame.
fn reader<'js, T: rquickjs::IntoJs<'js> + 'js>(
    ctx: &Ctx<'js>,
    pf: &Object<'js>,
    frame: &Rc<RefCell<Frame>>,
    name: &str,
    read: fn(&Frame) -> T,
) -> rquickjs::Result<()> {
    let fr = frame.clone();
    pf.set(
        name,
        Function::new(ctx.clone(), move || read(&fr.borrow()))?,
    )
}

fn install_natives<'js>(
    ctx: &Ctx<'js>,
    pf: &Object<'js>,
    frame: &Rc<RefCell<Frame>>,
    abort: &Rc<Cell<bool>>,
    values: &Rc<RefCell<Option<Persistent<Function<'static>>>>>,
) -> rquickjs::Result<()> {
    // `context.getVariable`, `setVariable` and `removeVariable` are these natives
    // themselves: no JS frame in between, and names are read in place.
    let (fr, ab) = (frame.clone(), abort.clone());
    pf.set(
        "gv",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, name: Opt<Value<'js>>| -> rquickjs::Result<Value<'js>> {
                let name = arg_text(&ctx, name)?;
                let mut f = fr.borrow_mut();
                match f.vars.get(name.as_str()) {
                    Some(JsVal::Null) => Ok(Value::new_null(ctx)),
                    Some(JsVal::Str(s)) => {
                        rquickjs::String::from_str(ctx, s).map(|s| s.into_value())
                    }
                    Some(JsVal::Num(n)) => Ok(Value::new_number(ctx, *n)),
                    Some(JsVal::Bool(b)) => Ok(Value::new_bool(ctx, *b)),
                    None => {
                        f.missing_vars.push(name.as_str().to_owned());
                        ab.set(true);
                        Ok(Value::new_undefined(ctx))
                    }
                }
            },
        )?,
    )?;
    let (fr, vals) = (frame.clone(), values.clone());
    pf.set(
        "sv",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  name: Opt<Value<'js>>,
                  value: Opt<Value<'js>>|
                  -> rquickjs::Result<()> {
                let undefined = || Value::new_undefined(ctx.clone());
                let name = arg_text(&ctx, name)?;
                let value = value.0.unwrap_or_else(undefined);
                if value.is_null() || value.is_undefined() {
                    let mut f = fr.borrow_mut();
                    f.vars.set(name.as_str(), JsValRef::Null);
                    f.ops.push(OpKind::Remove, name.as_str(), "", "");
                    return Ok(());
                }
                // Objects are stored as JSON, except header and parameter value lists,
                // which read as their text (as in Apigee).
                let json = value.is_object()
                    && !value.is_function()
                    && !vals
                        .borrow()
                        .as_ref()
                        .and_then(|v| v.clone().restore(&ctx).ok())
                        .is_some_and(|v| value.as_object().is_some_and(|o| o.is_instance_of(&v)));
                let value = if json {
                    match ctx.json_stringify(value)? {
                        Some(s) => s.into_value(),
                        None => undefined(),
                    }
                } else {
                    value
                };
                let value = text(&ctx, value)?;
                let mut f = fr.borrow_mut();
                f.vars.set(name.as_str(), JsValRef::Str(value.as_str()));
                f.ops.push(OpKind::Set, name.as_str(), value.as_str(), "");
                Ok(())
            },
        )?,
    )?;
    let fr = frame.clone();
    pf.set(
        "rv",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, name: Opt<Value<'js>>| -> rquickjs::Result<()> {
                let name = arg_text(&ctx, name)?;
                let mut f = fr.borrow_mut();
                f.vars.set(name.as_str(), JsValRef::Null);
                f.ops.push(OpKind::Remove, name.as_str(), "", "");
                Ok(())
            },
        )?,
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
            let remove = json.is_none();
            fr.borrow_mut().ops.push(
                OpKind::Session { remove },
                &name,
                json.as_deref().unwrap_or(""),
                "",
            );
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
        "mark",
        Function::new(ctx.clone(), move || fr.borrow_mut().dirty = true)?,
    )?;
    reader(ctx, pf, frame, "seed", |f| f.seed)?;
    reader(ctx, pf, frame, "flow", |f| f.flow)?;
    reader(ctx, pf, frame, "now", |f| f.now_ms)?;
    let (fr, ab) = (frame.clone(), abort.clone());
    pf.set(
        "msg",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, kind: i32| -> rquickjs::Result<Value<'js>> {
                let k = usize::from(kind == 1);
                let mut f = fr.borrow_mut();
                let json = match f.messages.get(k) {
                    Some(Some(Some(m))) => snapshot_json(m.as_ref()),
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
                let kind = OpKind::Message {
                    kind: u8::from(kind == 1),
                    set: set != 0,
                };
                fr.borrow_mut().ops.push(kind, &a, &b, &field);
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

/// Script `id`'s frozen `properties` object, made on first use and kept with the script.
fn properties_object<'js>(
    ctx: &Ctx<'js>,
    scripts: &mut Scripts,
    id: u64,
    properties: &[(String, String)],
) -> rquickjs::Result<Object<'js>> {
    if let Some(p) = scripts
        .get(&id)
        .and_then(|(_, p)| p.clone())
        .and_then(|p| p.restore(ctx).ok())
    {
        return Ok(p);
    }
    let o = Object::new(ctx.clone())?;
    for (k, v) in properties {
        o.set(k.as_str(), v.as_str())?;
    }
    let freeze: Function = ctx.globals().get::<_, Object>("Object")?.get("freeze")?;
    freeze.call::<_, ()>((o.clone(),))?;
    if let Some(entry) = scripts.get_mut(&id) {
        entry.1 = Some(Persistent::save(ctx, o.clone()));
    }
    Ok(o)
}

/// Runs script `id` (compiling `source` on first use on this thread) on `frame`.
pub(crate) fn run(
    id: u64,
    source: &str,
    properties: &[(String, String)],
    seed: u32,
    thorough: bool,
    limits: &Limits,
    frame: &mut Frame,
) -> RunEnd {
    let r = with_engine(limits, |e| {
        // The natives see the frame through the engine's slot: swap it in and out
        // (no copy of its contents).
        frame.seed = seed;
        std::mem::swap(&mut *e.frame.borrow_mut(), frame);
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
            let props_cached = e.props_of == Some(id);
            let state = match e.state.clone().restore(&ctx).and_then(|st| {
                e.run_no = e.run_no.wrapping_add(1);
                st.set(0, e.run_no)?;
                if !props_cached {
                    st.set(1, properties_object(&ctx, &mut e.scripts, id, properties)?)?;
                    e.props_of = Some(id);
                }
                Ok(st)
            }) {
                Ok(st) => st,
                Err(err) => {
                    e.props_of = None;
                    return RunEnd::Error {
                        message: err.to_string(),
                        line: None,
                    };
                }
            };
            drop(state);
            // The script is called directly, `this` the global object as for a
            // top-level script.
            let called = f.call::<_, ()>((rquickjs::function::This(ctx.globals()),));
            let mut end = match called {
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
            };
            let dirty = e.frame.borrow().dirty;
            // After a timeout the engine is dropped anyway.
            if (thorough || dirty) && !matches!(end, RunEnd::TimedOut) {
                e.abort.set(false);
                let ok = matches!(end, RunEnd::Done);
                let ended = e
                    .end
                    .clone()
                    .restore(&ctx)
                    .and_then(|endf| endf.call::<_, ()>((ok, thorough)));
                if let Err(err) = ended {
                    if ok {
                        let (message, line, _) = describe(&ctx, err);
                        end = RunEnd::Error { message, line };
                    } else {
                        let _ = ctx.catch();
                    }
                }
            }
            end
        });
        std::mem::swap(&mut *e.frame.borrow_mut(), frame);
        end
    });
    match r {
        Ok(end) => {
            if matches!(end, RunEnd::TimedOut)
                || matches!(&end, RunEnd::Error { message, .. } if message.contains("out of memory") || message.contains("stack overflow"))
            {
                // An interrupted or exhausted run may leave the context half-way through
                // something: start the next one from a fresh engine.
                reset();
            }
            end
        }
        Err(message) => RunEnd::Error {
            message,
            line: None,
        },
    }
}
