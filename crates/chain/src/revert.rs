//! Turning revert data into names an operator can act on.
//!
//! A sponsored operation can fail in three places, and each reports differently: the EntryPoint
//! rejects it during validation with `FailedOp(opIndex, "AAxx …")` /
//! `FailedOpWithRevert(opIndex, "AAxx …", inner)`; the bundler forwards those as JSON-RPC errors
//! with the same `AAxx` text; and an inner call that reverts on chain leaves raw revert bytes in
//! the receipt (`UserOperationRevertReason`). All of them end in [`ContractError`], so callers
//! match on the generated error type (`e.is::<IMessageFacet::DuplicateEnvelope>()`) instead of hex
//! or names.

use std::fmt;

use alloy_primitives::{Bytes, U256};
use alloy_sol_types::{SolError, SolValue};

use crate::bindings::impls::{
    AttestFacet, ClusterDiamond, ClusterInit, ClusterMemberFactory, DiamondCutFacet, DstackFacet,
    IndexerRegistry, MessageFacet, NetworkFacet, OwnershipFacet, Secp256k1,
};
use crate::bindings::{
    ClusterDiamondFactory, ClusterMember, EntryPoint, IDstackApp, SponsorPaymaster,
};

/// A decoded revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractError {
    /// One of our contracts' custom errors (or the EntryPoint's), by name; `args` is the
    /// ABI-encoded argument tail (empty for argument-less errors).
    Custom {
        name: &'static str,
        selector: [u8; 4],
        args: Bytes,
    },
    /// `Error(string)` (`require` with a message, OpenZeppelin's older errors).
    Message(String),
    /// `Panic(uint256)` (arithmetic overflow, bad array index, …).
    Panic(U256),
    /// The EntryPoint's `FailedOp`/`FailedOpWithRevert`: the `AAxx` code tells which phase
    /// refused the operation; `inner` is what the account or paymaster reverted with.
    EntryPoint {
        aa: Option<AaCode>,
        reason: String,
        inner: Option<Box<ContractError>>,
    },
    /// Revert without data (`revert()`, out of gas in a sub-call).
    Empty,
    /// Data we do not know how to read.
    Unknown(Bytes),
}

/// An ERC-4337 `AAxx` code: the tens digit names the entity (1 factory, 2 account, 3 paymaster,
/// 9 bundler/EntryPoint), the units the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AaCode(pub u8);

impl AaCode {
    /// Parses the code at the start of an EntryPoint reason or bundler message ("AA23 reverted").
    pub fn find(text: &str) -> Option<Self> {
        let i = text.find("AA")?;
        let digits = text.get(i + 2..i + 4)?;
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok().map(AaCode)
        } else {
            None
        }
    }

    /// Who refused: the account (AA2x), the paymaster (AA3x), the factory (AA1x) or the
    /// EntryPoint/bundler itself (AA9x).
    pub fn entity(self) -> &'static str {
        match self.0 / 10 {
            1 => "factory",
            2 => "account",
            3 => "paymaster",
            4 => "verification gas",
            5 => "postOp",
            _ => "entry point",
        }
    }
}

impl fmt::Display for AaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AA{:02}", self.0)
    }
}

/// Signature lookups of every contract's error list, generated from the artifacts: every
/// implementation artifact (its ABI lists the errors of the libraries it uses too), the
/// EntryPoint, and the stock dstack app. A contract's new error is known here without an edit.
/// Finds an error's signature by its selector in one contract's error list.
type SignatureLookup = fn([u8; 4]) -> Option<&'static str>;

