//! Issue 11 hole 3, node side: a burst of messages larger than one `eth_getLogs` answer may carry
//! must not stall the agent's chain follower. Real anvil behind a capped JSON-RPC endpoint (a
//! provider's "query returned more than N results"), the node's real follower.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../indexer/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use alloy_primitives::B256;
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::IMessageFacet;
use attestmesh_chain::cluster::ClusterReader;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_node::follower::{Follower, FollowerConfig};
use attestmesh_node::state::Shared;
use common::{DEV_CIDR, capped_rpc, dev_cluster, register_members};

/// The provider's cap on logs per answer.
const LIMIT: usize = 10;
/// Messages in the burst, one block each: more than three answers' worth.
const BURST: usize = 35;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_follower_message_burst_does_not_stall() {
    let (chain, _artifacts, infra, cluster) = dev_cluster().await;
    let submitter = chain.accounts[2];
    let cidr = MeshCidr::new(DEV_CIDR, 16).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_tees, m) =
        register_members(&chain, &infra, cluster, submitter, tmp.path(), &[2, 3]).await;
    let ((a, ida), (_, idb)) = (m[0], m[1]);

    let capped = capped_rpc(chain.url(), LIMIT).await;
    let reader = ClusterReader::new(Arc::new(RpcClient::new(&capped.url).unwrap()), cluster);
    let shared = Arc::new(Shared::new());
    let mut inbox = shared.subscribe_messages();
    // The follower opens with this key; the sender seals to its public half.
    let x = X25519Secret::from_seed([7; 32]);
    let cfg = FollowerConfig {
        poll_interval: std::time::Duration::from_secs(3600),
        confirmations: 0,
    };
    let mut f = Follower::new(
        reader,
        shared.clone(),
        cidr,
        idb,
        X25519Secret::from_seed([7; 32]),
        cfg,
        None,
    );
    f.poll_once().await.unwrap(); // starts "from now"

    let mut sent = Vec::new();
    for i in 0..BURST {
        let env = B256::repeat_byte(i as u8 + 1);
        // Bound to the event that carries it (DESIGN §3.3), as the agent's SendMessage seals.
        let bound = attestmesh_core::message::Envelope {
            cluster,
            sender: ida,
            recipient: idb,
            envelope_id: env,
        };
        let sealed = attestmesh_core::message::seal(
            &x.public(),
            &bound,
            &[i as u8; 8],
            &mut rand_core::OsRng,
        )
        .unwrap();
        let call = IMessageFacet::sendCall {
            recipientMemberId: idb,
            envelopeId: env,
            ciphertext: sealed.into(),
        };
        let r = chain
            .rpc
            .transact(a, Some(cluster), &call.abi_encode())
            .await
            .unwrap();
        assert!(r.success);
        sent.push((env, r.block_number));
    }
    f.poll_once()
        .await
        .expect("the follower reads past the burst");
    assert!(
        capped.refused.load(Ordering::Relaxed) > 0,
        "the provider's cap was never hit: the test proves nothing"
    );
    let mut got = Vec::new();
    while let Ok(msg) = inbox.try_recv() {
        got.push((msg.envelope_id, msg.block_number));
    }
    assert_eq!(got, sent, "every message once, in order");
    let head = chain.rpc.block_number().await.unwrap();
    assert_eq!(
        f.cursor().map(|c| c.block),
        Some(head),
        "the cursor reached the head"
    );
}
