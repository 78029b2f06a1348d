//! Shared fixtures for the sponsor tests and benchmark: an in-memory chain state, a
//! [`ChainView`] over it, and a real HTTP JSON-RPC node that answers `eth_call` from the same
//! state (optionally after a delay, to stand in for a remote RPC round trip).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolValue};
use attestmesh_core::userop::{ENTRY_POINT_V07, UserOperation};
use attestmesh_sponsor::calls::encode_execute;
use attestmesh_sponsor::chain::{ChainError, ChainFees, ChainView};
use attestmesh_sponsor::policy::{PolicyConfig, TrustSet};
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

pub const CHAIN_ID: u64 = 31337;
pub const MEMBER_FACTORY: Address = Address::repeat_byte(0xf1);
pub const CLUSTER_FACTORY: Address = Address::repeat_byte(0xf2);
pub const PAYMASTER: Address = Address::repeat_byte(0xe1);
pub const CLUSTER_A: Address = Address::repeat_byte(0xca);
pub const CLUSTER_B: Address = Address::repeat_byte(0xcb);
/// A cluster NOT deployed by the trusted factory.
pub const ROGUE_CLUSTER: Address = Address::repeat_byte(0xcf);
/// Member-factory member of cluster A.
pub const NODE_A: Address = Address::repeat_byte(0xa1);
/// Path-A app id allowlisted by cluster A (not a member-factory member).
pub const APP_A: Address = Address::repeat_byte(0xa2);
/// App id bound to cluster A but not allowlisted.
pub const UNLISTED_APP: Address = Address::repeat_byte(0xa3);
/// Member-factory member of cluster B.
pub const NODE_B: Address = Address::repeat_byte(0xb1);
/// App id claiming the rogue cluster, "allowlisted" there.
pub const ROGUE_APP: Address = Address::repeat_byte(0xa4);
/// Nothing at all.
pub const STRANGER: Address = Address::repeat_byte(0x99);
pub const SIGNER_KEY: &str = "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

pub const SEL_SET_CSK: [u8; 4] = [0x3e, 0xeb, 0x8e, 0xe8];
pub const SEL_SEND_OWNER_COMMAND: [u8; 4] = [0xf2, 0x1d, 0x2d, 0x40];

/// Chain state the fakes answer from.
#[derive(Default)]
pub struct MemState {
    pub members: Mutex<HashSet<Address>>,
    pub cluster_of: Mutex<HashMap<Address, Address>>,
    pub clusters: Mutex<HashSet<Address>>,
    pub app_ids: Mutex<HashSet<(Address, Address)>>,
    /// Lookups answered (to observe the cache).
    pub lookups: AtomicU64,
    /// Make every lookup fail like an unreachable node.
    pub down: AtomicBool,
    /// Senders whose `dstack_register` the cluster would reject.
    pub failing_registrations: Mutex<HashSet<Address>>,
    /// `clusterOwner()` per cluster.
    pub owners: Mutex<HashMap<Address, Address>>,
    /// The chain's (base fee, priority fee).
    pub fees: Mutex<(u128, u128)>,
}

/// Who owns clusters A and B (the operator) and the rogue cluster (someone else).
pub const OPERATOR: Address = Address::repeat_byte(0x0e);
pub const ROGUE_OWNER: Address = Address::repeat_byte(0x0f);
/// Base fee and priority fee of the fixture chain: 1 gwei each.
pub const GWEI: u128 = 1_000_000_000;

/// The operator's trust set of the fixture: clusters A and B.
/// The policy of the fixture chain: its chain id, entry point and factories, trusting
/// [`trusted`], with a daily cap of `cap` operations per sender.
pub fn policy_config(cap: u32) -> PolicyConfig {
    PolicyConfig::new(
        CHAIN_ID,
        entry_point(),
        MEMBER_FACTORY,
        CLUSTER_FACTORY,
        cap,
    )
    .trusting(trusted())
}

pub fn trusted() -> TrustSet {
    TrustSet::clusters([CLUSTER_A, CLUSTER_B])
}

impl MemState {
    /// The standard fixture described by the constants above.
    pub fn fixture() -> Arc<Self> {
        let s = Self::default();
        {
            let mut m = s.members.lock().expect("lock");
            m.insert(NODE_A);
            m.insert(NODE_B);
            let mut c = s.cluster_of.lock().expect("lock");
            c.insert(NODE_A, CLUSTER_A);
            c.insert(APP_A, CLUSTER_A);
            c.insert(UNLISTED_APP, CLUSTER_A);
            c.insert(NODE_B, CLUSTER_B);
            c.insert(ROGUE_APP, ROGUE_CLUSTER);
            let mut d = s.clusters.lock().expect("lock");
            d.insert(CLUSTER_A);
            d.insert(CLUSTER_B);
            let mut a = s.app_ids.lock().expect("lock");
            a.insert((CLUSTER_A, APP_A));
            a.insert((ROGUE_CLUSTER, ROGUE_APP));
            let mut o = s.owners.lock().expect("lock");
            o.insert(CLUSTER_A, OPERATOR);
            o.insert(CLUSTER_B, OPERATOR);
            o.insert(ROGUE_CLUSTER, ROGUE_OWNER);
            *s.fees.lock().expect("lock") = (GWEI, GWEI);
        }
        Arc::new(s)
    }