const KNOWN: &[SignatureLookup] = &[
    AttestFacet::AttestFacetErrors::signature_by_selector,
    DstackFacet::DstackFacetErrors::signature_by_selector,
    MessageFacet::MessageFacetErrors::signature_by_selector,
    NetworkFacet::NetworkFacetErrors::signature_by_selector,
    ClusterMember::ClusterMemberErrors::signature_by_selector,
    ClusterMemberFactory::ClusterMemberFactoryErrors::signature_by_selector,
    ClusterDiamondFactory::ClusterDiamondFactoryErrors::signature_by_selector,
    ClusterDiamond::ClusterDiamondErrors::signature_by_selector,
    ClusterInit::ClusterInitErrors::signature_by_selector,
    DiamondCutFacet::DiamondCutFacetErrors::signature_by_selector,
    OwnershipFacet::OwnershipFacetErrors::signature_by_selector,
    IndexerRegistry::IndexerRegistryErrors::signature_by_selector,
    SponsorPaymaster::SponsorPaymasterErrors::signature_by_selector,
    Secp256k1::Secp256k1Errors::signature_by_selector,
    EntryPoint::EntryPointErrors::signature_by_selector,
    IDstackApp::IDstackAppErrors::signature_by_selector,
];

/// The signature (`Name(types)`) of a known custom error's selector.
fn known_signature(sel: [u8; 4]) -> Option<&'static str> {
    KNOWN.iter().find_map(|lookup| lookup(sel))
}

const ERROR_STRING: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
const PANIC: [u8; 4] = [0x4e, 0x48, 0x7b, 0x71];

/// Decodes revert bytes. Never fails: unknown data comes back as [`ContractError::Unknown`].
pub fn decode(data: &[u8]) -> ContractError {
    if data.is_empty() {
        return ContractError::Empty;
    }
    if data.len() < 4 {
        return ContractError::Unknown(Bytes::copy_from_slice(data));
    }
    let sel: [u8; 4] = [data[0], data[1], data[2], data[3]];
    let tail = &data[4..];
    if sel == ERROR_STRING {
        if let Ok(s) = String::abi_decode(tail) {
            return ContractError::Message(s);
        }
    } else if sel == PANIC {
        if let Ok(code) = U256::abi_decode(tail) {
            return ContractError::Panic(code);
        }
    } else if sel == EntryPoint::FailedOp::SELECTOR {
        if let Ok(e) = EntryPoint::FailedOp::abi_decode(data) {
            return ContractError::EntryPoint {
                aa: AaCode::find(&e.reason),
                reason: e.reason,
                inner: None,
            };
        }
    } else if sel == EntryPoint::FailedOpWithRevert::SELECTOR {
        if let Ok(e) = EntryPoint::FailedOpWithRevert::abi_decode(data) {
            return ContractError::EntryPoint {
                aa: AaCode::find(&e.reason),
                reason: e.reason,
                inner: Some(Box::new(decode(&e.inner))),
            };
        }
    } else if let Some(sig) = known_signature(sel) {
        return ContractError::Custom {
            selector: sel,
            name: sig.split('(').next().unwrap_or(sig),
            args: Bytes::copy_from_slice(tail),
        };
    }
    ContractError::Unknown(Bytes::copy_from_slice(data))
}

