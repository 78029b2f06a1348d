// Preloaded into the alto bundler (node --import) by attestmesh-chain's devstack.
//
// alto 0.0.x hard-codes `listen({ host: "0.0.0.0" })` and has no flag to change it; a dev bundler
// holding executor keys must not be reachable from the network. This forces every TCP listener
// in the process onto ATTESTMESH_LISTEN_HOST (default 127.0.0.1). Unix-socket listeners and
// outgoing connections are untouched.
import net from "node:net";

const host = process.env.ATTESTMESH_LISTEN_HOST || "127.0.0.1";
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    if (first.path === undefined && first.handle === undefined && first.fd === undefined) {
      args[0] = { ...first, host };
    }
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === "string") {
      args[1] = host;
    } else {
      args.splice(1, 0, host);
    }
  }
  return listen.apply(this, args);
};
