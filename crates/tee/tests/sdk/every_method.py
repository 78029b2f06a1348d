"""Calls every method of dstack's official Python SDK (`dstack-sdk` from PyPI) against the guest
agent at DSTACK_SIMULATOR_ENDPOINT and prints what came back as one JSON object.

The SDK's own models parse every answer (pydantic: a missing or mistyped field fails here), and
its `replay_rtmrs` replays the event log; the Rust test (`official_sdks.rs`) checks the values
against the KMS formulas and the quote layout.
"""
import json
import sys

from dstack_sdk import DstackClient


def main() -> None:
    c = DstackClient()
    out = {"sdk_version": __import__("importlib.metadata").metadata.version("dstack-sdk")}
    out["reachable"] = c.is_reachable()
    v = c.version()
    out["version"] = {"version": v.version, "rev": v.rev}

    info = c.info()
    tcb = info.tcb_info
    out["info"] = {
        "app_id": info.app_id,
        "instance_id": info.instance_id,
        "app_name": info.app_name,
        "compose_hash": info.compose_hash,
        "app_cert": info.app_cert,
        "tcb": {
            "mrtd": tcb.mrtd,
            "rtmr": [tcb.rtmr0, tcb.rtmr1, tcb.rtmr2, tcb.rtmr3],
            "compose_hash": tcb.compose_hash,
            "app_compose": tcb.app_compose,
            "events": [e.event for e in tcb.event_log],
        },
    }

    k = c.get_key("attestmesh/sdk-test", "ethereum")
    out["key"] = {"key": k.decode_key().hex(), "chain": [s.hex() for s in k.decode_signature_chain()]}
    ke = c.get_key("attestmesh/sdk-test", "ed25519-purpose", algorithm="ed25519")
    out["key_ed25519"] = {"key": ke.key, "chain": ke.signature_chain}

    q = c.get_quote(b"attestmesh sdk test report data")
    out["quote"] = {
        "quote": q.decode_quote().hex(),
        "report_data": q.report_data,
        "replayed": [q.replay_rtmrs()[i] for i in range(4)],
        "events": [e.event for e in q.decode_event_log()],
    }
    c.emit_event("attestmesh-sdk-test", b"payload")
    q2 = c.get_quote(b"after emit")
    out["quote_after_emit"] = {
        "quote": q2.decode_quote().hex(),
        "replayed": [q2.replay_rtmrs()[i] for i in range(4)],
        "events": [e.event for e in q2.decode_event_log()],
    }

    a = c.attest(b"attest report data")
    out["attest"] = a.decode_attestation().hex()

    t = c.get_tls_key(
        subject="sdk-test.example",
        alt_names=["sdk-test.example", "localhost"],
        usage_ra_tls=True,
        usage_server_auth=True,
        usage_client_auth=True,
    )
    out["tls"] = {"key": t.key, "chain": t.certificate_chain, "der_len": len(t.as_uint8array())}

    out["sign"] = {}
    data = b"attestmesh sdk test message"
    for alg, msg in [
        ("ed25519", data),
        ("secp256k1", data),
        ("secp256k1_prehashed", bytes(range(32))),
    ]:
        s = c.sign(alg, msg)
        ok = c.verify(alg, msg, s.decode_signature(), s.decode_public_key()).valid
        bad = c.verify(alg, msg + b"!" if alg != "secp256k1_prehashed" else bytes(32),
                       s.decode_signature(), s.decode_public_key()).valid
        out["sign"][alg] = {
            "data": msg.hex(),
            "signature": s.signature,
            "chain": s.signature_chain,
            "public_key": s.public_key,
            "verified": ok,
            "tampered_verified": bad,
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
