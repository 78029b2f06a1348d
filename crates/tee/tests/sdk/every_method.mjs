// Calls every method of dstack's official JavaScript SDK (`@phala/dstack-sdk` from npm, a
// devDependency in package.json) against the guest agent at DSTACK_SIMULATOR_ENDPOINT and prints
// what came back as one JSON object, in the shape `official_sdks.rs` checks for every SDK.
import { DstackClient } from "@phala/dstack-sdk";

const hex = (u8) => Buffer.from(u8).toString("hex");
const bytes = (s) => new Uint8Array(Buffer.from(s, "utf8"));

const c = new DstackClient();
const out = {};
out.reachable = await c.isReachable();
const v = await c.version();
out.version = { version: v.version, rev: v.rev };

const info = await c.info();
const tcb = info.tcb_info;
out.info = {
  app_id: info.app_id,
  instance_id: info.instance_id,
  app_name: info.app_name,
  compose_hash: info.compose_hash,
  app_cert: info.app_cert,
  tcb: {
    mrtd: tcb.mrtd,
    rtmr: [tcb.rtmr0, tcb.rtmr1, tcb.rtmr2, tcb.rtmr3],
    compose_hash: tcb.compose_hash,
    app_compose: tcb.app_compose,
    events: tcb.event_log.map((e) => e.event),
  },
};

const k = await c.getKey("attestmesh/sdk-test", "ethereum");
out.key = { key: hex(k.key), chain: k.signature_chain.map(hex) };
const ke = await c.getKey("attestmesh/sdk-test", "ed25519-purpose", "ed25519");
out.key_ed25519 = { key: hex(ke.key), chain: ke.signature_chain.map(hex) };

const quote = async (rd) => {
  const q = await c.getQuote(bytes(rd));
  return {
    quote: q.quote.replace(/^0x/, ""),
    report_data: q.report_data,
    replayed: q.replayRtmrs().map((r) => r.replace(/^0x/, "")),
    events: JSON.parse(q.event_log).map((e) => e.event),
  };
};
out.quote = await quote("attestmesh sdk test report data");
await c.emitEvent("attestmesh-sdk-test", bytes("payload"));
out.quote_after_emit = await quote("after emit");

const a = await c.attest(bytes("attest report data"));
out.attest = a.attestation;

const t = await c.getTlsKey({
  subject: "sdk-test.example",
  altNames: ["sdk-test.example", "localhost"],
  usageRaTls: true,
  usageServerAuth: true,
  usageClientAuth: true,
});
out.tls = { key: t.key, chain: t.certificate_chain };

out.sign = {};
const data = bytes("attestmesh sdk test message");
const digest = new Uint8Array([...Array(32).keys()]);
for (const [alg, msg, other] of [
  ["ed25519", data, bytes("attestmesh sdk test message!")],
  ["secp256k1", data, bytes("attestmesh sdk test message!")],
  ["secp256k1_prehashed", digest, new Uint8Array(32)],
]) {
  const s = await c.sign(alg, msg);
  const ok = (await c.verify(alg, msg, s.signature, s.public_key)).valid;
  const bad = (await c.verify(alg, other, s.signature, s.public_key)).valid;
  out.sign[alg] = {
    data: hex(msg),
    signature: hex(s.signature),
    chain: s.signature_chain.map(hex),
    public_key: hex(s.public_key),
    verified: ok,
    tampered_verified: bad,
  };
}
process.stdout.write(JSON.stringify(out));
