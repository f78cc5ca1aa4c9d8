// Prints the import graph of src/ between layers (folders; top-level files by name) as a
// Mermaid flowchart, from dependency-cruiser's JSON on stdin. `npm run graph` runs it;
// the README's architecture section shows its output.
import { readFileSync } from 'node:fs';

const { modules } = JSON.parse(readFileSync(0, 'utf8'));
const unit = (path) => {
  const m = /^src\/([^/]+)\//.exec(path);
  return m ? m[1] : /^src\/([^/]+)\.ts$/.exec(path)?.[1];
};
const edges = new Set();
for (const mod of modules) {
  const from = unit(mod.source);
  if (!from || mod.source.endsWith('.test.ts')) continue;
  for (const dep of mod.dependencies) {
    const to = unit(dep.resolved);
    if (to && to !== from) edges.add(`  ${from} --> ${to}`);
  }
}
console.log(['flowchart TD', ...[...edges].sort()].join('\n'));
