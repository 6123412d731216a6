// strackt's sample app that binds its own port, for the deploy tests of `mode: proxy`: plain
// Node (Debian's nodejs, no npm packages), listening on the HOST:PORT strackt gives it — or, in
// socket mode, on the socket systemd passes (LISTEN_FDS: fd 3), so one app can change modes.
//
//   node server.js          serve
//   node server.js --check  validate: the release can start (its VERSION file is there)
//
// GET / answers the release's version, /health "ok VERSION" (or 500 while a FAIL_HEALTH file
// is in the release: the tests' "broken release"), /slow after 3 s. On SIGTERM it stops
// accepting, finishes the requests it holds, and exits.
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");

// A release without its VERSION file cannot start.
const version = fs.readFileSync(path.join(__dirname, "VERSION"), "utf8").trim();
if (process.argv.includes("--check")) {
  console.log(`release ${version} can start`);
  process.exit(0);
}
const failHealth = fs.existsSync(path.join(__dirname, "FAIL_HEALTH"));

const server = http.createServer((req, res) => {
  const answer = (code, body) => {
    res.writeHead(code, { "Content-Type": "text/plain" });
    res.end(body);
  };
  if (req.url === "/") {
    answer(200, `version ${version}\n`);
  } else if (req.url === "/health") {
    answer(failHealth ? 500 : 200, failHealth ? "broken\n" : `ok ${version}\n`);
  } else if (req.url === "/slow") {
    setTimeout(() => answer(200, `slow ${version}\n`), 3000);
  } else {
    answer(404, "not found\n");
  }
});

const where = process.env.LISTEN_FDS
  ? { fd: 3 }
  : { port: Number(process.env.PORT), host: process.env.HOST || "127.0.0.1" };
server.listen(where, () => {
  console.log(`version ${version} listening on ${JSON.stringify(where)}`);
});

process.on("SIGTERM", () => {
  // Stop accepting; idle keep-alive connections are closed so `close` can finish once the
  // requests in flight are answered.
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
