'use strict';
// jobx helper for Node.js handlers: the handler protocol (newline-delimited
// JSON over stdio) in a few functions.
//
//   const jobx = require('jobx');
//   jobx.run(async (input) => {            // input: [[key, value], ...]
//     jobx.directiveReturn();              // a mapper's first output
//     for (const [k, v] of input) jobx.emit(k, v * 2);
//   });
//
// The function passed to run may also return (or be a generator of) items:
// [key, value] pairs and, for a mapper, first a directive made by
// jobx.toReturn() or jobx.toMap(step).

const handlerType = process.env.JOBX_HANDLER_TYPE || '';
let directiveWritten = false;
let pending = [];
let pendingBytes = 0;

function write(line) {
  pending.push(line);
  pendingBytes += line.length;
  if (pendingBytes >= 1 << 16) flush();
}

function flush() {
  if (pending.length === 0) return;
  process.stdout.write(pending.join('\n') + '\n');
  pending = [];
  pendingBytes = 0;
}

class Directive {
  constructor(obj) { this.obj = obj; }
}

function toReturn() { return new Directive({ jobx: 'return' }); }
function toMap(step) {
  if (typeof step !== 'string' || step === '') throw new Error('jobx.toMap: step must be a non-empty string');
  return new Directive({ jobx: 'map', step });
}

function writeDirective(d) {
  if (handlerType && handlerType !== 'mapper') throw new Error('jobx: only a mapper writes a directive');
  if (directiveWritten) throw new Error('jobx: the directive was already written');
  directiveWritten = true;
  write(JSON.stringify(d.obj));
}

function directiveReturn() { writeDirective(toReturn()); }
function directiveMap(step) { writeDirective(toMap(step)); }

function emit(key, value) {
  if (handlerType === 'mapper' && !directiveWritten) {
    throw new Error('jobx: a mapper must write its directive (directiveReturn or directiveMap) before any pair');
  }
  if (handlerType === 'combiner' && !Array.isArray(value)) {
    throw new Error('jobx: a combiner emits (key, [value, ...])');
  }
  const line = JSON.stringify([key, value]);
  if (line === undefined) throw new Error('jobx: pair is not JSON-serialisable');
  write(line);
}

function emitItem(item) {
  if (item instanceof Directive) return writeDirective(item);
  if (!Array.isArray(item) || item.length !== 2) {
    throw new Error('jobx: want a [key, value] pair, got ' + JSON.stringify(item));
  }
  emit(item[0], item[1]);
}

function parseLines(text) {
  const out = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let item;
    try {
      item = JSON.parse(line);
    } catch (e) {
      throw new Error(`jobx: stdin line ${i + 1}: bad JSON: ${e.message}`);
    }
    if (!Array.isArray(item) || item.length !== 2) throw new Error(`jobx: stdin line ${i + 1}: want [key, value]`);
    out.push(item);
  });
  return out;
}

// readInput resolves to the input items: [key, value] for a mapper, [key,
// [value, ...]] for a combiner or reducer.
async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return parseLines(Buffer.concat(chunks).toString('utf8'));
}

// readInputSync is readInput without a promise.
function readInputSync() {
  return parseLines(require('fs').readFileSync(0, 'utf8'));
}

// scope returns the scope-factory variables, with their JSON types.
function scope() {
  if (process.env.JOBX_SCOPE_JSON) return JSON.parse(process.env.JOBX_SCOPE_JSON);
  const vars = {};
  for (const name of (process.env.JOBX_SCOPE_VARS || '').split(',')) {
    const n = name.trim();
    if (n && n in process.env) vars[n] = process.env[n];
  }
  return vars;
}

const env = {
  workflow: process.env.JOBX_WORKFLOW || '',
  requestId: process.env.JOBX_REQUEST_ID || '',
  invocationId: process.env.JOBX_INVOCATION_ID || '',
  step: process.env.JOBX_STEP || '',
  handler: process.env.JOBX_HANDLER || '',
  handlerType,
  sessionURL: process.env.JOBX_SESSION_URL || '',
  scope: scope(),
};

