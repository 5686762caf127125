// Audit: shown when the host's operator channel offers it (see lib/feature.js).
import { h, section } from '../lib/dom.js';
import { hostSupports, notAvailable } from '../lib/feature.js';

export function mount(root, state) {
  const box = h('div', h('p.muted', 'asking the host…'));
  root.append(section('Audit', box));
  void hostSupports(state.channel, 'audit.verify').then((ok) => {
    box.replaceChildren(ok ? h('p', 'available') : notAvailable('Audit'));
  });
  return {};
}
