//! The dstack attestation provider: derives every node key from the guest agent and turns the
//! owner key's signature chain into a `DstackProof` for `DstackFacet.dstack_register`
//! (DESIGN §3.5, §4).

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::{SolCall, sol};
use attestmesh_core::binding::bind_hash;
use attestmesh_core::ids::DSTACK_ATTESTOR_ID;
use attestmesh_core::keys::{Ed25519Secret, KeyError, OwnerKey, SymmetricKey, X25519Secret};
use attestmesh_core::secp::{self, SecpError};

use crate::attestor::{AttestationDocument, Attestor, Derived, NodeKeys};
use crate::client::{AgentError, GuestAgentClient};
use crate::hexfmt;
use crate::kms;

/// One path per key type: the key bytes depend only on the path (DESIGN §4).
pub const OWNER_PATH: &str = "attestmesh/owner/v1";
pub const X25519_PATH: &str = "attestmesh/x25519/v1";
pub const ED25519_PATH: &str = "attestmesh/ed25519/v1";
pub const WIREGUARD_PATH: &str = "attestmesh/wireguard/v1";
pub const CSK_PATH: &str = "attestmesh/csk/v1";
pub const STATE_PATH: &str = "attestmesh/state/v1";
/// The owner key's purpose; it is part of the app signature the chain verifies.
pub const OWNER_PURPOSE: &str = "ethereum";
/// Every path is requested as secp256k1 (the agent's default); only the seed is used.
pub const ALGORITHM: &str = "secp256k1";

sol! {
    /// Mirror of `DstackProof` in contracts/src/interfaces/ClusterTypes.sol.
    #[derive(Debug, PartialEq, Eq)]
    struct DstackProof {
        bytes ownerPubkey;
        bytes appPubkey;
        bytes appSignature;
        bytes kmsSignature;
        string purpose;
        bytes bindingSignature;
    }

    /// `IDstackFacet.dstack_register`.
    #[derive(Debug, PartialEq, Eq)]
    function dstack_register(
        DstackProof proof,
        address memberContract,
        bytes32 xPubKey,
        bytes32 wgPubKey,
        bytes32 edPubKey
    ) external returns (bytes32 memberId);
}

/// Errors of the dstack provider.
#[derive(Debug, thiserror::Error)]
pub enum DstackError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("key derived for path {path:?} is unusable: {source}")]
    Key {
        path: &'static str,
        #[source]
        source: KeyError,
    },
    #[error("owner key signature chain is malformed: {0}")]
    Chain(#[from] SecpError),
    #[error("signing the key binding failed: {0}")]
    Binding(KeyError),
}

/// The owner key's KMS signature chain, as the guest agent returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChain {
    pub purpose: String,
    /// App key signature over `purpose:hex(owner pubkey)`, v as returned (0/1).
    pub app_sig: [u8; 65],
    /// KMS root signature over the app key, v as returned (0/1).
    pub kms_sig: [u8; 65],
    /// The app public key, if the caller knows it; otherwise recovered from `app_sig`.
    pub app_pubkey: Option<[u8; 33]>,
}

impl OwnerChain {
    /// The compressed app key: given, or recovered from the app signature over the owner key.
    pub fn app_pubkey(&self, owner_pubkey: &[u8; 33]) -> Result<[u8; 33], SecpError> {
        if let Some(k) = self.app_pubkey {
            return Ok(k);
        }
        let h = kms::app_sig_hash(&self.purpose, owner_pubkey);
        Ok(secp::compress(&secp::recover(&h, &self.app_sig)?))
    }

    /// The KMS root that signed this chain, as `ecrecover` on chain will see it. Lets the agent
    /// log which root issued its keys and fail early if it is not the expected one.
    pub fn kms_root(&self, app_id: Address, owner_pubkey: &[u8; 33]) -> Result<Address, SecpError> {
        let app = self.app_pubkey(owner_pubkey)?;
        secp::recover_address(&kms::kms_issued_hash(app_id, &app), &self.kms_sig)
    }
}

/// Builds the proof that the chain verifies: chain signatures normalised to v ∈ {27,28}, plus the
/// owner's EIP-191 signature over the binding of the three public keys to cluster and member.
pub fn build_proof(
    keys: &NodeKeys,
    chain: &OwnerChain,
    cluster: Address,
    member_contract: Address,
) -> Result<DstackProof, DstackError> {
    let owner_pub = keys.owner.public_compressed();
    let app_pub = chain.app_pubkey(&owner_pub)?;
    let binding = bind_hash(cluster, member_contract, &keys.member_pub_keys());
    let binding_sig = keys
        .owner
        .sign_eth_hash(&binding)
        .map_err(DstackError::Binding)?;
    Ok(DstackProof {
        ownerPubkey: Bytes::copy_from_slice(&owner_pub),
        appPubkey: Bytes::copy_from_slice(&app_pub),
        appSignature: Bytes::copy_from_slice(&secp::normalize_v(&chain.app_sig)?),
        kmsSignature: Bytes::copy_from_slice(&secp::normalize_v(&chain.kms_sig)?),
        purpose: chain.purpose.clone(),
        bindingSignature: Bytes::copy_from_slice(&binding_sig),
    })
}

