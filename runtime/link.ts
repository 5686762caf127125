/**
 * Compile and link an agent program's modules inside its isolate. The whole import graph is
 * compiled up front so a bad import is INVALID_PROGRAM before any agent code runs; only relative
 * imports of the program's own files resolve (see program.ts). `.json` and `.txt` files become
 * data modules (`export default …`).
 *
 * Compiling and linking run no agent code (module bodies run only in `evaluate`), so for a program
 * of at most SYNC_LINK_MAX_BYTES they are done on this thread (`compileModuleSync`,
 * `instantiateSync`): no thread hop per module, which is most of a small program's warm start. A
 * bigger program is compiled on the isolate's thread, so compiling it never blocks this one for
 * long.
 *
 * isolated-vm 7.0.1 hands import specifiers back (in `dependencySpecifiers` and to the instantiate
 * callback) as their UTF-8 bytes read as Latin-1, so `./données.js` arrives as `./donnÃ©es.js`;
 * `specifierOf` undoes that (an identity for ASCII).
 */
import type ivm from 'isolated-vm';
import { ContainedError, messageOf } from './errors.js';
import { type Program, resolveSpecifier } from './program.js';

/** Source bytes (UTF-16 units) up to which a program is compiled and linked on this thread. */
export const SYNC_LINK_MAX_BYTES = 64 * 1024;

export async function linkProgram(isolate: ivm.Isolate, context: ivm.Context, program: Program): Promise<ivm.Module> {
  let size = 0;
  for (const source of Object.values(program.files)) size += source.length;
  const sync = size <= SYNC_LINK_MAX_BYTES;
  const modules = new Map<string, ivm.Module>();
  const paths = new Map<ivm.Module, string>();
  const compile = async (p: string): Promise<ivm.Module> => {
    const existing = modules.get(p);
    if (existing) return existing;
    const source = program.files[p] as string;
    let code = source;
    if (p.endsWith('.json')) {
      try {
        code = `export default ${JSON.stringify(JSON.parse(source))};`;
      } catch {
        throw new ContainedError('INVALID_PROGRAM', `data module "${p}" is not valid JSON`);
      }
    } else if (p.endsWith('.txt')) {
      code = `export default ${JSON.stringify(source)};`;
    }
    let mod: ivm.Module;
    try {
      mod = sync ? isolate.compileModuleSync(code, { filename: p }) : await isolate.compileModule(code, { filename: p });
    } catch (error) {
      throw new ContainedError('INVALID_PROGRAM', `cannot compile ${p}: ${messageOf(error)}`);
    }
    modules.set(p, mod);
    paths.set(mod, p);
    return mod;
  };
  // Compile the whole import graph up front so resolution errors are INVALID_PROGRAM.
  const entry = await compile(program.entry);
  const queue: Array<[string, ivm.Module]> = [[program.entry, entry]];
  while (queue.length > 0) {
    const [p, mod] = queue.shift() as [string, ivm.Module];
    for (const raw of mod.dependencySpecifiers) {
      const dep = resolveSpecifier(specifierOf(raw), p, program.files);
      if (!modules.has(dep)) queue.push([dep, await compile(dep)]);
    }
  }
  const resolve = (specifier: string, referrer: ivm.Module): ivm.Module => {
    const from = paths.get(referrer);
    const target = from === undefined ? undefined : modules.get(resolveSpecifier(specifierOf(specifier), from, program.files));
    if (!target) throw new Error(`cannot resolve "${specifier}"`);
    return target;
  };
  try {
    if (sync) entry.instantiateSync(context, resolve);
    else await entry.instantiate(context, resolve);
  } catch (error) {
    throw new ContainedError('INVALID_PROGRAM', `cannot link the program: ${messageOf(error)}`);
  }
  return entry;
}

/** An import specifier as isolated-vm reports it (UTF-8 bytes as Latin-1 characters), decoded. */
function specifierOf(raw: string): string {
  return /^[\u0000-\u007f]*$/.test(raw) ? raw : Buffer.from(raw, 'latin1').toString('utf8');
}
