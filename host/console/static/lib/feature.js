// Optional parts of the operator protocol (review, trust, audit): a page asks the host whether it
// knows a message type before showing controls, and says plainly when this host does not.
import { h } from './dom.js';

const known = new Map();

/** Resolves true when the host answers `type` with anything but "unknown message type". */
export async function hostSupports(channel, type, fields = {}) {
  if (known.has(type)) return known.get(type);
  const answer = await waitLive(channel).then(() => channel.supports(type, fields));
  known.set(type, answer);
  return answer;
}

function waitLive(channel) {
  if (channel.state === 'live') return Promise.resolve();
  return new Promise((resolve) => {
    const off = channel.on((m) => {
      if (m.type === 'state' && m.state === 'live') {
        off();
        resolve();
      }
    });
  });
}

export function notAvailable(what) {
  return h('p.notice.info', `${what} is not available on this host: its operator channel does not offer it (this host has no audit / trust ledger yet).`);
}