/// ABI-encoded `dstack_register(proof, memberContract, x, wg, ed)` calldata.
pub fn register_calldata(proof: DstackProof, keys: &NodeKeys, member_contract: Address) -> Vec<u8> {
    let pk = keys.member_pub_keys();
    dstack_registerCall {
        proof,
        memberContract: member_contract,
        xPubKey: pk.x,
        wgPubKey: pk.wg,
        edPubKey: pk.ed,
    }
    .abi_encode()
}

/// The dstack provider over a guest-agent socket (real agent or devtee).
#[derive(Debug, Clone)]
pub struct DstackAttestor {
    client: GuestAgentClient,
}

impl DstackAttestor {
    pub fn new(client: GuestAgentClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &GuestAgentClient {
        &self.client
    }

    async fn seed(&self, path: &'static str) -> Result<zeroize::Zeroizing<[u8; 32]>, DstackError> {
        // The purpose names the key type; it affects only the (unused) signature chain.
        let purpose = path.split('/').nth(1).unwrap_or_default();
        Ok(self.client.get_key(path, purpose, ALGORITHM).await?.seed)
    }
}

impl Attestor for DstackAttestor {
    type Evidence = OwnerChain;
    type Error = DstackError;

    fn attestor_id(&self) -> B256 {
        DSTACK_ATTESTOR_ID
    }

    async fn member_contract(&self) -> Result<Address, DstackError> {
        Ok(self.client.app_id().await?)
    }

    async fn derive_keys(&self) -> Result<Derived<OwnerChain>, DstackError> {
        let owner = self
            .client
            .get_key(OWNER_PATH, OWNER_PURPOSE, ALGORITHM)
            .await?;
        let owner_key = OwnerKey::from_bytes(&owner.seed).map_err(|source| DstackError::Key {
            path: OWNER_PATH,
            source,
        })?;
        let keys = NodeKeys {
            owner: owner_key,
            x25519: X25519Secret::from_seed(*self.seed(X25519_PATH).await?),
            ed25519: Ed25519Secret::from_seed(*self.seed(ED25519_PATH).await?),
            wireguard: X25519Secret::from_seed(*self.seed(WIREGUARD_PATH).await?),
            csk: SymmetricKey::from_bytes(*self.seed(CSK_PATH).await?),
            state: SymmetricKey::from_bytes(*self.seed(STATE_PATH).await?),
        };
        Ok(Derived {
            keys,
            evidence: OwnerChain {
                purpose: OWNER_PURPOSE.to_string(),
                app_sig: owner.app_sig,
                kms_sig: owner.kms_sig,
                app_pubkey: None,
            },
        })
    }

    fn registration_call(
        &self,
        derived: &Derived<OwnerChain>,
        cluster: Address,
        member_contract: Address,
    ) -> Result<Vec<u8>, DstackError> {
        let proof = build_proof(&derived.keys, &derived.evidence, cluster, member_contract)?;
        Ok(register_calldata(proof, &derived.keys, member_contract))
    }

