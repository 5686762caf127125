/**
 * Source that runs INSIDE the isolate, before any agent module. It never imports host code: it is
 * a string evaluated with `context.evalClosure(BOOTSTRAP_SOURCE, [submit, log, report])`.
 *
 * It removes what the sandbox must not offer (WebAssembly, FinalizationRegistry, WeakRef,
 * SharedArrayBuffer, Atomics.wait), builds the frozen `caps` object of plain async functions (no
 * host object ever reaches agent code: the three host callbacks stay in this closure), a
 * size-capped `console`, and `requestCapability` (these three per run, in `configure`). It
 * returns `{ configure, start, deliver }`: `configure(configJson)` once per run,
 * `start(mainNamespace, inputJson)` runs main and reports the outcome through `report(text)`
 * exactly once, `deliver(id, ok, json)` settles a pending call.
 *
 * Agent code runs in this same realm and may replace any built-in or prototype first, so:
 * - Every built-in used after agent code starts is captured here, before it can (`call(fn, …)` runs
 *   a captured method without looking anything up); loops are indexed (no Symbol.iterator, no
 *   spread); property descriptors have a null prototype; own properties are read only after a
 *   captured `hasOwnProperty` (no inherited getter), and written with `defineProperty` (no setter).
 * - The texts the host reads (the outcome, a call's argument, a capability request) have a fixed
 *   shape built here by string concatenation with a private escaper (`quote`). The captured
 *   `JSON.stringify` is used on the agent's own values only, and its output is inserted whole as
 *   one JSON value, so a `toJSON` the agent installs may change that value (as JSON would), never
 *   the status, the code, or which capability and method are called.
 * - A thrown error's code is believed only for errors this file created for a real refusal (kept
 *   in a captured WeakMap); any other thrown value is AGENT_ERROR, whatever its name or code says.
 * - main's result is observed without the agent's Promise machinery: a native promise gets its
 *   species pinned to the real Promise and our reactions added by the captured `then`, so its real
 *   settlement decides the status; anything else (a thenable, a subclass) is adopted as `await`
 *   would adopt it — the agent built that object, so its settlement is the agent's answer.
 * - The outcome leaves through a host callback, never as a promise result: isolated-vm would call
 *   `then` (and the agent's species) on a pending promise returned to the host.
 *
 * The host still re-validates every string it receives and trusts nothing beyond the fixed shape.
 *
 * Each top-level function is written `const name = (function name(…) {…});`: V8 compiles a
 * parenthesised function when the bootstrap is evaluated (while a warm isolate is prepared) instead
 * of on its first call, which would be in the middle of a run (~220 µs of every warm start). The
 * bindings are consts, so nothing calls one before its definition.
 */
export const BOOTSTRAP_FILENAME = '<contained>';

