// The desk's quote API (Node's http): /healthz and /v1/quotes, pino's JSON lines. A server that cannot
// listen logs the error and exits 1, for its supervisor to start it again.
'use strict';
const fs = require('fs');
const http = require('http');
const pino = require('./pino');

const params = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const logger = pino(params.log_file);
let served = 0;

const server = http.createServer((req, res) => {
  const started = process.hrtime.bigint();
  const body = req.url === '/healthz'
    ? { status: 'ok' }
    : { quotes: [{ market: 'ETH-PERP', bid: 2211.4, ask: 2211.6 }, { market: 'BTC-PERP', bid: 64209.5, ask: 64210.5 }] };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
  served += 1;
  if (served % 25 === 0) {
    const responseTime = Number(process.hrtime.bigint() - started) / 1e6;
    logger.info({ req: { method: req.method, url: req.url }, res: { statusCode: 200 }, responseTime }, 'request completed');
  }
});

server.on('error', (err) => {
  logger.fatal({ err }, 'server failed to start');
  process.exit(1);
});

server.listen(params.port, '127.0.0.1', () => {
  logger.info({ address: `127.0.0.1:${params.port}` }, 'quote-api listening');
});
