#!/usr/bin/env python3
"""Regenerates spec/vectors/userop.json with foundry's `cast` only (no Rust, no Solidity of ours).

What each case pins (DESIGN §3.8, §10):
  packed fields     initCode = factory ‖ factoryData; accountGasLimits = verificationGasLimit(16) ‖
                    callGasLimit(16); gasFees = maxPriorityFeePerGas(16) ‖ maxFeePerGas(16);
                    paymasterAndData = paymaster(20) ‖ pmVerificationGasLimit(16) ‖
                    pmPostOpGasLimit(16) ‖ validUntil(6) ‖ validAfter(6) ‖ signature(65)
  user_op_hash      EntryPoint v0.7 getUserOpHash: keccak256(abi.encode(keccak256(abi.encode(
                    sender, nonce, keccak(initCode), keccak(callData), accountGasLimits,
                    preVerificationGas, gasFees, keccak(paymasterAndData))), entryPoint, chainId))
  sponsor_hash      SponsorPaymaster.getHash: keccak256(abi.encode(sender, nonce, keccak(initCode),
                    keccak(callData), accountGasLimits, bytes32(paymasterAndData[20:52]),
                    preVerificationGas, gasFees, chainId, paymaster, uint48 validUntil,
                    uint48 validAfter))
  sponsor_signature `cast wallet sign` (EIP-191 personal sign, RFC 6979) of sponsor_hash by
                    signer_key; the same signature is what paymasterAndData carries.

Run after `npm ci`: python3 spec/gen-userop-vectors.py
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAST = os.path.join(ROOT, "node_modules", "@foundry-rs", "cast-linux-amd64", "bin", "cast")
OUT = os.path.join(ROOT, "spec", "vectors", "userop.json")
ENTRY_POINT = "0x0000000071727De22E5E9d8BAf0edAc6f37da032"
SIGNER_KEY = "0x" + "5e" * 32


def cast(*args):
    r = subprocess.run([CAST, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"cast {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def keccak(hex_data):
    return cast("keccak", hex_data)


def h(n, width):
    return n.to_bytes(width, "big").hex()


def case(name, chain_id, sender, nonce, factory, factory_data, call_data, cgl, vgl, pvg, max_fee, max_prio,
         paymaster, pm_vgl, pm_pogl, valid_until, valid_after):
    init_code = "0x" + (factory[2:].lower() + factory_data[2:] if factory else "")
    account_gas_limits = "0x" + h(vgl, 16) + h(cgl, 16)
    gas_fees = "0x" + h(max_prio, 16) + h(max_fee, 16)
    static_pm = paymaster[2:].lower() + h(pm_vgl, 16) + h(pm_pogl, 16)
    pm_gas_word = "0x" + h(pm_vgl, 16) + h(pm_pogl, 16)
    sponsor_hash = keccak(cast(
        "abi-encode", "f(address,uint256,bytes32,bytes32,bytes32,bytes32,uint256,bytes32,uint256,address,uint48,uint48)",
        sender, str(nonce), keccak(init_code), keccak(call_data), account_gas_limits, pm_gas_word, str(pvg),
        gas_fees, str(chain_id), paymaster, str(valid_until), str(valid_after)))
    signature = cast("wallet", "sign", "--private-key", SIGNER_KEY, sponsor_hash)
    paymaster_data = "0x" + h(valid_until, 6) + h(valid_after, 6) + signature[2:]
    paymaster_and_data = "0x" + static_pm + paymaster_data[2:]
    inner = keccak(cast(
        "abi-encode", "f(address,uint256,bytes32,bytes32,bytes32,uint256,bytes32,bytes32)",
        sender, str(nonce), keccak(init_code), keccak(call_data), account_gas_limits, str(pvg), gas_fees,
        keccak(paymaster_and_data)))
    user_op_hash = keccak(cast("abi-encode", "f(bytes32,address,uint256)", inner, ENTRY_POINT, str(chain_id)))
    return {
        "name": name,
        "chain_id": chain_id,
        "user_op": {
            "sender": sender, "nonce": hex(nonce), "factory": factory, "factoryData": factory_data,
            "callData": call_data, "callGasLimit": hex(cgl), "verificationGasLimit": hex(vgl),
            "preVerificationGas": hex(pvg), "maxFeePerGas": hex(max_fee), "maxPriorityFeePerGas": hex(max_prio),
            "paymaster": paymaster, "paymasterVerificationGasLimit": hex(pm_vgl),
            "paymasterPostOpGasLimit": hex(pm_pogl), "paymasterData": paymaster_data, "signature": "0x",
        },
        "valid_until": valid_until,
        "valid_after": valid_after,
        "packed": {
            "initCode": init_code, "accountGasLimits": account_gas_limits, "gasFees": gas_fees,
            "paymasterAndData": paymaster_and_data,
        },
        "sponsor_hash": sponsor_hash,
        "sponsor_signature": signature,
        "user_op_hash": user_op_hash,
    }


def main():
    execute_sel = cast("sig", "execute(address,uint256,bytes)")
    inner = cast("calldata", "setCskCommitment(bytes32)", "0x" + "ab" * 32)
    call_data = cast("calldata", "execute(address,uint256,bytes)", "0x00000000000000000000000000000000000000C1", "0",
                     inner)
    assert call_data.startswith(execute_sel)
    cases = [
        case("deployed account, sponsored execute", 31337, "0x00000000000000000000000000000000000000A1", 0, None, "0x",
             call_data, 150_000, 300_000, 60_000, 2_000_000_000, 1_000_000_000,
             "0x00000000000000000000000000000000000000E1", 75_000, 0, 1_900_000_000, 0),
        case("base mainnet, key/sequence nonce", 8453, "0x1111111111111111111111111111111111111111",
             (0xDEADBEEF << 64) | 42, None, "0x", "0x", 1, 2, 3, 4, 5,
             "0x2222222222222222222222222222222222222222", 100_000, 30_000, (1 << 48) - 1, 1_700_000_000),
        case("with factory", 1, "0x3333333333333333333333333333333333333333", 1,
             "0x4444444444444444444444444444444444444444", "0xc83ad2fc" + "00" * 64, call_data,
             (1 << 128) - 1, 1 << 100, (1 << 255), (1 << 128) - 1, 0,
             "0x5555555555555555555555555555555555555555", (1 << 128) - 1, (1 << 128) - 1, 0, 0),
    ]
    doc = {
        "description": __doc__.split("Run after")[0].strip(),
        "entry_point": ENTRY_POINT,
        "signer_key": SIGNER_KEY,
        "signer_address": cast("wallet", "address", "--private-key", SIGNER_KEY),
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
