// Writes a CSV report for each account batch every 100 ms (Node's fs). The handle of each report is kept
// open "for the uploader" and never closed: a descriptor leaks with every report, until the process's
// limit (ulimit -n) refuses the next open with EMFILE. Each failure is logged and the next batch tried.
'use strict';
const fs = require('fs');
const path = require('path');
const pino = require('./pino');

const params = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const logger = pino(params.log_file);
const marker = path.join(path.dirname(process.argv[2]), '.failing');
const openForUpload = [];
// The harness's marker needs a descriptor of its own when none is left: one kept aside for it.
let markerReserve = fs.openSync('/dev/null', 'r');
let batch = 0;

logger.info({ out: params.out_dir }, 'report-writer started');
setInterval(() => {
  batch += 1;
  const file = path.join(params.out_dir, `report-${String(batch).padStart(6, '0')}.csv`);
  try {
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, 'account,pnl\nacct-7,812.50\n');
    openForUpload.push(fd);
    if (batch % 10 === 0) logger.info({ batch, open: openForUpload.length }, 'report written');
  } catch (err) {
    if (markerReserve !== null) {
      fs.closeSync(markerReserve);
      markerReserve = null;
      fs.writeFileSync(marker, '');
    }
    logger.error({ err, batch }, 'report failed');
  }
}, 100);
