// Preloaded into fauxqs with `node --require` by tools/emu/engines.
//
// fauxqs 1.x hard-codes `app.listen({ host: "0.0.0.0" })` and has no option or
// environment variable for the bind address (FAUXQS_HOST only changes the host
// written into queue URLs). This patch makes every TCP server in the process
// bind to 127.0.0.1 instead of a wildcard address, so the emulator is not
// reachable from other machines.
"use strict";

const net = require("node:net");

const LOOPBACK = "127.0.0.1";
const WILDCARDS = new Set([undefined, null, "", "0.0.0.0", "::", "[::]"]);
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listen(...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    // listen(options[, callback]); options without port/host (e.g. a handle or
    // a unix socket path) are left alone.
    if (first.path === undefined && first.handle === undefined && first.fd === undefined &&
        WILDCARDS.has(first.host)) {
      args[0] = { ...first, host: LOOPBACK, ipv6Only: false };
    }
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === "string") {
      if (WILDCARDS.has(args[1])) args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  } else if (first === undefined || typeof first === "function") {
    // listen([callback]): random port on all interfaces -> random port on loopback
    args.splice(0, 0, 0, LOOPBACK);
  }
  return originalListen.apply(this, args);
};

// fauxqs 1.x also hard-codes Fastify's bodyLimit to 11 MiB, so one S3
// PutObject (or pre-signed PUT) above 11 MiB fails with 413, where real S3
// takes up to 5 GiB. fauxqs-hooks.mjs rewrites that constant when fauxqs's
// app.js is loaded (FAUXQS_BODY_LIMIT_MB, default 1024; bodies live in memory).
// (--require runs again in Node's module-hooks worker thread: register once.)
if (require("node:worker_threads").isMainThread) {
  require("node:module").register("./fauxqs-hooks.mjs", require("node:url").pathToFileURL(__filename));
}
