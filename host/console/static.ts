/**
 * The console's static assets (host/console/static/: hand-written ES modules, CSS, one HTML page),
 * read once into memory when the console is created. A request can only name a file that was
 * listed then, by exact relative path — there is no path join at request time, so no traversal,
 * no symlink following, no dotfiles; files with other extensions are never served.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset {
  body: Buffer;
  type: string;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Largest asset read, bytes. */
export const MAX_ASSET_BYTES = 1024 * 1024;

/** Next to this module (sources, tsx), or the sources' copy when running from dist/. */
export function defaultStaticDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'static'), path.resolve(here, '../../../host/console/static')];
  return candidates.find((dir) => existsSync(path.join(dir, 'index.html'))) ?? (candidates[0] as string);
}

/** Relative path (forward slashes) → asset, for every servable file under `dir`. */
export function loadAssets(dir: string): Map<string, Asset> {
  const out = new Map<string, Asset>();
  const walk = (rel: string): void => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) {
        const type = TYPES[path.extname(entry.name)];
        const file = path.join(dir, child);
        if (type && statSync(file).size <= MAX_ASSET_BYTES) out.set(child, { body: readFileSync(file), type });
      }
    }
  };
  walk('');
  if (!out.has('index.html')) throw new Error(`web console: no index.html in ${dir}`);
  return out;
}
