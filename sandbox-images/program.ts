/**
 * From a loaded image to the runtime's `Program` (module sources by path + entry), so a host can
 * run an image like any other agent program. Every file of an image is UTF-8 text (the loader
 * checks it), so decoding cannot fail; `manifest.json` is left out (it is not agent code).
 */
import type { Program } from '../runtime/program.js';
import type { LoadedImage } from './load.js';
import { MANIFEST_PATH } from './paths.js';

export function imageProgram(image: LoadedImage): Program {
  const files: Record<string, string> = {};
  for (const [p, data] of image.files) {
    if (p !== MANIFEST_PATH) files[p] = data.toString('utf8');
  }
  return { files, entry: image.manifest.entry };
}
