// Builds the page into dist/ (index.html, app.js, app.css), minified, deterministic.
//   node build.mjs            build into dist/
//   node build.mjs --check    build into a temp dir and fail if it differs from dist/
//   node build.mjs --out DIR  build into DIR
import * as esbuild from 'esbuild';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, copyFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const check = args.includes('--check');
const outIndex = args.indexOf('--out');
const dist = join(here, 'dist');
const out = check ? mkdtempSync(join(tmpdir(), 'tandem-web-demo-')) : outIndex >= 0 ? args[outIndex + 1] : dist;

async function build(outdir) {
  mkdirSync(outdir, { recursive: true });
  const common = { bundle: true, minify: true, logLevel: 'warning', absWorkingDir: here, charset: 'utf8', legalComments: 'eof' };
  await esbuild.build({
    ...common,
    entryPoints: ['src/main.js'],
    outfile: join(outdir, 'app.js'),
    format: 'iife',
    target: ['es2020'],
    platform: 'browser',
  });
  await esbuild.build({
    ...common,
    entryPoints: ['src/app.css'],
    outfile: join(outdir, 'app.css'),
    target: ['chrome105', 'firefox113', 'safari16'],
  });
  copyFileSync(join(here, 'src/index.html'), join(outdir, 'index.html'));
}

await build(out);

if (check) {
  const files = (dir) => (existsSync(dir) ? readdirSync(dir).sort() : []);
  const problems = [];
  const built = files(out);
  const committed = files(dist);
  for (const f of new Set([...built, ...committed])) {
    if (!built.includes(f)) problems.push(`${f}: in dist/ but not produced by the build`);
    else if (!committed.includes(f)) problems.push(`${f}: missing from dist/`);
    else if (!readFileSync(join(out, f)).equals(readFileSync(join(dist, f)))) problems.push(`${f}: differs from a fresh build`);
  }
  rmSync(out, { recursive: true, force: true });
  if (problems.length) {
    console.error(`web-demo/dist is stale; run \`npm run build\` in web-demo and commit dist/:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  console.log('web-demo/dist matches a fresh build');
}
