//! Fuzz targets of the node follower's chain decoders (proptest; BRIEF convention: one
//! `fuzz_<decoder>` per decoder, cases from `ATTESTMESH_FUZZ_CASES`, default 256).
//!
//! The follower decodes `eth_getBlockByNumber` (block refs for reorg detection) and
//! `eth_getLogs` (`MessageSent`) answers inside `ClusterReader`; the targets drive its public
//! methods against a loopback JSON-RPC server that answers with the fuzzed `result`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};

use alloy_primitives::{Address, B256};
use attestmesh_chain::cluster::ClusterReader;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_fuzzkit::config;
use proptest::prelude::*;

/// A runtime, a JSON-RPC server on 127.0.0.1:0 answering every call with
/// `{"jsonrpc":"2.0","id":<id>,"result":` + the scripted text + `}`, and a reader on it.
struct Harness {
    /// Held for one script-and-call, as the two targets run on parallel test threads.
    turn: Mutex<()>,
    rt: tokio::runtime::Runtime,
    result: Arc<Mutex<Vec<u8>>>,
    reader: ClusterReader,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let result = Arc::new(Mutex::new(b"null".to_vec()));
        let script = result.clone();
        let url = rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else { return };
                    let script = script.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let script = script.clone();
                                async move {
                                    use http_body_util::BodyExt;
                                    let body = req.into_body().collect().await?.to_bytes();
                                    let call: serde_json::Value =
                                        serde_json::from_slice(&body).unwrap_or_default();
                                    let mut out = format!(
                                        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":",
                                        call["id"]
                                    )
                                    .into_bytes();
                                    out.extend_from_slice(&script.lock().unwrap());
                                    out.push(b'}');
                                    Ok::<_, hyper::Error>(hyper::Response::new(
                                        http_body_util::Full::new(bytes::Bytes::from(out)),
                                    ))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
            url
        });
        let reader = ClusterReader::new(
            Arc::new(RpcClient::new(&url).unwrap()),
            Address::repeat_byte(0xc1),
        );
        Harness {
            turn: Mutex::new(()),
            rt,
            result,
            reader,
        }
    })
}

/// Applies one of flip / insert / truncate at `at` to `valid`.
fn mutated(valid: &str, op: u8, at: usize, mask: u8, byte: u8) -> Vec<u8> {
    let mut m = valid.as_bytes().to_vec();
    let i = at % m.len();
    match op {
        0 => m[i] ^= mask,
        1 => m.insert(i, byte),
        _ => m.truncate(i),
    }
    m
}

const BLOCK: &str = r#"{"number":"0x4d2","hash":"0xb1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1","parentHash":"0xa0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0","timestamp":"0x6553f100","transactions":[]}"#;

/// A `MessageSent(sender, recipient, envelope, ciphertext)` log with a 3-byte ciphertext.
const LOGS: &str = r#"[{"address":"0xc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1","topics":["0x2e8a0b3a8e9e7f5b7d8d0c4f8f1a3c2b1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b","0x0101010101010101010101010101010101010101010101010101010101010101","0x0202020202020202020202020202020202020202020202020202020202020202","0x0303030303030303030303030303030303030303030303030303030303030303"],"data":"0x00000000000000000000000000000000000000000000000000000000000000200000000000000000000000000000000000000000000000000000000000000003abcdef0000000000000000000000000000000000000000000000000000000000","blockHash":"0xb1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1","blockNumber":"0x4d2","transactionHash":"0x7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f","logIndex":"0x0","removed":false}]"#;

fn logs_with_real_topic() -> String {
    use alloy_sol_types::SolEvent;
    let t0 = attestmesh_chain::bindings::IMessageFacet::MessageSent::SIGNATURE_HASH;
    LOGS.replace(
        "0x2e8a0b3a8e9e7f5b7d8d0c4f8f1a3c2b1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b",
        &t0.to_string(),
    )
}

proptest! {
    #![proptest_config(config())]

    /// `ClusterReader::block_ref` (the follower's reorg check): arbitrary or mutated answers
    /// never panic and give a block ref, "no block" or a typed error; the valid answer gives
    /// exactly its number, hash and parent; a block whose number is not the one asked for is
    /// rejected.
    #[test]
    fn fuzz_block_ref(
        junk in proptest::collection::vec(any::<u8>(), 0..200),
        op in 0u8..3, at in any::<usize>(), mask in 1u8..=255, byte in any::<u8>(),
    ) {
        let h = harness();
        let ask = |body: &[u8], n: u64| {
            let _turn = h.turn.lock().unwrap_or_else(|p| p.into_inner());
            *h.result.lock().unwrap() = body.to_vec();
            h.rt.block_on(h.reader.block(n))
        };
        let _ = ask(&junk, 1234);
        let _ = ask(&mutated(BLOCK, op, at, mask, byte), 1234);
        let good = ask(BLOCK.as_bytes(), 1234).unwrap().unwrap();
        prop_assert_eq!(good.number, 1234);
        prop_assert_eq!(good.hash, B256::repeat_byte(0xb1));
        prop_assert_eq!(good.parent_hash, B256::repeat_byte(0xa0));
        prop_assert!(ask(BLOCK.as_bytes(), 1235).is_err(), "a different block number is not ours");
        prop_assert_eq!(ask(b"null", 7).unwrap(), None);
    }

    /// `ClusterReader::message_logs` (the follower's `eth_getLogs` decoding): arbitrary or
    /// mutated answers never panic; the valid answer decodes to its sender, recipient, envelope
    /// and ciphertext; a truncated one is an error.
    #[test]
    fn fuzz_message_log(
        junk in proptest::collection::vec(any::<u8>(), 0..300),
        op in 0u8..3, at in any::<usize>(), mask in 1u8..=255, byte in any::<u8>(),
    ) {
        let h = harness();
        let valid = logs_with_real_topic();
        let ask = |body: &[u8]| {
            let _turn = h.turn.lock().unwrap_or_else(|p| p.into_inner());
            *h.result.lock().unwrap() = body.to_vec();
            h.rt.block_on(h.reader.message_logs(B256::repeat_byte(2), 1, 2000))
        };
        let _ = ask(&junk);
        let m = mutated(&valid, op, at, mask, byte);
        let r = ask(&m);
        if op == 2 {
            prop_assert!(r.is_err(), "a truncated answer decoded");
        }
        let logs = ask(valid.as_bytes()).unwrap();
        prop_assert_eq!(logs.len(), 1);
        prop_assert_eq!(logs[0].sender, B256::repeat_byte(1));
        prop_assert_eq!(logs[0].recipient, B256::repeat_byte(2));
        prop_assert_eq!(logs[0].envelope_id, B256::repeat_byte(3));
        prop_assert_eq!(logs[0].ciphertext.as_ref(), &[0xab, 0xcd, 0xef]);
        prop_assert_eq!(logs[0].block_number, 1234);
    }
}
