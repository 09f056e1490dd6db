// The lines pino writes with its defaults: numeric level, time in ms, pid, hostname, the bindings, msg;
// an Error under `err` as pino's standard serializer gives it (type, message, stack, and its own fields).
'use strict';
const fs = require('fs');
const os = require('os');

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const hostname = os.hostname().split('.')[0];

function serializeError(err) {
  const out = { type: err.constructor.name, message: err.message, stack: err.stack };
  for (const key of Object.keys(err)) out[key] = err[key];
  return out;
}

function pino(path) {
  const fd = fs.openSync(path, 'a');
  const logger = {};
  for (const [name, level] of Object.entries(LEVELS)) {
    logger[name] = (fields, msg) => {
      if (typeof fields === 'string') [fields, msg] = [{}, fields];
      const line = { level, time: Date.now(), pid: process.pid, hostname };
      for (const [key, value] of Object.entries(fields)) line[key] = key === 'err' ? serializeError(value) : value;
      line.msg = msg;
      fs.writeSync(fd, JSON.stringify(line) + '\n');
    };
  }
  return logger;
}

module.exports = pino;