    fn check(&self) -> Result<(), ChainError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(ChainError::Transport(
                "connection refused (simulated)".into(),
            ));
        }
        Ok(())
    }

    fn is_our_member(&self, factory: Address, member: Address) -> bool {
        factory == MEMBER_FACTORY && self.members.lock().expect("lock").contains(&member)
    }
    fn cluster_of(&self, member: Address) -> Option<Address> {
        self.cluster_of.lock().expect("lock").get(&member).copied()
    }
    fn is_deployed_cluster(&self, factory: Address, cluster: Address) -> bool {
        factory == CLUSTER_FACTORY && self.clusters.lock().expect("lock").contains(&cluster)
    }
    fn is_allowed_app_id(&self, cluster: Address, app: Address) -> bool {
        self.app_ids.lock().expect("lock").contains(&(cluster, app))
    }
    fn owner_of(&self, cluster: Address) -> Option<Address> {
        self.owners.lock().expect("lock").get(&cluster).copied()
    }
    fn chain_fees(&self) -> ChainFees {
        let (base_fee, priority_fee) = *self.fees.lock().expect("lock");
        ChainFees {
            base_fee,
            priority_fee,
        }
    }
    fn registration_succeeds(&self, from: Address) -> bool {
        !self
            .failing_registrations
            .lock()
            .expect("lock")
            .contains(&from)
    }
}

/// In-memory [`ChainView`].
#[derive(Clone)]
pub struct MemView(pub Arc<MemState>);

impl ChainView for MemView {
    async fn call_succeeds(
        &self,
        from: Address,
        _to: Address,
        _data: &[u8],
    ) -> Result<bool, ChainError> {
        self.0.check()?;
        Ok(self.0.registration_succeeds(from))
    }
    async fn is_our_member(&self, factory: Address, member: Address) -> Result<bool, ChainError> {
        self.0.check()?;
        Ok(self.0.is_our_member(factory, member))
    }
    async fn cluster_of(&self, member: Address) -> Result<Option<Address>, ChainError> {
        self.0.check()?;
        Ok(self.0.cluster_of(member))
    }
    async fn is_deployed_cluster(
        &self,
        factory: Address,
        cluster: Address,
    ) -> Result<bool, ChainError> {
        self.0.check()?;
        Ok(self.0.is_deployed_cluster(factory, cluster))
    }
    async fn is_allowed_app_id(
        &self,
        cluster: Address,
        app_id: Address,
    ) -> Result<bool, ChainError> {
        self.0.check()?;
        Ok(self.0.is_allowed_app_id(cluster, app_id))
    }
    async fn cluster_owner(&self, cluster: Address) -> Result<Option<Address>, ChainError> {
        self.0.check()?;
        Ok(self.0.owner_of(cluster))
    }
    async fn fees(&self) -> Result<ChainFees, ChainError> {
        self.0.check()?;
        Ok(self.0.chain_fees())
    }
}

use attestmesh_chain::bindings::IAttestFacet::clusterOwnerCall;
use attestmesh_chain::bindings::IClusterDiamondFactory::isDeployedClusterCall;
use attestmesh_chain::bindings::IClusterMember::clusterCall;
use attestmesh_chain::bindings::IClusterMemberFactory::isOurMemberCall;
use attestmesh_chain::bindings::IDstackFacet::allowedAppIdsCall;

