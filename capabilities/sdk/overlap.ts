/**
 * Helpers for a definition's `overlaps` hook (define.ts): could two scopes reach the same host
 * file or folder? Links are followed (a second path to the same folder is the same folder), and a
 * hard-linked file is the same file (same device and inode). A path that does not exist yet is
 * compared through its longest existing ancestor, so a folder created later under a sensitive one
 * still counts. Never throws; when in doubt the answer is "the same".
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';

/** The real path of `p`: its longest existing ancestor resolved through links, the rest appended. */
export function realPathOf(p: string): string {
  let head = path.resolve(p);
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(head), ...tail.reverse());
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return path.resolve(p);
      tail.push(path.basename(head));
      head = parent;
    }
  }
}

function within(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!path.isAbsolute(rel) && rel.split(path.sep)[0] !== '..');
}

/** Do two host paths name the same place, or does one lie under the other (links followed)? */
export function pathsNest(a: string, b: string): boolean {
  const ra = realPathOf(a);
  const rb = realPathOf(b);
  return within(ra, rb) || within(rb, ra);
}

/** Do two host paths name the same file: the same real path, or the same device and inode? */
export function sameHostFile(a: string, b: string): boolean {
  if (realPathOf(a) === realPathOf(b)) return true;
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
