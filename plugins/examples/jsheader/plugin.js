// A meshagent out-of-process plugin written in JavaScript.
//
// Configuration (the route's plugins map entry):
//   {"header": "x-js-plugin", "value": "hello", "deny_path": "/forbidden"}
// RequestHeaders sets `header: value` on the request, and answers 403 for
// deny_path without calling the upstream.
'use strict';

const path = require('path');
const os = require('os');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const COOKIE_KEY = 'MESHAGENT_PLUGIN_MAGIC_COOKIE';
const COOKIE_VALUE = '7c1d2e4f-meshagent-plugin';

if (process.env[COOKIE_KEY] !== COOKIE_VALUE) {
  console.error('this binary is a meshagent plugin: meshagent starts it (the ' + COOKIE_KEY + ' environment variable is not set)');
  process.exit(1);
}

const protoDir = process.env.MESHAGENT_PLUGIN_PROTO_DIR ||
  path.join(__dirname, '..', '..', 'external', 'pluginv1');
const opts = { keepCase: true, longs: String, enums: String, defaults: true };
const pluginDef = protoLoader.loadSync(path.join(protoDir, 'plugin.proto'), opts);
const healthDef = protoLoader.loadSync(path.join(__dirname, 'health.proto'), opts);
const pluginPkg = grpc.loadPackageDefinition(pluginDef).meshagent.plugin.v1;
const healthPkg = grpc.loadPackageDefinition(healthDef).grpc.health.v1;

const configs = new Map();
let nextToken = 1;

function configure(call, cb) {
  let conf;
  try {
    conf = JSON.parse(Buffer.from(call.request.config).toString('utf8'));
  } catch (e) {
    return cb({ code: grpc.status.INVALID_ARGUMENT, message: 'config: ' + e.message });
  }
  for (const k of Object.keys(conf)) {
    if (!['header', 'value', 'deny_path'].includes(k)) {
      return cb({ code: grpc.status.INVALID_ARGUMENT, message: 'config: unknown field "' + k + '"' });
    }
  }
  if (typeof conf.header !== 'string' || conf.header === '') {
    return cb({ code: grpc.status.INVALID_ARGUMENT, message: 'config: header: required string' });
  }
  const token = String(nextToken++);
  configs.set(token, conf);
  cb(null, { token });
}

function requestHeaders(call, cb) {
  const conf = configs.get(String(call.request.token));
  if (!conf) {
    return cb({ code: grpc.status.NOT_FOUND, message: 'unknown configuration token' });
  }
  if (conf.deny_path && call.request.path === conf.deny_path) {
    return cb(null, { status: 403, body: Buffer.from('denied by js plugin') });
  }
  cb(null, { set_headers: [{ key: conf.header, value: conf.value || '' }] });
}

function empty(call, cb) { cb(null, {}); }

const server = new grpc.Server();
server.addService(pluginPkg.Plugin.service, {
  Configure: configure,
  RequestHeaders: requestHeaders,
  RequestBody: requestHeaders,
  ResponseHeaders: empty,
  ResponseBody: empty,
});
server.addService(healthPkg.Health.service, {
  Check: (call, cb) => {
    if (call.request.service === 'plugin' || call.request.service === '') {
      return cb(null, { status: 'SERVING' });
    }
    cb(null, { status: 'SERVICE_UNKNOWN' });
  },
});

const dir = process.env.MESHAGENT_PLUGIN_SOCKET_DIR || os.tmpdir();
const sock = path.join(dir, 'plugin-' + process.pid + '.sock');
server.bindAsync('unix://' + sock, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error('listen: ' + err.message);
    process.exit(1);
  }
  // The handshake line: CORE|APP|NETWORK|ADDR|PROTOCOL.
  process.stdout.write('1|1|unix|' + sock + '|grpc\n');
});

process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
// Exit when meshagent goes away.
const ppid = process.ppid;
setInterval(() => { if (process.ppid !== ppid) process.exit(0); }, 1000).unref();
