/**
 * A reachability detector that runs INSIDE an isolate (as agent code, or in a raw isolated-vm
 * isolate for its positive control): `detect(roots)` walks every value reachable from the roots —
 * own properties with string and symbol keys (Reflect.ownKeys + getOwnPropertyDescriptor), getters
 * and setters, every getter along the prototype chain invoked with the object as receiver (what it
 * returns or throws is walked too), prototypes — and reports anything that looks like isolated-vm:
 *
 * - a function whose source is `[native code]` that is not an ECMAScript intrinsic (what an
 *   `ivm.Callback` looks like inside an isolate on isolated-vm 7.0.1: `function () { [native code] }`,
 *   name "", an ordinary function otherwise; also a bound host function);
 * - an instance of a class whose prototype chain holds isolated-vm's method names (`derefInto`,
 *   `applySync`, `copyInto`, …) or a native constructor that is no intrinsic (`Reference`,
 *   `ExternalCopy`, `ExternalCopyInto`, `Transferable` — how those look inside an isolate);
 * - any property named like an isolated-vm method;
 * - a JavaScript function whose source calls one of the sandbox bootstrap's private functions or
 *   host callbacks by name (`submit(`, `hostLog(`, `report(`, `finish(`, `deliver(`, `configure(`,
 *   `settle(`): the public `caps` methods, console methods and `requestCapability` only call
 *   `send(` / `emit(`, so anything else found is a piece of the bridge that must stay private.
 *
 * Intrinsics are collected first, from the ECMAScript global names and from syntax (the function
 * kinds, iterator prototypes, %ThrowTypeError%, V8's error `stack` accessor and CallSite
 * prototype). A native function counts as one only where it is found under its own name (`name`
 * equals the key, or `get key` / `set key`), as a `constructor`, or as a prototype: a host function
 * planted on an intrinsic (say `Object.prototype.x = callback`) is not absorbed into the set.
 *
 * `detect` returns `{ counts, findings }`; counts say how much was walked, so a test can refuse to
 * pass vacuously.
 */
