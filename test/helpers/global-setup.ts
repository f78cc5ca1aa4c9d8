/**
 * Runs once before the test files: compiles the service (`npm run build`), so the tests
 * that run it as users do (`npm start`, `npm run stack`, WORKERS) find `dist/` complete,
 * and no two of them rebuild it at the same time.
 */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npm', ['run', '-s', 'build'], { stdio: 'inherit', timeout: 120_000 });
}
