#!/usr/bin/env python3
"""Regenerates spec/vectors/*.json with foundry's `cast` as an implementation independent of both
our Solidity and our Rust code. Both test suites check every case; neither generated them.

Run from anywhere after `npm ci`: python3 spec/gen-vectors.py
The mesh-IP cases named in DESIGN §3.2 are asserted here too, so a drift in the formula fails loudly.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAST = os.path.join(ROOT, "node_modules", "@foundry-rs", "cast-linux-amd64", "bin", "cast")
OUT = os.path.join(ROOT, "spec", "vectors")


def cast(*args):
    r = subprocess.run([CAST, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"cast {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def keccak_hex(data_hex):
    return cast("keccak", data_hex)


def abi_encode(sig, *args):
    return cast("abi-encode", sig, *[str(a) for a in args])


def b32(n):
    return "0x" + n.to_bytes(32, "big").hex()


def addr(n):
    return cast("to-check-sum-address", "0x" + n.to_bytes(20, "big").hex())


def dotted(ip):
    return ".".join(str((ip >> s) & 0xFF) for s in (24, 16, 8, 0))


def mesh_ip(cidr_ip, prefix, member_id):
    hosts = 1 << (32 - prefix)
    h = keccak_hex(abi_encode("f(bytes32)", member_id))
    low = int(h[-8:], 16)
    return cidr_ip | ((low % (hosts - 2)) + 1)


def write(name, doc):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {path} ({len(doc['cases'])} cases)")


def main():
    os.makedirs(OUT, exist_ok=True)

    # Mesh IPs (DESIGN §3.2), including the three normative cases.
    cases = []
    for cidr_ip, prefix, ids in [
        (0x0A0D0000, 16, [1, 2, 0xAA, 0xDEADBEEF, (1 << 256) - 1]),
        (0x0A000000, 8, [1, 7, 1 << 200]),
        (0xC0A80100, 24, [1, 2, 3, 0x1234]),
        (0x64400000, 10, [5, 99]),
        (0xAC100004, 30, [1, 2, 3, 4, 5]),
    ]:
        for n in ids:
            mid = b32(n)
            ip = mesh_ip(cidr_ip, prefix, mid)
            cases.append({"cidr_ip": cidr_ip, "prefix": prefix, "member_id": mid, "ip": ip, "dotted": dotted(ip)})
    normative = {1: 168656109, 2: 168665671, 0xAA: 168680749}
    for c in cases:
        if c["cidr_ip"] == 0x0A0D0000 and int(c["member_id"], 16) in normative:
            assert c["ip"] == normative[int(c["member_id"], 16)], f"DESIGN §3.2 vector mismatch: {c}"
    write("mesh_ips.json", {
        "description": "ip = cidrIp | ((uint32(keccak256(abi.encode(memberId))) mod (2^(32-prefix) - 2)) + 1)",
        "cases": cases,
    })

    # Member ids.
    dstack_id = keccak_hex(cast("from-utf8", "attestmesh.attestor.dstack.v1"))
    cases = []
    for cl, mc, att in [
        (addr(0xC1), addr(0xA1), dstack_id),
        (addr(0xC1), addr(0xA2), dstack_id),
        (addr(0xC2), addr(0xA1), dstack_id),
        (addr(0x5FbDB2315678afecb367f032d93F642f64180aa3), addr(0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512), dstack_id),
        (addr(0xC1), addr(0xA1), b32(0)),
    ]:
        mid = keccak_hex(abi_encode("f(address,address,bytes32)", cl, mc, att))
        cases.append({"cluster": cl, "member_contract": mc, "attestor_id": att, "member_id": mid})
    write("member_ids.json", {
        "description": "memberId = keccak256(abi.encode(cluster, memberContract, attestorId)); "
        "attestor_id_dstack = keccak256(\"attestmesh.attestor.dstack.v1\")",
        "attestor_id_dstack": dstack_id,
        "cases": cases,
    })

    # Binding hashes and their EIP-191 digests.
    cases = []
    for i, (cl, mc) in enumerate([(0xC1, 0xA1), (0xC1, 0xA2), (0xC2, 0xA1)]):
        x = keccak_hex(cast("from-utf8", f"x{i}"))
        wg = keccak_hex(cast("from-utf8", f"wg{i}"))
        ed = keccak_hex(cast("from-utf8", f"ed{i}"))
        enc = abi_encode("f(string,address,address,bytes32,bytes32,bytes32)", "attestmesh.bind.v1",
                         addr(cl), addr(mc), x, wg, ed)
        h = keccak_hex(enc)
        eth = keccak_hex("0x" + b"\x19Ethereum Signed Message:\n32".hex() + h[2:])
        cases.append({"cluster": addr(cl), "member_contract": addr(mc), "x_pub_key": x, "wg_pub_key": wg,
                      "ed_pub_key": ed, "bind_hash": h, "eth_signed_hash": eth})
    write("binding_hashes.json", {
        "description": "bind_hash = keccak256(abi.encode(\"attestmesh.bind.v1\", cluster, memberContract, x, wg, ed)); "
        "eth_signed_hash = keccak256(\"\\x19Ethereum Signed Message:\\n32\" ‖ bind_hash)",
        "cases": cases,
    })

    # ERC-7201 slots.
    cases = []
    for name in ["Diamond", "Attest", "Message", "Network", "Dstack", "ClusterMember"]:
        ns = f"attestmesh.storage.{name}"
        inner = int(keccak_hex(cast("from-utf8", ns)), 16) - 1
        slot = int(keccak_hex(abi_encode("f(uint256)", inner)), 16) & ~0xFF
        cases.append({"id": ns, "slot": b32(slot)})
    write("erc7201_slots.json", {
        "description": "slot = keccak256(abi.encode(uint256(keccak256(id)) - 1)) & ~bytes32(uint256(0xff))",
        "cases": cases,
    })

    # Selectors the off-chain code depends on (functions, errors, events).
    sigs = [
        "dstack_register((bytes,bytes,bytes,bytes,string,bytes),address,bytes32,bytes32,bytes32)",
        "send(bytes32,bytes32,bytes)",
        "sendOwnerCommand(bytes32,bytes32,bytes)",
        "setCskCommitment(bytes32)",
        "publishWgKey(bytes32)",
        "execute(address,uint256,bytes)",
        "isClusterMember(address)",
        "memberIdOf(address)",
        "memberOf(address)",
        "memberById(bytes32)",
        "listMembers()",
        "memberCount()",
        "clusterOwner()",
        "meshCidr()",
        "meshIpOf(bytes32)",
        "cskCommitment()",
        "wgPubKeyOf(bytes32)",
        "edPubKeyOf(bytes32)",
        "isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[]))",
        "cluster()",
        "owner()",
        "deployMember(address,bytes32)",
        "predictMemberAddress(address,bytes32)",
        "isOurMember(address)",
        "current()",
        "NotClusterMember()",
        "RecipientNotMember()",
        "DuplicateEnvelope()",
        "AlreadyRegistered()",
        "NotOriginator()",
        "CskCommitmentAlreadySet()",
        "NotOurMember()",
        "InvalidSigChain()",
        "BindingMismatch()",
        "InvalidPubKeyLength()",
        "PointNotOnCurve()",
        "InvalidBootstrapCall()",
        "WgKeyInUse()",
        "WgKeyLowOrder()",
        "WgKeyNotCanonical()",
    ]
    cases = [{"signature": s, "selector": cast("sig", s)} for s in sigs]
    events = [
        "MemberRegistered(bytes32,address,bytes32,bytes32,bytes32,bytes32)",
        "MessageSent(bytes32,bytes32,bytes32,bytes)",
        "CskCommitmentSet(bytes32)",
        "WgKeyPublished(bytes32,bytes32)",
        "DstackMemberRegistered(bytes32,address)",
        "ClusterDeployed(address,address,bytes32)",
        "IndexerUpdated(string,bytes32,bytes32,uint64)",
    ]
    write("selectors.json", {
        "description": "selector = first 4 bytes of keccak256(signature); event topic0 = keccak256(signature)",
        "cases": cases,
        "events": [{"signature": e, "topic0": cast("keccak", e)} for e in events],
    })

    # Compressed secp256k1 public keys and their Ethereum addresses.
    cases = []
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    for k in [1, 2, 3, 0xDEADBEEF, n - 1, int(keccak_hex(cast("from-utf8", "attestmesh owner")), 16) % n,
              int(keccak_hex(cast("from-utf8", "attestmesh kms root")), 16) % n]:
        pk = b32(k)
        pub = cast("wallet", "public-key", "--private-key", pk)[2:]
        x, y = pub[:64], pub[64:]
        prefix = "03" if int(y, 16) & 1 else "02"
        cases.append({"private_key": pk, "compressed": "0x" + prefix + x,
                      "address": cast("wallet", "address", "--private-key", pk)})
    assert {c["compressed"][2:4] for c in cases} == {"02", "03"}, "need both parities"
    write("compressed_keys.json", {
        "description": "compressed = (0x02 | y parity) ‖ x; address = last 20 bytes of keccak256(x ‖ y)",
        "cases": cases,
    })

    write("wg_keys.json", wg_key_vectors())


def _ladder_x25519(k, u):
    """[k]P on Curve25519 by the x-only Montgomery ladder (RFC 7748 formulas); returns (X, Z)."""
    p = 2**255 - 19
    x1, x2, z2, x3, z3, swap = u % p, 1, 0, u % p, 1, 0
    for t in reversed(range(k.bit_length())):
        kt = (k >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a, b = (x2 + z2) % p, (x2 - z2) % p
        aa, bb = a * a % p, b * b % p
        e = (aa - bb) % p
        c, d = (x3 + z3) % p, (x3 - z3) % p
        da, cb = d * a % p, c * b % p
        x3, z3 = (da + cb) ** 2 % p, x1 * (da - cb) ** 2 % p
        x2, z2 = aa * bb % p, e * (aa + 121665 * e) % p
    if swap:
        x2, z2 = x3, z3
    return x2, z2


def wg_key_vectors():
    """WireGuard (X25519) public keys as the cluster stores them: bytes32 byte i = key byte i
    (little-endian u). low_order: [8]P is the identity (checked here with the ladder, for every
    candidate); canonical: bit 255 clear and u < p."""
    p = 2**255 - 19
    small = [0, 1, p - 1,
             325606250916557431795983626356110631294008115727848805560023387167927233504,
             39382357235489614581723060781553021112529911719440698176882885853963445705823]
    cases = []

    def key(v):
        return "0x" + v.to_bytes(32, "little").hex()

    for u in small + [p, p + 1]:
        assert _ladder_x25519(8, u)[1] == 0, f"u={u} is not of small order"
        cases.append({"key": key(u), "low_order": True, "canonical": u < p})
        cases.append({"key": key(u | 1 << 255), "low_order": True, "canonical": False})
    for u in [9, 2, p + 2, 2**255 - 1, int(keccak_hex(cast("from-utf8", "attestmesh wg key")), 16) % p]:
        assert _ladder_x25519(8, u)[1] != 0, f"u={u} is of small order"
        cases.append({"key": key(u), "low_order": False, "canonical": u < p})
        cases.append({"key": key(u | 1 << 255), "low_order": False, "canonical": False})
    return {
        "description": "key = little-endian u (bytes32 byte i = key byte i); low_order: [8]P = O in any "
                       "encoding (bit 255 ignored, u mod p); canonical: bit 255 clear and u < 2^255 - 19",
        "cases": cases,
    }


if __name__ == "__main__":
    main()
