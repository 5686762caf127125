// app.mjs — run with: node --no-node-snapshot app.mjs
import { createSandbox, createInstance, defineCapability } from 'ai-contained';
import { z } from 'zod';

// A capability: a typed interface, checked against its scope before it runs.
const notes = defineCapability({
  name: 'notes',
  description: 'Short text notes',
  scope: z.strictObject({ prefix: z.string() }),
  intersect: (parent, narrower) => (narrower.prefix.startsWith(parent.prefix) ? narrower : parent),
  describeScope: (s) => `notes whose key starts with "${s.prefix}"`,
  methods: {
    read: {
      description: 'Read a note by key',
      args: z.string(),
      result: z.string(),
      risk: { readOnly: true },
      inScope: (key, scope) => (key.startsWith(scope.prefix) ? { ok: true } : { ok: false, code: 'OUT_OF_SCOPE', message: 'outside the prefix' }),
      run: async (key) => `note ${key}`,
    },
  },
});

const sandbox = createSandbox({ isolation: 'worker' }); // or 'in-process'; options: workers, maxRunsPerWorker, gate, defaultLimits, logger
try {
  const outcome = await sandbox.run({
    source: 'export default async (input, caps) => caps.notes.read(input.key)', // or program: { files, entry }
    input: { key: 'team/standup' },
    capabilities: [createInstance(notes, { prefix: 'team/' }, {})],
    limits: { cpuMs: 1000 },
  });
  console.log(outcome.status, outcome.value); // ok note team/standup

  const refused = await sandbox.run({
    source: 'export default async (input, caps) => caps.notes.read("hr/salaries")',
    capabilities: [createInstance(notes, { prefix: 'team/' }, {})],
  });
  console.log(refused.status, refused.error.code); // error CAPABILITY_DENIED
} finally {
  await sandbox.close();
}