export const BOOTSTRAP_SOURCE = String.raw`
'use strict';
const submit = $0, hostLog = $1, report = $2;
const G = globalThis;
// --- built-ins, captured before any agent code runs ---------------------------------------------
const call = Function.prototype.call.bind(Function.prototype.call);
const { stringify, parse } = JSON;
const freeze = Object.freeze, create = Object.create, defineProperty = Object.defineProperty, getPrototypeOf = Object.getPrototypeOf;
const hasOwn = Object.prototype.hasOwnProperty;
const PromiseC = Promise, PromiseProto = Promise.prototype, promiseThen = Promise.prototype.then;
const ErrorC = Error, ErrorProto = Error.prototype, isError = Error.isError;
const StringC = String, strSlice = String.prototype.slice, charCodeAt = String.prototype.charCodeAt;
const MapC = Map, mapGet = Map.prototype.get, mapSet = Map.prototype.set, mapDelete = Map.prototype.delete;
const WeakMapC = WeakMap, weakMapGet = WeakMap.prototype.get, weakMapSet = WeakMap.prototype.set;
/** A constructor stand-in whose species is the real Promise (see settle). */
const SPECIES_PIN = freeze(create(null, { [Symbol.species]: { __proto__: null, value: PromiseC } }));

const WebAssemblyC = G.WebAssembly;
delete G.WebAssembly;
delete G.FinalizationRegistry;
delete G.WeakRef;
delete G.SharedArrayBuffer;
if (typeof G.Atomics === 'object') { delete G.Atomics.wait; delete G.Atomics.waitAsync; }

const own = (function own(o, key) {
  return o !== null && typeof o === 'object' && call(hasOwn, o, key) ? o[key] : undefined;
});
const dataProperty = (function dataProperty(value, writable) {
  return { __proto__: null, value, writable, enumerable: true, configurable: true };
});
/** A JSON string literal for any string, built without JSON or any prototype method. */
const HEX = '0123456789abcdef';
const quote = (function quote(s) {
  let out = '"';
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = call(charCodeAt, s, i);
    if (c === 34) out += '\\"';
    else if (c === 92) out += '\\\\';
    else if (c < 32 || c === 0x2028 || c === 0x2029) out += '\\u' + HEX[(c >> 12) & 15] + HEX[(c >> 8) & 15] + HEX[(c >> 4) & 15] + HEX[c & 15];
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && call(charCodeAt, s, i + 1) >= 0xdc00 && call(charCodeAt, s, i + 1) <= 0xdfff) { out += s[i] + s[i + 1]; i++; }
    else if (c >= 0xd800 && c <= 0xdfff) out += '\\u' + HEX[(c >> 12) & 15] + HEX[(c >> 8) & 15] + HEX[(c >> 4) & 15] + HEX[c & 15];
    else out += s[i];
  }
  return out + '"';
});

// --- console: formatted here, capped here and again on the host --------------------------------
let logBytes = 0, logStopped = false;
let maxLogBytes = 0, minLine = 16;
const isErrorValue = (function isErrorValue(v) {
  if (typeof isError === 'function') return isError(v);
  for (let p = v, i = 0; p !== null && i < 1000; i++) { p = getPrototypeOf(p); if (p === ErrorProto) return true; }
  return false;
});
const fmt = (function fmt(v) {
  if (typeof v === 'string') return v;
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return StringC(v) + 'n';
  if (typeof v === 'symbol' || typeof v === 'function') { try { return StringC(v); } catch { return '[unprintable]'; } }
  try { if (isErrorValue(v)) return StringC(v.stack || v.message); } catch { return '[Error]'; }
  try { const s = stringify(v); return s === undefined ? StringC(v) : s; } catch { try { return StringC(v); } catch { return '[unprintable]'; } }
});
const emit = (function emit(level, args) {
  if (logStopped) return;
  let line = '';
  for (let i = 0; i < args.length; i++) {
    line += (i ? ' ' : '') + fmt(args[i]);
    if (line.length > maxLogBytes) break;
  }
  const cost = (line.length < minLine ? minLine : line.length);
  if (logBytes + cost > maxLogBytes) {
    logStopped = true;
    hostLog('overflow', '');
    return;
  }
  logBytes += cost;
  hostLog(level, line);
});

// --- capability calls --------------------------------------------------------------------------
const pending = new MapC();
/** Errors this file made for a real refusal, with their true code. */
const realErrors = new WeakMapC();
let nextId = 1, sent = 0, inFlight = 0, callsStopped = false;
const makeError = (function makeError(code, message, data) {
  const e = new ErrorC(typeof message === 'string' ? message : 'capability call failed');
  defineProperty(e, 'name', dataProperty('CapabilityError', true));
  defineProperty(e, 'code', dataProperty(code, true));
  if (data !== undefined) defineProperty(e, 'data', dataProperty(data, true));
  call(weakMapSet, realErrors, e, code);
  return e;
});
const rejected = (function rejected(error) {
  return new PromiseC((resolve, reject) => reject(error));
});
/** The JSON text of an argument (the agent's value; its toJSON applies), or undefined. Throws what a toJSON throws. */
const argumentJson = (function argumentJson(arg) {
  return arg === undefined ? '' : stringify(arg);
});
const send = (function send(capability, method, json, reason) {
  return new PromiseC((resolve, reject) => {
    if (json.length > config.maxCallBytes) {
      reject(makeError('CALL_LIMIT', capability + '.' + method + ': the argument is larger than ' + config.maxCallBytes + ' bytes'));
      return;
    }
    if (callsStopped) { reject(makeError('CALL_LIMIT', 'call limit reached')); return; }
    sent++; inFlight++;
    if (sent > config.maxCalls || inFlight > config.maxConcurrentCalls) callsStopped = true;
    const id = nextId++;
    call(mapSet, pending, id, { __proto__: null, resolve, reject });
    submit(id, capability, method, json, reason);
  });
});
const deliver = (function deliver(id, ok, json) {
  const p = call(mapGet, pending, id);
  if (p === undefined) return;
  call(mapDelete, pending, id);
  inFlight--;
  let payload;
  try { payload = json === '' ? undefined : parse(json); } catch { payload = undefined; }
  if (ok) { p.resolve(payload); return; }
  const code = own(payload, 'code');
  p.reject(makeError(typeof code === 'string' ? code : 'INTERNAL', own(payload, 'message'), own(payload, 'data')));
});
const readReason = (function readReason(options) {
  if (options === undefined || options === null) return '';
  let r;
  try { r = options.reason; } catch { return ''; }
  return typeof r === 'string' ? call(strSlice, r, 0, 4096) : '';
});
const capabilityMethod = (function capabilityMethod(capName, m) {
  const where = capName + '.' + m;
  return { [m](arg, options) {
    let json;
    try { json = argumentJson(arg); } catch { json = undefined; }
    if (json === undefined) return rejected(makeError('INVALID_ARGUMENT', where + ': the argument is not JSON-serialisable'));
    return send(capName, m, json, readReason(options));
  } }[m];
});
const requestCapability = (function requestCapability(name, scope, reason) {
  const nameText = StringC(name);
  let scopeJson;
  try { scopeJson = scope === undefined ? 'null' : stringify(scope); } catch { scopeJson = undefined; }
  if (scopeJson === undefined) return rejected(makeError('INVALID_ARGUMENT', 'requestCapability: the scope is not JSON-serialisable'));
  const body = '{"name":' + quote(nameText) + ',"scope":' + scopeJson + ',"reason":' + quote(typeof reason === 'string' ? reason : '') + '}';
  return send('$request', 'requestCapability', body, '');
});

// --- per-run configuration ---------------------------------------------------------------------
// Everything above is the same for every run, so isolates can be prepared ahead of time (a warm
// pool); configure() binds one run's limits and capabilities before any agent module is evaluated.
let config;
let caps;
const LEVELS = ['log', 'info', 'warn', 'error', 'debug'];
const configure = (function configure(configJson) {
  if (config !== undefined) return;
  config = parse(configJson);
  maxLogBytes = config.maxLogBytes;
  minLine = config.minLogLineBytes;
  if (config.allowWasm && WebAssemblyC !== undefined) {
    defineProperty(G, 'WebAssembly', { __proto__: null, value: WebAssemblyC, writable: true, configurable: true, enumerable: false });
  }
  const consoleObj = create(null);
  for (let i = 0; i < LEVELS.length; i++) {
    const level = LEVELS[i];
    consoleObj[level] = freeze(function (...args) { emit(level, args); });
  }
  defineProperty(G, 'console', { __proto__: null, value: freeze(consoleObj), writable: false, configurable: false, enumerable: false });
  caps = create(null);
  const specs = config.capabilities;
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i];
    const obj = create(null);
    for (let j = 0; j < spec.methods.length; j++) obj[spec.methods[j]] = freeze(capabilityMethod(spec.name, spec.methods[j]));
    caps[spec.name] = freeze(obj);
  }
  freeze(caps);
  defineProperty(G, 'requestCapability', { __proto__: null, value: freeze(requestCapability), writable: false, configurable: false, enumerable: false });
});

// --- running main and reporting its outcome ----------------------------------------------------
let reported = false;
const finish = (function finish(text) {
  if (reported) return;
  reported = true;
  report(text);
});
const errorReport = (function errorReport(code, message, stack) {
  return '{"ok":false,"error":{"code":' + quote(code) + ',"message":' + quote(message) + (stack === undefined ? '' : ',"stack":' + quote(stack)) + '}}';
});
const describe = (function describe(e) {
  let message = '', code = 'AGENT_ERROR', stack;
  try {
    if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
      const real = call(weakMapGet, realErrors, e);
      if (typeof real === 'string') code = real;
      const m = e.message;
      message = typeof m === 'string' ? m : (m === undefined ? StringC(e) : StringC(m));
      const s = e.stack;
      if (typeof s === 'string') stack = call(strSlice, s, 0, 16384);
    } else {
      message = 'non-Error value thrown: ' + (typeof e === 'string' ? e : typeof e === 'symbol' ? 'symbol' : StringC(e));
    }
  } catch (inner) {
    message = 'the thrown value could not be described';
    stack = undefined;
  }
  if (typeof message !== 'string') message = 'the thrown value could not be described';
  return { __proto__: null, code, message: call(strSlice, message, 0, 4096), stack };
});
const failed = (function failed(e) {
  const d = describe(e);
  finish(errorReport(d.code, d.message, d.stack));
});
const returned = (function returned(value) {
  let json;
  try {
    json = value === undefined ? 'null' : stringify(value);
  } catch (e) {
    finish(errorReport('INVALID_OUTPUT', 'the return value is not JSON-serialisable: ' + describe(e).message));
    return;
  }
  if (json === undefined) {
    finish(errorReport('INVALID_OUTPUT', 'the return value is not JSON-serialisable (' + typeof value + ')'));
    return;
  }
  if (json.length > config.maxOutputBytes) {
    finish(errorReport('OUTPUT_LIMIT', 'the return value is larger than ' + config.maxOutputBytes + ' bytes'));
    return;
  }
  finish('{"ok":true,"value":' + json + '}');
});
/** Make the captured then's species lookup on p find the real Promise (no agent code runs). */
const pin = (function pin(p) {
  defineProperty(p, 'constructor', { __proto__: null, value: SPECIES_PIN, writable: false, enumerable: false, configurable: true });
});
const settle = (function settle(r, onOk, onErr) {
  if (r !== null && typeof r === 'object') {
    try {
      if (getPrototypeOf(r) === PromiseProto) {
        pin(r);
        // Throws before registering anything if r is not a real promise (a Proxy posing as one).
        call(promiseThen, r, onOk, onErr);
        return;
      }
    } catch {
      // Not a promise we can watch directly: adopt it below, as await would.
    }
  }
  const p = new PromiseC((resolve) => resolve(r));
  pin(p);
  call(promiseThen, p, onOk, onErr);
});
const start = (function start(ns, inputJson) {
  let main;
  try { main = ns.default; } catch { main = undefined; }
  if (typeof main !== 'function') {
    finish(errorReport('INVALID_PROGRAM', 'the entry module must have a default export: export default async function main(input, caps)'));
    return;
  }
  let r;
  try { r = main(parse(inputJson), caps); } catch (e) { failed(e); return; }
  settle(r, (value) => { try { returned(value); } catch (e) { failed(e); } }, (e) => { try { failed(e); } catch { finish(errorReport('AGENT_ERROR', 'the agent failed')); } });
});
return freeze({ configure, start, deliver });
`;
