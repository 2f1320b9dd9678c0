// The Apigee object model over the host functions of `pf` (see engine.rs). Evaluated
// once per thread's context; the host then calls each script directly. Every write goes
// through the host, which buffers it and applies it after a successful run.
//
// No JS runs between two scripts: the host writes the run's number into `st[0]` (and
// the script's `properties` into `st[1]`), and per-run state (message snapshots, the
// session, the httpClient count, the random seed) is reset on its first use in a run,
// when its recorded run number differs. `end` runs after a script only when that
// script opened the session or created globals (`pf.mark`), or may define globals in
// ways the proxy below does not see (`thorough`).
(function (pf, G) {
  'use strict';
  var HTTP_MAX = 16;
  var st = [0, {}];
  var msgs = [null, null];
  var msgsRun = -1;
  var gen = 0;

  // Header and parameter values behave like Rhino's Java lists: indexable, with a
  // `length()` method, and the first values joined by ',' when used as a string.
  function Values(vals) {
    for (var i = 0; i < vals.length; i++) this[i] = vals[i];
    Object.defineProperty(this, '__n', { value: vals.length });
  }
  Values.prototype.length = function () { return this.__n; };
  Values.prototype.size = Values.prototype.length;
  Values.prototype.get = function (i) { return this[i]; };
  Values.prototype.toString = function () {
    var out = [];
    for (var i = 0; i < this.__n; i++) out.push(this[i]);
    return out.join(',');
  };
  Values.prototype.valueOf = Values.prototype.toString;
  Values.prototype.toJSON = Values.prototype.toString;

  function snap(kind) {
    if (msgsRun !== st[0]) { msgs[0] = null; msgs[1] = null; msgsRun = st[0]; }
    var m = msgs[kind];
    if (m === null) { m = pf.msg(kind); msgs[kind] = m === undefined ? null : m; }
    return m === undefined ? null : m;
  }
  function find(list, name, fold) {
    var k = fold ? String(name).toLowerCase() : String(name);
    var out = [];
    for (var i = 0; i < list.length; i++) {
      if ((fold ? list[i][0].toLowerCase() : list[i][0]) === k) out.push(list[i][1]);
    }
    return out;
  }
  function names(list, fold) {
    var seen = [];
    for (var i = 0; i < list.length; i++) {
      var n = fold ? list[i][0].toLowerCase() : list[i][0];
      if (seen.indexOf(n) < 0) seen.push(n);
    }
    return seen;
  }
  function setIn(list, name, values, fold) {
    var k = fold ? String(name).toLowerCase() : String(name);
    for (var i = list.length - 1; i >= 0; i--) {
      if ((fold ? list[i][0].toLowerCase() : list[i][0]) === k) list.splice(i, 1);
    }
    for (var j = 0; j < values.length; j++) list.push([String(name), values[j]]);
  }
  function listView(kind, field, fold, writable) {
    return new Proxy({}, {
      get: function (_, name) {
        if (typeof name !== 'string') return undefined;
        var m = snap(kind);
        if (!m) return undefined;
        var v = find(m[field], name, fold);
        return v.length ? new Values(v) : undefined;
      },
      has: function (_, name) {
        var m = snap(kind);
        return !!m && find(m[field], name, fold).length > 0;
      },
      set: function (_, name, value) {
        if (!writable) return true;
        var m = snap(kind);
        if (!m) return true;
        var vals = value instanceof Values ? String(value).split(',') :
          Array.isArray(value) ? value.map(String) : [String(value)];
        setIn(m[field], name, vals, fold);
        pf.mop(kind, field, String(name), vals.join('\u0000'), 1);
        return true;
      },
      deleteProperty: function (_, name) {
        var m = snap(kind);
        if (!m || !writable) return true;
        setIn(m[field], name, [], fold);
        pf.mop(kind, field, String(name), '', 0);
        return true;
      },
      ownKeys: function () { var m = snap(kind); return m ? names(m[field], fold) : []; },
      getOwnPropertyDescriptor: function (_, name) {
        var m = snap(kind);
        if (!m) return undefined;
        var v = find(m[field], name, fold);
        return v.length ? { value: new Values(v), enumerable: true, configurable: true } : undefined;
      }
    });
  }

  function Message(kind) {
    this.headers = listView(kind, 'headers', true, true);
    this.queryParams = listView(kind, 'query', false, true);
    this.formParams = listView(kind, 'form', false, false);
    Object.defineProperty(this, '__k', { value: kind });
  }
  function field(name, op) {
    Object.defineProperty(Message.prototype, name, {
      get: function () { var m = snap(this.__k); return m ? m[name] : undefined; },
      set: function (v) {
        var m = snap(this.__k);
        if (!m) return;
        m[name] = op === 'status' ? Number(v) : String(v);
        pf.mop(this.__k, op, String(v), '', 1);
      },
      enumerable: true
    });
  }
  field('content', 'content');
  field('body', 'content');
  field('method', 'method');
  field('url', 'url');
  field('path', 'path');
  field('status', 'status');
  field('reasonPhrase', 'reason');

  var request = new Message(0);
  var response = new Message(1);

  function Flow() {}
  // `context.session` lives as long as the exchange: the attributes a script set reach
  // later scripts as JSON, taken when the script ends (functions and cycles do not cross).
  function Session() {
    Object.defineProperty(this, '__v', { value: pf.sess() });
    Object.defineProperty(this, '__d', { value: [] });
  }
  Session.prototype.getAttribute = function (n) { return this.__v[String(n)]; };
  Session.prototype.setAttribute = function (n, v) {
    n = String(n);
    if (v === undefined) delete this.__v[n]; else this.__v[n] = v;
    if (this.__d.indexOf(n) < 0) this.__d.push(n);
  };
  Session.prototype.removeAttribute = function (n) { this.setAttribute(n, undefined); };
  Session.prototype.__flush = function () {
    for (var i = 0; i < this.__d.length; i++) {
      var n = this.__d[i];
      pf.sset(n, n in this.__v ? JSON.stringify(this.__v[n]) : undefined);
    }
  };

  // The variable functions are the host's natives (no JS frame on the hot path):
  // `setVariable` stores null or undefined as a removal, objects other than `Values`
  // as JSON, anything else as its string.
  var context = {
    getVariable: pf.gv,
    setVariable: pf.sv,
    removeVariable: pf.rv,
    proxyRequest: request,
    targetRequest: request,
    proxyResponse: response,
    targetResponse: response
  };
  var session = null;
  var sessionRun = -1;
  Object.defineProperty(context, 'flow', { get: function () { return pf.flow(); }, enumerable: true });
  Object.defineProperty(context, 'session', {
    get: function () {
      if (sessionRun !== st[0]) { session = null; sessionRun = st[0]; }
      if (session === null) { session = new Session(); pf.mark(); }
      return session;
    },
    enumerable: true
  });
  Object.defineProperty(context, 'messages', { get: function () { return { request: request, response: response }; } });

  function Hash(alg, key) { this.alg = alg; this.key = key; this.data = ''; }
  Hash.prototype.update = function (v) { this.data += String(v); return this; };
  Hash.prototype.digest = function () { return pf.hash(this.alg, this.data, this.key, 'hex'); };
  Hash.prototype.digest64 = function () { return pf.hash(this.alg, this.data, this.key, 'base64'); };
  var crypto = {
    getMD5: function () { return new Hash('MD5', null); },
    getSHA1: function () { return new Hash('SHA-1', null); },
    getSHA256: function () { return new Hash('SHA-256', null); },
    getSHA512: function () { return new Hash('SHA-512', null); },
    createHash: function (alg) { return new Hash(String(alg).toUpperCase(), null); },
    getHMAC: function (alg, key) { return new Hash(String(alg).toUpperCase(), String(key)); },
    base64: function (s) { return pf.b64(String(s)); }
  };

  // httpClient: every request is recorded; a response is there when the host performed
  // the call in an earlier attempt of this execution, else the host is asked for it.
  var calls = 0;
  var callsRun = -1;
  function Request(url, method, headers, body) {
    this.url = url === undefined ? '' : String(url);
    this.method = method === undefined ? 'GET' : String(method).toUpperCase();
    this.headers = headers || {};
    this.body = body === undefined ? '' : String(body);
  }
  function Exchange(i) { this.__i = i; }
  Exchange.prototype.waitForComplete = function () { pf.wait(this.__i); return true; };
  Exchange.prototype.isComplete = function () { return pf.res(this.__i) !== undefined; };
  Exchange.prototype.isSuccess = function () {
    var r = pf.res(this.__i);
    return !!r && !r.error;
  };
  Exchange.prototype.isError = function () { var r = pf.res(this.__i); return !!r && !!r.error; };
  Exchange.prototype.getError = function () { var r = pf.res(this.__i); return r && r.error ? r.error : undefined; };
  Exchange.prototype.getResponse = function () {
    var r = pf.res(this.__i);
    if (!r || r.error) return undefined;
    var hv = {};
    for (var i = 0; i < r.headers.length; i++) {
      var n = r.headers[i][0];
      hv[n] = hv[n] ? hv[n] + ',' + r.headers[i][1] : r.headers[i][1];
    }
    return { status: r.status, statusCode: r.status, reasonPhrase: r.reason, content: r.content, body: r.content, headers: hv };
  };
  function send(req, cb) {
    if (callsRun !== st[0]) { calls = 0; callsRun = st[0]; }
    if (calls >= HTTP_MAX) throw new Error('httpClient: more than ' + HTTP_MAX + ' requests');
    var h = [];
    var hs = req.headers || {};
    for (var k in hs) h.push([k, String(hs[k])]);
    var i = pf.call(req.method, req.url, JSON.stringify(h), req.body);
    var ex = new Exchange(i);
    calls++;
    if (typeof cb === 'function') { ex.waitForComplete(); var r = ex.getResponse(); cb(r, r ? undefined : ex.getError()); }
    return ex;
  }
  var httpClient = {
    send: function (req, cb) { return send(req instanceof Request ? req : new Request(req.url, req.method, req.headers, req.body), cb); },
    get: function (url, cb) { return send(new Request(url, 'GET'), cb); }
  };

  function print() {
    var parts = [];
    for (var i = 0; i < arguments.length; i++) parts.push(String(arguments[i]));
    pf.print(parts.join(' '));
  }

  // `Date` and `Math.random` come from the exchange, so a re-run sees what the first saw.
  var RealDate = Date;
  var seed = 1;
  var seedRun = -1;
  function PfDate(a, b, c, d, e, f, g) {
    if (!(this instanceof PfDate)) return new RealDate(pf.now()).toString();
    switch (arguments.length) {
      case 0: return new RealDate(pf.now());
      case 1: return new RealDate(a);
      default: return new RealDate(a, b, c === undefined ? 1 : c, d || 0, e || 0, f || 0, g || 0);
    }
  }
  PfDate.prototype = RealDate.prototype;
  PfDate.now = function () { return pf.now(); };
  PfDate.parse = RealDate.parse;
  PfDate.UTC = RealDate.UTC;
  Math.random = function () {
    if (seedRun !== st[0]) { seed = pf.seed() | 0 || 1; seedRun = st[0]; }
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };

  // `content.asJSON` (and `asXML`, which only E4X had: undefined here).
  Object.defineProperty(String.prototype, 'asJSON', {
    get: function () { try { return JSON.parse(String(this)); } catch (e) { return undefined; } },
    configurable: false
  });

  var api = {
    context: context, request: request, response: response, crypto: crypto,
    httpClient: httpClient, Request: Request, print: print, Date: PfDate
  };
  for (var n in api) Object.defineProperty(G, n, { value: api[n], writable: false, configurable: false, enumerable: false });
  Object.defineProperty(G, 'properties', { get: function () { return st[1]; }, configurable: false });

  // Tamper-proofing: the standard objects are frozen so a script cannot leave a trace
  // in them for the next exchange. Assigning `toString`, `constructor`… on an object
  // still works (they would otherwise hit the frozen prototype's read-only property).
  // Globals a script creates by assignment (`x = 1`, `this.x = 1`) miss the global
  // object and reach its prototype's [[Set]]: a proxy there records their names, so no
  // run has to list every global to find them.
  var created = [];
  var rset = Reflect.set;
  var own = Object.prototype.hasOwnProperty;
  Object.setPrototypeOf(G, new Proxy(Object.prototype, {
    set: function (t, k, v, r) {
      if (r === G && typeof k === 'string' && !own.call(G, k)) { created.push(k); pf.mark(); }
      return rset(t, k, v, r);
    }
  }));

  var protos = [Object.prototype, Array.prototype, Function.prototype, String.prototype,
    Number.prototype, Boolean.prototype, RegExp.prototype, Error.prototype,
    RealDate.prototype, Promise.prototype, Map.prototype, Set.prototype];
  var overridable = ['toString', 'valueOf', 'constructor', 'toLocaleString', 'toJSON', 'name', 'message'];
  protos.forEach(function (p) {
    overridable.forEach(function (k) {
      var d = Object.getOwnPropertyDescriptor(p, k);
      if (!d || !('value' in d)) return;
      var v = d.value;
      Object.defineProperty(p, k, {
        get: function () { return v; },
        set: function (nv) {
          if (this === p) return;
          Object.defineProperty(this, k, { value: nv, writable: true, enumerable: true, configurable: true });
        },
        configurable: false
      });
    });
  });
  Object.getOwnPropertyNames(G).forEach(function (k) {
    var d = Object.getOwnPropertyDescriptor(G, k);
    if (d && d.configurable) {
      if ('value' in d) Object.defineProperty(G, k, { value: d.value, writable: false, configurable: false, enumerable: d.enumerable });
    }
    var v = G[k];
    if ((typeof v === 'function' || (typeof v === 'object' && v !== null)) && v !== G) {
      Object.freeze(v);
      if (typeof v === 'function' && v.prototype) Object.freeze(v.prototype);
    }
  });
  [Values.prototype, Message.prototype, Session.prototype, Hash.prototype, Exchange.prototype, Request.prototype, context, crypto, httpClient, request, response].forEach(Object.freeze);
  protos.forEach(Object.freeze);
  Object.freeze(Object.getPrototypeOf(function* () {}));
  // Functions of the object model (the natives included) are objects too: frozen, so
  // a property set on one cannot reach the next exchange.
  [pf, context, crypto, httpClient, Values.prototype, Message.prototype, Session.prototype,
    Hash.prototype, Exchange.prototype].forEach(function (o) {
    Object.getOwnPropertyNames(o).forEach(function (k) {
      var d = Object.getOwnPropertyDescriptor(o, k);
      if (d && typeof d.value === 'function') Object.freeze(d.value);
    });
  });
  Object.freeze(pf);
  var baseline = Object.getOwnPropertyNames(G).length;
  var names = Object.getOwnPropertyNames;

  // After a script that opened the session or created globals: keep the session's
  // attributes (`ok`: the script finished), and drop the globals it created.
  function end(ok, thorough) {
    try {
      if (ok && session !== null && sessionRun === st[0]) session.__flush();
    } finally {
      session = null;
      var now = thorough ? names(G) : created;
      if (thorough ? now.length !== baseline : now.length !== 0) {
        for (var i = 0; i < now.length; i++) {
          var d = Object.getOwnPropertyDescriptor(G, now[i]);
          if (d && d.configurable) delete G[now[i]];
        }
      }
      created.length = 0;
    }
  }
  return [st, end, Values];
})