impl ContractError {
    /// The custom error's name, looking through an EntryPoint wrapper.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            ContractError::Custom { name, .. } => Some(name),
            ContractError::EntryPoint { inner: Some(i), .. } => i.name(),
            _ => None,
        }
    }

    /// Whether this is the custom error `E` (looking through an EntryPoint wrapper), by
    /// selector: a typed check, so a renamed or re-typed contract error stops compiling here.
    pub fn is<E: SolError>(&self) -> bool {
        match self {
            ContractError::Custom { selector, .. } => *selector == E::SELECTOR,
            ContractError::EntryPoint { inner: Some(i), .. } => i.is::<E>(),
            _ => false,
        }
    }

    /// The `AAxx` code, if the EntryPoint refused the operation.
    pub fn aa(&self) -> Option<AaCode> {
        match self {
            ContractError::EntryPoint { aa, .. } => *aa,
            _ => None,
        }
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractError::Custom { name, args, .. } if args.is_empty() => write!(f, "{name}()"),
            ContractError::Custom { name, args, .. } => write!(f, "{name}({args})"),
            ContractError::Message(m) => write!(f, "Error({m:?})"),
            ContractError::Panic(c) => write!(f, "Panic(0x{c:x})"),
            ContractError::EntryPoint { reason, inner, .. } => match inner {
                Some(i) => write!(f, "{reason}: {i}"),
                None => f.write_str(reason),
            },
            ContractError::Empty => f.write_str("revert without data"),
            ContractError::Unknown(d) => write!(f, "unknown revert data {d}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selectors_pinned_by_vectors() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../spec/vectors/selectors.json")).unwrap();
        let mut checked = 0;
        for case in doc["cases"].as_array().unwrap() {
            let sig = case["signature"].as_str().unwrap();
            let Some(sel) = case["selector"].as_str() else {
                continue;
            };
            let Ok(bytes) = alloy_primitives::hex::decode(sel) else {
                panic!("bad selector {sel} in the vectors");
            };
            if let Ok(s) = <[u8; 4]>::try_from(bytes.as_slice())
                && let Some(known) = known_signature(s)
            {
                assert_eq!(known, sig, "{sel}");
                checked += 1;
            }
        }
        assert!(
            checked >= 10,
            "only {checked} error selectors in the vectors"
        );
    }

    #[test]
    fn decodes_custom_string_panic_and_entry_point_errors() {
        let dup = crate::bindings::IMessageFacet::DuplicateEnvelope {}.abi_encode();
        assert_eq!(decode(&dup).name(), Some("DuplicateEnvelope"));
        let in_use = crate::bindings::IAttestFacet::WgKeyInUse {}.abi_encode();
        assert_eq!(decode(&in_use).name(), Some("WgKeyInUse"));
        assert!(decode(&in_use).is::<crate::bindings::IAttestFacet::WgKeyInUse>());
        assert!(!decode(&in_use).is::<crate::bindings::IAttestFacet::WgKeyLowOrder>());
        let msg = [ERROR_STRING.as_slice(), &"nope".to_string().abi_encode()].concat();
        assert_eq!(decode(&msg), ContractError::Message("nope".into()));
        let panic = [PANIC.as_slice(), &U256::from(0x11).abi_encode()].concat();
        assert_eq!(decode(&panic), ContractError::Panic(U256::from(0x11)));
        let failed = EntryPoint::FailedOpWithRevert {
            opIndex: U256::ZERO,
            reason: "AA23 reverted".into(),
            inner: ClusterMember::InvalidBootstrapCall {}.abi_encode().into(),
        }
        .abi_encode();
        let d = decode(&failed);
        assert_eq!(d.aa(), Some(AaCode(23)));
        assert_eq!(d.name(), Some("InvalidBootstrapCall"));
        assert_eq!(d.to_string(), "AA23 reverted: InvalidBootstrapCall()");
        assert_eq!(decode(&[]), ContractError::Empty);
        assert!(matches!(
            decode(&[1, 2, 3, 4, 5]),
            ContractError::Unknown(_)
        ));
    }

    /// Every custom error of every committed artifact decodes by its name: the table above
    /// cannot fall behind the contracts.
    #[test]
    fn every_artifact_error_decodes_by_name() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../artifacts");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for item in doc["abi"].as_array().unwrap() {
                if item["type"] != "error" {
                    continue;
                }
                let name = item["name"].as_str().unwrap();
                let types: Vec<String> = item["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["type"].as_str().unwrap().to_string())
                    .collect();
                let sig = format!("{name}({})", types.join(","));
                let sel = alloy_primitives::keccak256(sig.as_bytes());
                let sel = [sel[0], sel[1], sel[2], sel[3]];
                assert_eq!(known_signature(sel), Some(sig.as_str()), "{path:?}");
                seen += 1;
            }
        }
        assert!(seen > 50, "only {seen} errors in the artifacts");
    }

    #[test]
    fn aa_codes() {
        assert_eq!(AaCode::find("AA33 reverted"), Some(AaCode(33)));
        assert_eq!(
            AaCode::find(
                "UserOperation reverted during simulation with reason: AA24 signature error"
            ),
            Some(AaCode(24))
        );
        assert_eq!(AaCode(33).entity(), "paymaster");
        assert_eq!(AaCode::find("AAx1"), None);
        assert_eq!(AaCode::find("no code"), None);
    }
}