    async fn attestation_document(
        &self,
        report_data: [u8; 64],
    ) -> Result<AttestationDocument, DstackError> {
        let resp = self.client.get_quote(&report_data).await?;
        let quote = hexfmt::decode("quote", &resp.quote).map_err(AgentError::from)?;
        let format = if crate::quote::is_simulated(&quote) {
            "devtee-simulated"
        } else {
            "dstack-tdx-quote"
        };
        Ok(AttestationDocument {
            attestor_id: DSTACK_ATTESTOR_ID,
            format: format.to_string(),
            quote,
            event_log: resp.event_log.clone(),
            report_data,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;
    use attestmesh_core::binding::eth_signed_hash;

    fn keys_from(root: &[u8; 32], app: Address) -> (NodeKeys, OwnerChain) {
        let owner = kms::issue(root, app, OWNER_PATH, OWNER_PURPOSE).unwrap();
        let seed = |p| *kms::issue(root, app, p, "").unwrap().secret;
        let keys = NodeKeys {
            owner: OwnerKey::from_bytes(&owner.secret).unwrap(),
            x25519: X25519Secret::from_seed(seed(X25519_PATH)),
            ed25519: Ed25519Secret::from_seed(seed(ED25519_PATH)),
            wireguard: X25519Secret::from_seed(seed(WIREGUARD_PATH)),
            csk: SymmetricKey::from_bytes(seed(CSK_PATH)),
            state: SymmetricKey::from_bytes(seed(STATE_PATH)),
        };
        let chain = OwnerChain {
            purpose: OWNER_PURPOSE.into(),
            app_sig: owner.app_sig,
            kms_sig: owner.kms_sig,
            app_pubkey: None,
        };
        (keys, chain)
    }

    #[test]
    fn selector_matches_vector_and_solidity_signature() {
        assert_eq!(dstack_registerCall::SELECTOR, [0x27, 0xb3, 0xdd, 0xfa]);
        assert_eq!(
            dstack_registerCall::SIGNATURE,
            "dstack_register((bytes,bytes,bytes,bytes,string,bytes),address,bytes32,bytes32,bytes32)"
        );
    }

    /// Re-checks every step of DstackFacet's verification (DESIGN §3.5) on the Rust side.
    #[test]
    fn proof_passes_the_contract_checks() {
        let app = Address::repeat_byte(0xa1);
        let cluster = Address::repeat_byte(0xc1);
        let (keys, chain) = keys_from(&kms::DEV_KMS_ROOT_KEY, app);
        let proof = build_proof(&keys, &chain, cluster, app).unwrap();
        assert_eq!(proof.ownerPubkey.len(), 33);
        assert_eq!(proof.appPubkey.len(), 33);
        for s in [
            &proof.appSignature,
            &proof.kmsSignature,
            &proof.bindingSignature,
        ] {
            assert_eq!(s.len(), 65);
            assert!(s[64] == 27 || s[64] == 28);
        }
        let app_pub: [u8; 33] = proof.appPubkey.as_ref().try_into().unwrap();
        let owner_pub: [u8; 33] = proof.ownerPubkey.as_ref().try_into().unwrap();
        // 2. KMS link.
        let kms_signer =
            secp::recover_address(&kms::kms_issued_hash(app, &app_pub), &proof.kmsSignature)
                .unwrap();
        assert_eq!(kms_signer, kms::DEV_KMS_ROOT_ADDRESS);
        // 3. App link.
        let app_signer = secp::recover_address(
            &kms::app_sig_hash(&proof.purpose, &owner_pub),
            &proof.appSignature,
        )
        .unwrap();
        assert_eq!(app_signer, secp::address_of_compressed(&app_pub).unwrap());
        // 4. Binding.
        let bh = bind_hash(cluster, app, &keys.member_pub_keys());
        let binder = secp::recover_address(&eth_signed_hash(&bh), &proof.bindingSignature).unwrap();
        assert_eq!(binder, keys.owner.address());
        assert_eq!(
            chain.kms_root(app, &owner_pub).unwrap(),
            kms::DEV_KMS_ROOT_ADDRESS
        );
    }

    #[test]
    fn given_app_pubkey_is_used_verbatim() {
        let app = Address::repeat_byte(0xa1);
        let (keys, mut chain) = keys_from(&kms::DEV_KMS_ROOT_KEY, app);
        let recovered = chain.app_pubkey(&keys.owner.public_compressed()).unwrap();
        let app_key = kms::app_key(&kms::DEV_KMS_ROOT_KEY, app).unwrap();
        assert_eq!(recovered, secp::compress(app_key.verifying_key()));
        chain.app_pubkey = Some([2u8; 33]);
        let proof = build_proof(&keys, &chain, Address::ZERO, app).unwrap();
        assert_eq!(proof.appPubkey.as_ref(), &[2u8; 33]);
    }

    #[test]
    fn calldata_roundtrips() {
        let app = Address::repeat_byte(0xa1);
        let (keys, chain) = keys_from(&kms::DEV_KMS_ROOT_KEY, app);
        let proof = build_proof(&keys, &chain, Address::repeat_byte(0xc1), app).unwrap();
        let data = register_calldata(proof.clone(), &keys, app);
        assert_eq!(&data[..4], &dstack_registerCall::SELECTOR);
        let back = dstack_registerCall::abi_decode(&data).unwrap();
        assert_eq!(back.proof, proof);
        assert_eq!(back.memberContract, app);
        assert_eq!(back.xPubKey, keys.x25519.public());
        assert_eq!(back.wgPubKey, keys.wireguard.public());
        assert_eq!(back.edPubKey, keys.ed25519.public());
        let _ = keccak256(&data);
    }

    #[test]
    fn malformed_chain_is_a_typed_error() {
        let app = Address::repeat_byte(0xa1);
        let (keys, mut chain) = keys_from(&kms::DEV_KMS_ROOT_KEY, app);
        chain.app_sig[64] = 5;
        assert!(matches!(
            build_proof(&keys, &chain, Address::ZERO, app),
            Err(DstackError::Chain(SecpError::BadRecoveryByte(5)))
        ));
    }
}
