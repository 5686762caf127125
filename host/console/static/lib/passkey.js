// Passkeys in the browser (WebAuthn, through @simplewebauthn/browser, served by this host as
// /console/static/vendor/webauthn.js — nothing is loaded from elsewhere). Signing an approval: the
// host gives the options, whose challenge is derived from the request id, the digest of the
// arguments on screen and the verdict; the authenticator signs; the assertion goes with `decide`
// over the operator channel, where the host verifies it before counting the approval.
import { api } from './api.js';

let loading;

/** The library's global, loaded on first use (a classic script: the UMD bundle). */
function library() {
  if (window.SimpleWebAuthnBrowser) return Promise.resolve(window.SimpleWebAuthnBrowser);
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = '/console/static/vendor/webauthn.js';
    script.onload = () => (window.SimpleWebAuthnBrowser ? resolve(window.SimpleWebAuthnBrowser) : reject(new Error('the passkey library did not load')));
    script.onerror = () => {
      loading = undefined;
      reject(new Error('the passkey library could not be loaded from the host'));
    };
    document.head.append(script);
  });
  return loading;
}

/** Register a new passkey for the logged-in operator. */
export async function registerPasskey(label) {
  const lib = await library();
  const { options } = await api.post('/console/api/passkeys/options', {});
  const response = await lib.startRegistration({ optionsJSON: options });
  return (await api.post('/console/api/passkeys', { response, ...(label ? { label } : {}) })).passkey;
}

/**
 * The assertion for approving `requestId` at `argsDigest` (the digest on screen; for an edit, the
 * digest of the edited arguments), or undefined when the host asks for none. Throws when a
 * signature is required and no passkey is registered.
 */
export async function signApproval(requestId, argsDigest) {
  const answer = await api.post('/console/api/approvals/options', { requestId, argsDigest });
  if (!answer.options) return undefined;
  if (answer.required && answer.options.allowCredentials?.length === 0) {
    const error = new Error('this request needs a passkey-signed approval: register a passkey on the Passkeys page first');
    error.code = 'SIGNATURE_REQUIRED';
    throw error;
  }
  const lib = await library();
  return lib.startAuthentication({ optionsJSON: answer.options });
}

/** The canonical JSON the host digests arguments by (host/audit/canonical.ts: sorted keys, no spaces). */
function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonical(v))).join(',')}]`;
  const parts = [];
  for (const key of Object.keys(value).sort()) if (value[key] !== undefined) parts.push(`${JSON.stringify(key)}:${canonical(value[key])}`);
  return `{${parts.join(',')}}`;
}

/** `sha256:<hex>` of edited arguments, as the host computes an approval's argsDigest. */
export async function digestOf(args) {
  const bytes = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical(args))));
  return `sha256:${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}