/// A real HTTP JSON-RPC server answering `eth_chainId` and `eth_call` for the four views from
/// [`MemState`], after `delay` per request. `cluster()` on an address without a cluster reverts
/// (like calling a contract that is not a ClusterMember); isOurMember etc. at a wrong address
/// return empty data (like an address without code).
pub struct FakeNode {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct NodeState {
    state: Arc<MemState>,
    delay: Duration,
    requests: Arc<AtomicU64>,
}

fn hex(b: &[u8]) -> String {
    attestmesh_sponsor::wire::hex_bytes(b)
}

async fn node_rpc(State(n): State<NodeState>, body: axum::body::Bytes) -> String {
    n.requests.fetch_add(1, Ordering::Relaxed);
    if !n.delay.is_zero() {
        tokio::time::sleep(n.delay).await;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = req["id"].clone();
    let ok = |r: Value| json!({"jsonrpc": "2.0", "id": id, "result": r}).to_string();
    let revert = || {
        json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": 3, "message": "execution reverted"}}).to_string()
    };
    match req["method"].as_str() {
        Some("eth_chainId") => ok(json!(format!("{CHAIN_ID:#x}"))),
        Some("eth_getBlockByNumber") => {
            ok(json!({"number": "0x1", "baseFeePerGas": format!("{:#x}", n.state.chain_fees().base_fee)}))
        }
        Some("eth_maxPriorityFeePerGas") => ok(json!(format!("{:#x}", n.state.chain_fees().priority_fee))),
        Some("eth_call") => {
            let to: Address = req["params"][0]["to"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
            // Nodes take the calldata as `input` (current name) or `data` (legacy name).
            let call = &req["params"][0];
            let input = if call["input"].is_null() { &call["data"] } else { &call["input"] };
            let data = attestmesh_sponsor::wire::bytes("input", input).unwrap_or_default();
            let s = &n.state;
            if let Ok(c) = isOurMemberCall::abi_decode(&data) {
                if to != MEMBER_FACTORY {
                    return ok(json!("0x"));
                }
                return ok(json!(hex(&s.is_our_member(to, c.member).abi_encode())));
            }
            if clusterCall::abi_decode(&data).is_ok() {
                return match s.cluster_of(to) {
                    Some(c) => ok(json!(hex(&c.abi_encode()))),
                    None => revert(),
                };
            }
            if let Ok(c) = isDeployedClusterCall::abi_decode(&data) {
                if to != CLUSTER_FACTORY {
                    return ok(json!("0x"));
                }
                return ok(json!(hex(&s.is_deployed_cluster(to, c.cluster).abi_encode())));
            }
            if let Ok(c) = allowedAppIdsCall::abi_decode(&data) {
                return ok(json!(hex(&s.is_allowed_app_id(to, c.appId).abi_encode())));
            }
            if clusterOwnerCall::abi_decode(&data).is_ok() {
                return match s.owner_of(to) {
                    Some(o) => ok(json!(hex(&o.abi_encode()))),
                    None => ok(json!("0x")),
                };
            }
            revert()
        }
        _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}).to_string(),
    }
}

impl FakeNode {
    pub async fn start(state: Arc<MemState>, delay: Duration) -> Self {
        let requests = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/", post(node_rpc))
            .with_state(NodeState {
                state,
                delay,
                requests: requests.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake node");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            requests,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// `execute(target, value, inner)` calldata.
pub fn execute(target: Address, value: u64, inner: &[u8]) -> Bytes {
    Bytes::from(encode_execute(
        target,
        U256::from(value),
        Bytes::copy_from_slice(inner),
    ))
}

/// `setCskCommitment(bytes32)` calldata.
pub fn set_csk(commitment: u8) -> Vec<u8> {
    let mut v = SEL_SET_CSK.to_vec();
    v.extend_from_slice(&[commitment; 32]);
    v
}

/// A gas-complete user operation from `sender` with `call_data`, its gas values within the
/// policy's default bounds for every sponsored kind (and fees within 3× a 1 gwei chain).
pub fn op(sender: Address, nonce: u64, call_data: Bytes) -> UserOperation {
    UserOperation {
        sender,
        nonce: U256::from(nonce),
        call_data,
        call_gas_limit: 60_000,
        verification_gas_limit: 25_000,
        pre_verification_gas: U256::from(50_000u64),
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        ..Default::default()
    }
}

/// The sponsored happy path: `NODE_A` sets the CSK commitment on its own cluster.
pub fn good_op(nonce: u64) -> UserOperation {
    op(NODE_A, nonce, execute(CLUSTER_A, 0, &set_csk(0xab)))
}

/// The op as ERC-7677 JSON (unpacked v0.7).
pub fn op_json(op: &UserOperation) -> Value {
    let h = |v: u128| format!("{v:#x}");
    json!({
        "sender": op.sender.to_string(),
        "nonce": format!("{:#x}", op.nonce),
        "factory": op.factory.map(|f| f.to_string()),
        "factoryData": op.factory.map(|_| hex(&op.factory_data)),
        "callData": hex(&op.call_data),
        "callGasLimit": h(op.call_gas_limit),
        "verificationGasLimit": h(op.verification_gas_limit),
        "preVerificationGas": format!("{:#x}", op.pre_verification_gas),
        "maxFeePerGas": h(op.max_fee_per_gas),
        "maxPriorityFeePerGas": h(op.max_priority_fee_per_gas),
        "paymaster": op.paymaster.map(|p| p.to_string()),
        "paymasterVerificationGasLimit": op.paymaster.map(|_| h(op.paymaster_verification_gas_limit)),
        "paymasterPostOpGasLimit": op.paymaster.map(|_| h(op.paymaster_post_op_gas_limit)),
        "paymasterData": op.paymaster.map(|_| hex(&op.paymaster_data)),
        "signature": hex(&op.signature),
    })
}

pub fn entry_point() -> Address {
    ENTRY_POINT_V07
}
