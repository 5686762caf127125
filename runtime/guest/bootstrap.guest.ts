/**
 * Source that runs INSIDE the isolate, before any agent module. It never imports host code: it is
 * a string evaluated with `context.evalClosure(BOOTSTRAP_SOURCE, [submit, log])`.
 *
 * It captures the built-ins it needs before agent code can replace them, removes what the sandbox
 * must not offer (WebAssembly, FinalizationRegistry, WeakRef, SharedArrayBuffer, Atomics.wait),
 * builds the frozen `caps` object of plain async functions (no host object ever reaches agent
 * code: the two host callbacks stay in this closure), a size-capped `console`, and
 * `requestCapability` (these three per run, in `configure`). Arguments are copied to a JSON string here, once, so a getter, Proxy or
 * thenable can't change them between the host's check and use. It returns `{ configure, start, deliver }`: `configure(configJson)` once per run,
 * `start(mainNamespace, inputJson)` runs main and always resolves with a JSON string describing
 * the outcome (never a live value), `deliver(id, ok, json)` settles a pending call.
 *
 * If agent code tampers with the built-ins this file uses later, it can only corrupt its own view:
 * the host re-validates every string it receives.
 */
export const BOOTSTRAP_FILENAME = '<contained>';

export const BOOTSTRAP_SOURCE = String.raw`
'use strict';
const submit = $0, hostLog = $1;
let config;
const G = globalThis;
const { stringify, parse } = JSON;
const freeze = Object.freeze, create = Object.create, defineProperty = Object.defineProperty;
const PromiseC = Promise, ErrorC = Error, StringC = String, MapC = Map;
const mapGet = Map.prototype.get, mapSet = Map.prototype.set, mapDelete = Map.prototype.delete;
const call = Function.prototype.call.bind(Function.prototype.call);
const strSlice = String.prototype.slice;
const arrayJoin = Array.prototype.join, arrayMap = Array.prototype.map;

const WebAssemblyC = G.WebAssembly;
delete G.WebAssembly;
delete G.FinalizationRegistry;
delete G.WeakRef;
delete G.SharedArrayBuffer;
if (typeof G.Atomics === 'object') { delete G.Atomics.wait; delete G.Atomics.waitAsync; }

// --- console: formatted here, capped here and again on the host --------------------------------
let logBytes = 0, logStopped = false;
let maxLogBytes = 0, minLine = 16;
function fmt(v) {
  if (typeof v === 'string') return v;
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return StringC(v) + 'n';
  if (typeof v === 'symbol' || typeof v === 'function') { try { return StringC(v); } catch { return '[unprintable]'; } }
  if (v instanceof ErrorC) { try { return StringC(v.stack || v.message); } catch { return '[Error]'; } }
  try { const s = stringify(v); return s === undefined ? StringC(v) : s; } catch { try { return StringC(v); } catch { return '[unprintable]'; } }
}
function emit(level, args) {
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
}
// --- capability calls --------------------------------------------------------------------------
const pending = new MapC();
let nextId = 1, sent = 0, inFlight = 0, callsStopped = false;
function makeError(code, message, data) {
  const e = new ErrorC(typeof message === 'string' ? message : 'capability call failed');
  e.name = 'CapabilityError';
  e.code = code;
  if (data !== undefined) e.data = data;
  return e;
}
function send(capability, method, arg, reason) {
  return new PromiseC((resolve, reject) => {
    let json = '';
    if (arg !== undefined) {
      try { json = stringify(arg); } catch { reject(makeError('INVALID_ARGUMENT', capability + '.' + method + ': the argument is not JSON-serialisable')); return; }
      if (json === undefined) { reject(makeError('INVALID_ARGUMENT', capability + '.' + method + ': the argument is not JSON-serialisable')); return; }
    }
    if (json.length > config.maxCallBytes) {
      reject(makeError('CALL_LIMIT', capability + '.' + method + ': the argument is larger than ' + config.maxCallBytes + ' bytes'));
      return;
    }
    if (callsStopped) { reject(makeError('CALL_LIMIT', 'call limit reached')); return; }
    sent++; inFlight++;
    if (sent > config.maxCalls || inFlight > config.maxConcurrentCalls) callsStopped = true;
    const id = nextId++;
    call(mapSet, pending, id, { resolve, reject });
    submit(id, capability, method, json, reason);
  });
}
function deliver(id, ok, json) {
  const p = call(mapGet, pending, id);
  if (p === undefined) return;
  call(mapDelete, pending, id);
  inFlight--;
  let payload;
  try { payload = json === '' ? undefined : parse(json); } catch { payload = undefined; }
  if (ok) p.resolve(payload);
  else p.reject(makeError(payload && payload.code, payload && payload.message, payload && payload.data));
}
function readReason(options) {
  if (options === undefined || options === null) return '';
  let r;
  try { r = options.reason; } catch { return ''; }
  return typeof r === 'string' ? call(strSlice, r, 0, 4096) : '';
}
// --- per-run configuration ---------------------------------------------------------------------
// Everything above is the same for every run, so isolates can be prepared ahead of time (a warm
// pool); configure() binds one run's limits and capabilities before any agent module is evaluated.
let caps;
function configure(configJson) {
  if (config !== undefined) return;
  config = parse(configJson);
  maxLogBytes = config.maxLogBytes;
  minLine = config.minLogLineBytes;
  if (config.allowWasm && WebAssemblyC !== undefined) {
    defineProperty(G, 'WebAssembly', { value: WebAssemblyC, writable: true, configurable: true, enumerable: false });
  }
  const consoleObj = create(null);
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
    consoleObj[level] = freeze(function (...args) { emit(level, args); });
  }
  defineProperty(G, 'console', { value: freeze(consoleObj), writable: false, configurable: false, enumerable: false });
  caps = create(null);
  for (const spec of config.capabilities) {
    const obj = create(null);
    for (const m of spec.methods) {
      const capName = spec.name;
      const fn = { [m](arg, options) { return send(capName, m, arg, readReason(options)); } }[m];
      obj[m] = freeze(fn);
    }
    caps[spec.name] = freeze(obj);
  }
  freeze(caps);
  defineProperty(G, 'requestCapability', {
    value: freeze(function requestCapability(name, scope, reason) {
      return send('$request', 'requestCapability', { name: StringC(name), scope: scope === undefined ? null : scope, reason: typeof reason === 'string' ? reason : '' }, '');
    }),
    writable: false, configurable: false, enumerable: false,
  });
}

// --- running main --------------------------------------------------------------------------------
function describe(e) {
  let message = '', code = 'AGENT_ERROR', stack;
  try {
    if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
      const m = e.message;
      message = typeof m === 'string' ? m : (m === undefined ? StringC(e) : StringC(m));
      const c = e.code;
      if (typeof c === 'string' && e.name === 'CapabilityError') code = c;
      const s = e.stack;
      if (typeof s === 'string') stack = call(strSlice, s, 0, 16384);
    } else {
      message = 'non-Error value thrown: ' + (typeof e === 'string' ? e : typeof e === 'symbol' ? 'symbol' : StringC(e));
    }
  } catch (inner) {
    message = 'the thrown value could not be described';
  }
  return { code, message: call(strSlice, message, 0, 4096), stack };
}
async function start(ns, inputJson) {
  let main;
  try { main = ns.default; } catch { main = undefined; }
  if (typeof main !== 'function') {
    return stringify({ ok: false, error: { code: 'INVALID_PROGRAM', message: 'the entry module must have a default export: export default async function main(input, caps)' } });
  }
  let value;
  try {
    value = await main(parse(inputJson), caps);
  } catch (e) {
    // An agent that catches CALL_LIMIT and goes on is still over the limit.
    return stringify({ ok: false, error: describe(e) });
  }
  let json;
  try {
    json = value === undefined ? 'null' : stringify(value);
  } catch (e) {
    return stringify({ ok: false, error: { code: 'INVALID_OUTPUT', message: 'the return value is not JSON-serialisable: ' + describe(e).message } });
  }
  if (json === undefined) {
    return stringify({ ok: false, error: { code: 'INVALID_OUTPUT', message: 'the return value is not JSON-serialisable (' + typeof value + ')' } });
  }
  if (json.length > config.maxOutputBytes) {
    return stringify({ ok: false, error: { code: 'OUTPUT_LIMIT', message: 'the return value is larger than ' + config.maxOutputBytes + ' bytes' } });
  }
  return '{"ok":true,"value":' + json + '}';
}
return freeze({ configure, start, deliver });
`;
