// The risk report API (Node's http): it keeps the positions snapshot in memory, indexed by account, and
// reloads it whenever the snapshot file changes; it loads it before it listens. Run with a small heap
// (--max-old-space-size), as its container's memory limit requires. pino's JSON lines.
'use strict';
const fs = require('fs');
const http = require('http');
const pino = require('./pino');

const params = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const logger = pino(params.log_file);
let byAccount = new Map();
let loadedMtime = 0;

function load() {
  const stat = fs.statSync(params.snapshot);
  const started = Date.now();
  const rows = JSON.parse(fs.readFileSync(params.snapshot, 'utf8'));
  const index = new Map();
  for (const row of rows) {
    if (!index.has(row.account)) index.set(row.account, []);
    index.get(row.account).push(row);
  }
  byAccount = index;
  loadedMtime = stat.mtimeMs;
  logger.info({ rows: rows.length, accounts: index.size, ms: Date.now() - started }, 'positions snapshot loaded');
}

load();
const server = http.createServer((req, res) => {
  const account = new URL(req.url, 'http://localhost').searchParams.get('account') || 'acct-1';
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ account, positions: byAccount.get(account) || [] }));
});
server.listen(params.port, '127.0.0.1', () => logger.info({ port: params.port }, 'report-api listening'));

setInterval(() => {
  let mtime = 0;
  try {
    mtime = fs.statSync(params.snapshot).mtimeMs;
  } catch (err) {
    logger.warn({ err }, 'snapshot unreadable; keeping the loaded one');
    return;
  }
  if (mtime !== loadedMtime) {
    logger.info({ path: params.snapshot }, 'positions snapshot changed, reloading');
    load();
  }
}, 200);
