//! Turning revert data into names an operator can act on.
//!
//! A sponsored operation can fail in three places, and each reports differently: the EntryPoint
//! rejects it during validation with `FailedOp(opIndex, "AAxx …")` /
//! `FailedOpWithRevert(opIndex, "AAxx …", inner)`; the bundler forwards those as JSON-RPC errors
//! with the same `AAxx` text; and an inner call that reverts on chain leaves raw revert bytes in
//! the receipt (`UserOperationRevertReason`). All of them end in [`ContractError`], so callers
//! match on `ContractError::Custom { name: "DuplicateEnvelope", .. }` instead of hex.

use std::fmt;

use alloy_primitives::{Bytes, U256};
use alloy_sol_types::{SolError, SolValue};

use crate::bindings::{
    IAttestFacet, IAttestWrite, IClusterMemberAccount, IDstackFacet, IEntryPoint, IInfraErrors,
    IMessageFacet, INetworkFacet, ISponsorPaymaster,
};

/// A decoded revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractError {
    /// One of our contracts' custom errors (or the EntryPoint's), by name; `args` is the
    /// ABI-encoded argument tail (empty for argument-less errors).
    Custom { name: &'static str, args: Bytes },
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

macro_rules! known_errors {
    ($($path:path),* $(,)?) => {
        &[$((<$path as SolError>::SELECTOR, <$path as SolError>::SIGNATURE)),*]
    };
}

/// Every custom error of our contracts and the EntryPoint, by selector. Selectors come from the
/// `sol!` bindings; `selectors_pinned_by_vectors` checks them against spec/vectors.
const KNOWN: &[([u8; 4], &str)] = known_errors![
    IAttestFacet::AlreadyRegistered,
    IAttestWrite::NotOriginator,
    IAttestWrite::CskCommitmentAlreadySet,
    IAttestWrite::ZeroCommitment,
    IAttestWrite::UnknownMember,
    IAttestWrite::OnlyDiamond,
    IAttestWrite::NotClusterOwner,
    IAttestWrite::NotPendingClusterOwner,
    IAttestWrite::WgKeyInUse,
    IAttestWrite::WgKeyLowOrder,
    IAttestWrite::WgKeyNotCanonical,
    IDstackFacet::NotOurMember,
    IDstackFacet::InvalidSigChain,
    IDstackFacet::BindingMismatch,
    IDstackFacet::InvalidPubKeyLength,
    IDstackFacet::PointNotOnCurve,
    IMessageFacet::NotClusterMember,
    IMessageFacet::RecipientNotMember,
    IMessageFacet::DuplicateEnvelope,
    INetworkFacet::ZeroPubKey,
    IClusterMemberAccount::OnlyEntryPoint,
    IClusterMemberAccount::OnlyCluster,
    IClusterMemberAccount::OnlyClusterOwner,
    IClusterMemberAccount::OwnerAlreadySet,
    IClusterMemberAccount::InvalidBootstrapCall,
    IClusterMemberAccount::ZeroAddress,
    ISponsorPaymaster::InvalidPaymasterDataLength,
    IEntryPoint::PostOpReverted,
    IEntryPoint::SignatureValidationFailed,
    IInfraErrors::AlreadyInitialized,
    IInfraErrors::ClusterAlreadyDeployed,
    IInfraErrors::EmptyEndpoint,
    IInfraErrors::FacetHasNoCode,
    IInfraErrors::FunctionNotFound,
    IInfraErrors::InitCalldataWithoutInit,
    IInfraErrors::InitHasNoCode,
    IInfraErrors::InitializationFailed,
    IInfraErrors::InvalidDiamondOwner,
    IInfraErrors::InvalidMeshCidr,
    IInfraErrors::ModExpFailed,
    IInfraErrors::NoSelectorsInFacetCut,
    IInfraErrors::NotDiamondOwner,
    IInfraErrors::NotPendingDiamondOwner,
    IInfraErrors::RemoveFacetAddressMustBeZero,
    IInfraErrors::ReplaceWithSameFacet,
    IInfraErrors::SelectorAlreadyExists,
    IInfraErrors::SelectorNotFound,
];

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
    } else if sel == IEntryPoint::FailedOp::SELECTOR {
        if let Ok(e) = IEntryPoint::FailedOp::abi_decode(data) {
            return ContractError::EntryPoint {
                aa: AaCode::find(&e.reason),
                reason: e.reason,
                inner: None,
            };
        }
    } else if sel == IEntryPoint::FailedOpWithRevert::SELECTOR {
        if let Ok(e) = IEntryPoint::FailedOpWithRevert::abi_decode(data) {
            return ContractError::EntryPoint {
                aa: AaCode::find(&e.reason),
                reason: e.reason,
                inner: Some(Box::new(decode(&e.inner))),
            };
        }
    } else if let Some((_, sig)) = KNOWN.iter().find(|(s, _)| *s == sel) {
        return ContractError::Custom {
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
            ContractError::Custom { name, args } if args.is_empty() => write!(f, "{name}()"),
            ContractError::Custom { name, args } => write!(f, "{name}({args})"),
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
            if let Some((s, _)) = KNOWN.iter().find(|(_, k)| *k == sig) {
                assert_eq!(
                    format!("0x{}", alloy_primitives::hex::encode(s)),
                    sel,
                    "{sig}"
                );
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
        let dup = IMessageFacet::DuplicateEnvelope {}.abi_encode();
        assert_eq!(decode(&dup).name(), Some("DuplicateEnvelope"));
        let in_use = IAttestWrite::WgKeyInUse {}.abi_encode();
        assert_eq!(decode(&in_use).name(), Some("WgKeyInUse"));
        let msg = [ERROR_STRING.as_slice(), &"nope".to_string().abi_encode()].concat();
        assert_eq!(decode(&msg), ContractError::Message("nope".into()));
        let panic = [PANIC.as_slice(), &U256::from(0x11).abi_encode()].concat();
        assert_eq!(decode(&panic), ContractError::Panic(U256::from(0x11)));
        let failed = IEntryPoint::FailedOpWithRevert {
            opIndex: U256::ZERO,
            reason: "AA23 reverted".into(),
            inner: IClusterMemberAccount::InvalidBootstrapCall {}
                .abi_encode()
                .into(),
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
