/** The commit a bench run measured, for its result files. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The commit the run measured (`+dirty` with uncommitted changes outside bench/), or `unknown` outside a git checkout. */
export function gitCommit(): string {
  try {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', '.', ':!bench'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return 'unknown';
  }
}