function log(...args) { console.error(...args); }

// notify writes a notification line (JOBX-NOTIFY {...}) to stderr.
function notify(level, message) {
  try {
    process.stderr.write('JOBX-NOTIFY ' + JSON.stringify({
      level, message: String(message), handler: env.handler, workflow: env.workflow,
      request_id: env.requestId, invocation_id: env.invocationId,
    }) + '\n');
  } catch (e) { /* never throws */ }
}

function finish(code) {
  flush();
  process.exitCode = code;
}

// run reads the input, calls fn(input) and writes what it returns or yields
// (sync or async iterables, arrays); a thrown error or rejected promise is
// printed to stderr and the process exits 1.
function run(fn) {
  (async () => {
    const input = await readInput();
    const result = await fn(input);
    if (result != null) {
      if (typeof result[Symbol.asyncIterator] === 'function') {
        for await (const item of result) emitItem(item);
      } else if (typeof result[Symbol.iterator] === 'function') {
        for (const item of result) emitItem(item);
      } else {
        throw new Error('jobx: the handler returned a non-iterable ' + typeof result);
      }
    }
    if (handlerType === 'mapper' && !directiveWritten) {
      throw new Error('jobx: a mapper must write a directive (directiveReturn or directiveMap)');
    }
    finish(0);
  })().catch((err) => {
    pending = [];
    console.error(err && err.stack ? err.stack : String(err));
    process.exitCode = 1;
  });
}

// call makes one request to the runner's services endpoint (a unix socket
// named by JOBX_SERVICES), authenticated by this invocation's JOBX_TOKEN.
function call(method, path, body) {
  const url = process.env.JOBX_SERVICES || '';
  if (!url.startsWith('unix:')) {
    return Promise.reject(new Error('the jobx services endpoint is not available: JOBX_SERVICES is not set'));
  }
  const http = require('http');
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath: url.slice('unix:'.length), method, path,
      headers: { Authorization: 'Bearer ' + (process.env.JOBX_TOKEN || ''), 'Content-Type': 'application/json' },
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

// SESSION_VALUE_LIMIT is the largest session value, as JSON bytes
// (kvmodel.MaxSessionValueBytes).
const SESSION_VALUE_LIMIT = 1048576;

// TooLargeError is data over one of jobx's size limits; the message names
// the limit.
class TooLargeError extends RangeError {
  constructor(message) {
    super(message);
    this.name = 'TooLargeError';
  }
}

// session is the private session of the map invocation: read-write for its
// mapper and combiner, read-only for its reducer. get resolves to undefined
// for an unset key; set rejects with a TooLargeError a value over
// SESSION_VALUE_LIMIT.
const session = {
  async get(key) {
    const r = await call('GET', '/v1/session/' + encodeURIComponent(key));
    if (r.status === 404) return undefined;
    if (r.status >= 400) throw new Error('session get ' + key + ': ' + r.status + ' ' + r.body.trim());
    return JSON.parse(r.body);
  },
  async set(key, value) {
    const json = JSON.stringify(value);
    const size = json === undefined ? 0 : Buffer.byteLength(json);
    if (size > SESSION_VALUE_LIMIT) {
      throw new TooLargeError('session value of key ' + JSON.stringify(String(key)) + ' is ' + size +
        ' bytes, over the ' + SESSION_VALUE_LIMIT + '-byte session value limit');
    }
    const r = await call('PUT', '/v1/session/' + encodeURIComponent(key), value);
    if (r.status === 413) throw new TooLargeError(r.body.trim());
    if (r.status >= 400) throw new Error('session set ' + key + ': ' + r.status + ' ' + r.body.trim());
  },
  async list() {
    const r = await call('GET', '/v1/session');
    if (r.status >= 400) throw new Error('session list: ' + r.status + ' ' + r.body.trim());
    return JSON.parse(r.body);
  },
};

module.exports = {
  run, readInput, readInputSync, emit, directiveReturn, directiveMap, toReturn, toMap,
  flush, env, log, notify, session, SESSION_VALUE_LIMIT, TooLargeError,
};
