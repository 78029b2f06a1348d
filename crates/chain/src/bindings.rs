//! Solidity bindings, generated at compile time from the committed ABI artifacts
//! (`artifacts/*.json`, which CI rebuilds from `contracts/` and compares). Nothing here is copied
//! by hand: a changed contract changes its artifact, and the code that no longer matches it stops
//! compiling. The one exception is [`IDstackApp`], Phala's stock dstack app contract, which is not
//! ours and has no artifact here.
//!
//! Each artifact expands in its own module because artifacts share library-qualified struct
//! names (`IDiamondCut.FacetCut`, …) that would collide in one scope; the contract's module is
//! re-exported at the top level, so callers write `IAttestFacet::memberOfCall`.
//!
//! Interfaces (`IAttestFacet`, …) are what callers use to talk to the diamond; the
//! implementation artifacts (`AttestFacet`, …) are here for their complete error lists, which
//! [`crate::revert`] decodes.

use alloy_sol_types::sol;

/// Expands one artifact into `pub mod $module` and re-exports its contract module.
macro_rules! artifact {
    ($(#[$doc:meta])* $module:ident :: $name:ident = $file:tt) => {
        $(#[$doc])*
        pub mod $module {
            #![allow(missing_docs, clippy::too_many_arguments)]
            alloy_sol_types::sol!(#[derive(Debug, PartialEq, Eq)] $name, $file);
        }
        pub use $module::$name;
    };
}

artifact!(
    /// Membership, mesh addresses, the CSK commitment and the cluster owner.
    i_attest_facet::IAttestFacet = "../../artifacts/IAttestFacet.json"
);
artifact!(
    /// The dstack attestation method: registration and its admission policy.
    i_dstack_facet::IDstackFacet = "../../artifacts/IDstackFacet.json"
);
artifact!(
    /// Ordered, encrypted member-to-member messages.
    i_message_facet::IMessageFacet = "../../artifacts/IMessageFacet.json"
);
artifact!(
    /// WireGuard and Ed25519 public keys of members.
    i_network_facet::INetworkFacet = "../../artifacts/INetworkFacet.json"
);
artifact!(
    /// What every attestation method's facet tells a member contract (its bootstrap rule).
    i_attestor::IAttestor = "../../artifacts/IAttestor.json"
);
artifact!(
    /// The diamond's ERC-173 ownership (who may cut facets).
    i_diamond_ownership::IDiamondOwnership = "../../artifacts/IDiamondOwnership.json"
);
artifact!(
    /// A member's ERC-4337 account, as other contracts see it.
    i_cluster_member::IClusterMember = "../../artifacts/IClusterMember.json"
);
artifact!(
    /// The member account itself (`validateUserOp`, UUPS, and its errors).
    cluster_member::ClusterMember = "../../artifacts/ClusterMember.json"
);
artifact!(
    /// CREATE2 factory of member accounts.
    i_cluster_member_factory::IClusterMemberFactory = "../../artifacts/IClusterMemberFactory.json"
);
artifact!(
    /// CREATE2 factory of cluster diamonds.
    i_cluster_diamond_factory::IClusterDiamondFactory =
        "../../artifacts/IClusterDiamondFactory.json"
);
artifact!(
    /// The diamond factory's implementation: its constructor's facet list and its errors.
    cluster_diamond_factory::ClusterDiamondFactory = "../../artifacts/ClusterDiamondFactory.json"
);
artifact!(
    /// Where agents read the attested Indexer's endpoint and key.
    i_indexer_registry::IIndexerRegistry = "../../artifacts/IIndexerRegistry.json"
);
artifact!(
    /// Our verifying paymaster.
    sponsor_paymaster::SponsorPaymaster = "../../artifacts/SponsorPaymaster.json"
);

/// The canonical ERC-4337 v0.7 EntryPoint. Its artifact's library structs name the contract's
/// own `PackedUserOperation`, so that type is brought into the module scope first.
pub mod entry_point {
    #![allow(missing_docs, clippy::too_many_arguments)]
    pub use self::EntryPoint::PackedUserOperation;
    alloy_sol_types::sol!(
        #[derive(Debug, PartialEq, Eq)]
        EntryPoint,
        "../../artifacts/EntryPointV07.json"
    );
}
pub use entry_point::EntryPoint;
/// The UserOperation as the EntryPoint takes it (the one ABI form every caller uses).
pub use entry_point::PackedUserOperation;

/// Implementation artifacts: their complete error lists (see [`crate::revert`]) and the few
/// calls no interface declares (`IndexerRegistry.owner`, OpenZeppelin's `Ownable2Step`).
pub mod impls {
    artifact!(attest_facet::AttestFacet = "../../artifacts/AttestFacet.json");
    artifact!(dstack_facet::DstackFacet = "../../artifacts/DstackFacet.json");
    artifact!(message_facet::MessageFacet = "../../artifacts/MessageFacet.json");
    artifact!(network_facet::NetworkFacet = "../../artifacts/NetworkFacet.json");
    artifact!(cluster_diamond::ClusterDiamond = "../../artifacts/ClusterDiamond.json");
    artifact!(cluster_init::ClusterInit = "../../artifacts/ClusterInit.json");
    artifact!(diamond_cut_facet::DiamondCutFacet = "../../artifacts/DiamondCutFacet.json");
    artifact!(ownership_facet::OwnershipFacet = "../../artifacts/OwnershipFacet.json");
    artifact!(
        cluster_member_factory::ClusterMemberFactory = "../../artifacts/ClusterMemberFactory.json"
    );
    artifact!(indexer_registry::IndexerRegistry = "../../artifacts/IndexerRegistry.json");
    artifact!(secp256k1::Secp256k1 = "../../artifacts/Secp256k1.json");
}

sol! {
    /// Phala's stock dstack app (a UUPS proxy a member may start as before it is upgraded to
    /// ClusterMember). Not one of our contracts, so there is no artifact to generate it from;
    /// these are the only calls and errors of it we use.
    #[derive(Debug, PartialEq, Eq)]
    interface IDstackApp {
        error NotOwner();
        function upgradeToAndCall(address newImplementation, bytes data) external payable;
        function proxiableUUID() external view returns (bytes32);
        function owner() external view returns (address);
    }
}

/// A member record as `IAttestFacet` returns it.
pub type MemberRecord = IAttestFacet::MemberRecord;
/// A cluster's initial policy, as the diamond factory takes it.
pub type ClusterInitArgs = IClusterDiamondFactory::ClusterInitArgs;
/// The diamond factory's constructor argument.
pub type Facets = ClusterDiamondFactory::Facets;
/// The Indexer registry's record.
pub type IndexerRecord = IIndexerRegistry::IndexerRecord;

/// The core's packed form as each ABI struct that carries it (the EntryPoint's, and the copies
/// the account's and paymaster's artifacts declare).
macro_rules! from_core_packed {
    ($($t:ty),*) => {$(
        impl From<attestmesh_core::userop::PackedUserOperation> for $t {
            fn from(p: attestmesh_core::userop::PackedUserOperation) -> Self {
                Self {
                    sender: p.sender,
                    nonce: p.nonce,
                    initCode: p.init_code,
                    callData: p.call_data,
                    accountGasLimits: p.account_gas_limits,
                    preVerificationGas: p.pre_verification_gas,
                    gasFees: p.gas_fees,
                    paymasterAndData: p.paymaster_and_data,
                    signature: p.signature,
                }
            }
        }
    )*};
}
from_core_packed!(
    PackedUserOperation,
    ClusterMember::PackedUserOperation,
    SponsorPaymaster::PackedUserOperation
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_sol_types::{SolCall, SolError, SolEvent};

    #[test]
    fn selectors_match_the_contracts() {
        assert_eq!(
            IAttestFacet::memberOfCall::SELECTOR,
            [0x3b, 0x4c, 0x98, 0x91]
        );
        assert_eq!(
            IAttestFacet::meshIpOfCall::SELECTOR,
            [0xbb, 0x67, 0x17, 0x32]
        );
        assert_eq!(
            IClusterMemberFactory::deployMemberCall::SELECTOR,
            [0xc8, 0x3a, 0xd2, 0xfc]
        );
        assert_eq!(
            IDstackFacet::InvalidSigChain::SELECTOR,
            [0x35, 0x56, 0x5c, 0x11]
        );
        assert_eq!(
            IClusterMember::ownerCall::SELECTOR,
            [0x8d, 0xa5, 0xcb, 0x5b]
        );
    }

    #[test]
    fn event_topics_are_the_signatures_hashes() {
        use alloy_primitives::keccak256;
        assert_eq!(
            IMessageFacet::MessageSent::SIGNATURE_HASH,
            keccak256("MessageSent(bytes32,bytes32,bytes32,bytes)")
        );
        assert_eq!(
            IClusterDiamondFactory::ClusterDeployed::SIGNATURE_HASH,
            keccak256("ClusterDeployed(address,address,bytes32)")
        );
    }
}