export const DETECTOR_SOURCE = String.raw`
function detect(roots) {
  'use strict';
  const apply = Reflect.apply, ownKeys = Reflect.ownKeys, gopd = Reflect.getOwnPropertyDescriptor, getProto = Reflect.getPrototypeOf;
  const fnToString = Function.prototype.toString, test = RegExp.prototype.test, push = Array.prototype.push;
  const NATIVE = /\{\s*\[native code\]\s*\}\s*$/;
  const BRIDGE_INTERNAL = /\b(submit|hostLog|report|finish|deliver|configure|settle)\s*\(/;
  const IVM_METHODS = ['derefInto', 'deref', 'applySync', 'applySyncPromise', 'applyIgnored', 'copyInto', 'copySync', 'getSync', 'setSync', 'setIgnored', 'deleteSync', 'deleteIgnored', 'evalClosure', 'evalClosureSync', 'compileScript', 'compileModule', 'createContext', 'release'];
  const IVM_NAMES = ['Reference', 'ExternalCopy', 'ExternalCopyInto', 'Callback', 'Isolate', 'Context', 'Script', 'Module', 'NativeModule', 'PromiseHolder'];
  const isObj = (v) => v !== null && (typeof v === 'object' || typeof v === 'function');
  const isNative = (f) => { try { return apply(test, NATIVE, [apply(fnToString, f, [])]); } catch { return true; } };
  const ownName = (f) => { const d = gopd(f, 'name'); return d && 'value' in d && typeof d.value === 'string' ? d.value : undefined; };
  const keyName = (k) => (typeof k === 'symbol' ? '[' + (k.description ?? '') + ']' : k);

  // --- intrinsics: native functions reached from the ECMAScript globals and from syntax, each found
  // under its own name (so a host function planted on an intrinsic is not mistaken for one) -------
  const G = globalThis;
  const STANDARD = ['Object', 'Function', 'Array', 'Number', 'parseFloat', 'parseInt', 'Boolean', 'String', 'Symbol', 'Date', 'Promise',
    'RegExp', 'Error', 'AggregateError', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError', 'JSON',
    'Math', 'Intl', 'ArrayBuffer', 'Atomics', 'Uint8Array', 'Int8Array', 'Uint16Array', 'Int16Array', 'Uint32Array', 'Int32Array',
    'Float32Array', 'Float64Array', 'Float16Array', 'Uint8ClampedArray', 'BigUint64Array', 'BigInt64Array', 'DataView', 'Map', 'BigInt',
    'Set', 'WeakMap', 'WeakSet', 'Proxy', 'Reflect', 'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape',
    'unescape', 'eval', 'isFinite', 'isNaN', 'Iterator', 'SuppressedError', 'DisposableStack', 'AsyncDisposableStack',
    // ECMAScript 2026 (V8 in Node 26).
    'Temporal'];
  const fromSyntax = [];
  const add = (v) => apply(push, fromSyntax, [v]);
  add(getProto(function () {}));
  for (const f of [async function () {}, function* () {}, async function* () {}]) { add(f.constructor); add(getProto(f)); }
  add(getProto((function* () {})())); add(getProto((async function* () {})()));
  add(getProto([][Symbol.iterator]())); add(getProto(new Map().entries())); add(getProto(new Set().values())); add(getProto(''[Symbol.iterator]()));
  add(getProto(/x/[Symbol.matchAll]('')));
  add((function () { 'use strict'; return gopd(arguments, 'callee').get; })());
  if (typeof Iterator === 'function') { add(getProto([].values().map((x) => x))); if (Iterator.from) add(getProto(Iterator.from({ next() {} }))); }
  try { const seg = new Intl.Segmenter().segment(''); add(getProto(seg)); add(getProto(seg[Symbol.iterator]())); } catch {}
  add(getProto(Int8Array));
  // V8's own accessors and objects: an error's stack, and the CallSites Error.prepareStackTrace gets.
  for (const holder of [new Error('x'), (() => { const h = {}; Error.captureStackTrace(h); return h; })()]) {
    const d = gopd(holder, 'stack');
    if (d && d.get) { add(d.get); add(d.set); }
  }
  {
    const saved = Error.prepareStackTrace;
    Error.prepareStackTrace = (e, sites) => sites;
    const sites = new Error('x').stack;
    Error.prepareStackTrace = saved;
    if (sites && sites[0]) add(getProto(sites[0]));
  }
  const intrinsics = new Set();
  {
    const seen = new Set();
    const queue = [];
    for (const n of STANDARD) { const d = gopd(G, n); if (d && 'value' in d && isObj(d.value)) apply(push, queue, [[d.value, n, true]]); }
    for (const v of fromSyntax) if (isObj(v)) apply(push, queue, [[v, '', true]]);
    while (queue.length) {
      const [v, found, trusted] = queue.shift();
      if (typeof v === 'function' && isNative(v)) {
        const name = ownName(v);
        if (trusted || (name !== undefined && name !== '' && (name === found || name === 'get ' + found || name === 'set ' + found || name === 'bound ' + found))) intrinsics.add(v);
      }
      if (seen.has(v) || v === G) continue;
      seen.add(v);
      let keys = [];
      try { keys = ownKeys(v); } catch {}
      for (const k of keys) {
        let d; try { d = gopd(v, k); } catch { continue; }
        if (!d) continue;
        const kn = keyName(k);
        if ('value' in d) { if (isObj(d.value)) apply(push, queue, [[d.value, kn, kn === 'constructor' && typeof d.value === 'function' && ownName(d.value) !== '' ]]); }
        else { if (d.get) apply(push, queue, [[d.get, kn, false]]); if (d.set) apply(push, queue, [[d.set, kn, false]]); }
      }
      let p; try { p = getProto(v); } catch {}
      if (isObj(p)) apply(push, queue, [[p, '', typeof p === 'function' && ownName(p) !== '' ]]);
    }
  }

  // --- the walk --------------------------------------------------------------------------------
  const findings = [];
  const seen = new Map();
  const queue = [];
  const counts = { objects: 0, functions: 0, nativeFunctions: 0, gettersInvoked: 0, errorsCaught: 0, properties: 0 };
  const enqueue = (v, path) => { if (isObj(v) && !seen.has(v)) { seen.set(v, path); apply(push, queue, [[v, path]]); } };
  for (const [name, v] of roots) enqueue(v, name);
  while (queue.length && seen.size < 200000) {
    const [v, path] = queue.shift();
    counts.objects++;
    if (typeof v === 'function') {
      counts.functions++;
      if (isNative(v)) {
        counts.nativeFunctions++;
        if (!intrinsics.has(v)) findings.push('native function that is no ECMAScript intrinsic (name ' + JSON.stringify(ownName(v) ?? null) + ') at ' + path);
      }
      const n = ownName(v);
      if (n !== undefined && IVM_NAMES.includes(n) && isNative(v)) findings.push('isolated-vm class ' + n + ' at ' + path);
      if (!isNative(v)) {
        let src = '';
        try { src = apply(fnToString, v, []); } catch {}
        if (apply(test, BRIDGE_INTERNAL, [src])) findings.push('a private function of the bridge (name ' + JSON.stringify(ownName(v) ?? null) + ') at ' + path);
      }
    }
    // An instance of an isolated-vm class: its prototype chain has isolated-vm's methods or a native
    // constructor that is no ECMAScript intrinsic.
    for (let p = v, depth = 0; depth < 64; depth++) {
      try { p = getProto(p); } catch { break; }
      if (!isObj(p)) break;
      let pk = [];
      try { pk = ownKeys(p); } catch {}
      const ivmKey = pk.find((k) => typeof k === 'string' && IVM_METHODS.includes(k));
      let ctor;
      try { const d = gopd(p, 'constructor'); ctor = d && 'value' in d ? d.value : undefined; } catch {}
      if (ivmKey !== undefined || (typeof ctor === 'function' && isNative(ctor) && !intrinsics.has(ctor))) {
        findings.push('instance of ' + (typeof ctor === 'function' ? JSON.stringify(ownName(ctor) ?? null) : 'an object with ' + ivmKey) + ' at ' + path);
        break;
      }
    }
    let keys = [];
    try { keys = ownKeys(v); } catch (e) { findings.push('keys cannot be listed at ' + path); }
    for (const k of keys) {
      counts.properties++;
      const kn = keyName(k);
      if (typeof k === 'string' && IVM_METHODS.includes(k)) {
        // WeakRef.prototype.deref is an ECMAScript name; the sandbox removes WeakRef, flag it anyway.
        findings.push('isolated-vm method name ' + k + ' at ' + path);
      }
      let d; try { d = gopd(v, k); } catch { findings.push('descriptor throws at ' + path + '.' + kn); continue; }
      if (!d) continue;
      if ('value' in d) enqueue(d.value, path + '.' + kn);
      else { enqueue(d.get, path + '.' + kn + '<get>'); enqueue(d.set, path + '.' + kn + '<set>'); }
    }
    // Invoke every getter along the prototype chain with this object as the receiver.
    let p = v;
    for (let depth = 0; isObj(p) && depth < 64; depth++) {
      let pk = [];
      try { pk = ownKeys(p); } catch {}
      for (const k of pk) {
        let d; try { d = gopd(p, k); } catch { continue; }
        if (d && typeof d.get === 'function') {
          counts.gettersInvoked++;
          try { enqueue(apply(d.get, v, []), path + '.' + keyName(k) + '()'); } catch (e) { counts.errorsCaught++; enqueue(e, path + '.' + keyName(k) + '!'); }
        }
      }
      try { p = getProto(p); } catch { break; }
    }
    let proto; try { proto = getProto(v); } catch (e) { counts.errorsCaught++; enqueue(e, path + '<proto!>'); }
    enqueue(proto, path + '<proto>');
  }
  counts.intrinsics = intrinsics.size;
  return { counts, findings };
}
`;
