// Builds web/dist/ from the page's sources and the browser builds of marked and DOMPurify
// (from node_modules, installed by npm ci from package-lock.json: nothing is vendored by hand).
// index.html references each asset as name?v=<hash of its bytes>, so sluice can let browsers
// cache a matching request for a year and a changed file is fetched again at once.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(process.argv[2] ?? path.join(here, 'dist')); /* node build.mjs [OUT_DIR] */

/* dist name → source file */
const files = {
  'index.html': 'index.html',
  'app.js': 'app.js',
  'style.css': 'style.css',
  'favicon.svg': 'favicon.svg',
  'sluice-client.js': '../clients/js/src/sluice-client.js', /* the npm package's module, as is */
  'widget.js': 'widget.js', /* the embeddable widget (seed 001), loaded by other sites */
  'widget-demo.html': 'widget-demo.html', /* a page showing the widget, at /widget-demo.html */
  'widget.css': 'widget.css', /* the demo page's styles (the widget carries its own) */
  'marked.min.js': 'node_modules/marked/lib/marked.umd.js',
  'purify.min.js': 'node_modules/dompurify/dist/purify.min.js',
};

export const hashOf = (bytes) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

function read(name) {
  const src = path.join(here, files[name]);
  if (!fs.existsSync(src)) throw new Error(`web/build: ${files[name]} is missing (run npm ci in web/)`);
  let text = fs.readFileSync(src, 'utf8');
  // The .map files are not shipped: drop the comment that would make devtools ask for them.
  if (src.includes('node_modules')) text = text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
  return text;
}

const out = {};
for (const name of Object.keys(files)) if (name !== 'index.html') out[name] = read(name);

let html = read('index.html');
html = html.replace(/\b(src|href)="([^"?#:]+)"/g, (m, attr, ref) =>
  out[ref] !== undefined ? `${attr}="${ref}?v=${hashOf(out[ref])}"` : m);
const notOnPage = ['sluice-client.js', 'widget.js', 'widget-demo.html', 'widget.css'];
for (const name of Object.keys(out)) {
  if (!notOnPage.includes(name) && !html.includes(`"${name}?v=`)) throw new Error(`web/build: index.html does not reference ${name}`);
}
out['index.html'] = html;

fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist, { recursive: true });
for (const [name, text] of Object.entries(out)) fs.writeFileSync(path.join(dist, name), text);
console.log(`web/build: ${Object.keys(out).length} files in ${path.relative(process.cwd(), dist) || "."}`);
