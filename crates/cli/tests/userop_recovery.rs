//! The bundler (and the paymaster) are down when a node submits, and come back: the operation
//! still lands, after capped exponential backoff. Also checks that alto listens on loopback only
//! and that stopping it leaves no process of its group behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod userop_stack;

use std::time::{Duration, Instant};

use alloy_primitives::B256;
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::INetworkFacet;
use attestmesh_chain::devstack::Alto;
use attestmesh_chain::userop::{UserOpConfig, UserOpError};
use attestmesh_core::backoff::BackoffPolicy;
use userop_stack::{Stack, StackOptions, read};

/// Local addresses (hex `ip:port` as in /proc/net/tcp) listening on `port`.
fn listeners(port: u16) -> Vec<String> {
    let mut out = vec![];
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // state 0A = LISTEN
            if cols.len() > 3 && cols[3] == "0A" {
                let local = cols[1];
                if local.ends_with(&format!(":{port:04X}")) {
                    out.push(local.to_string());
                }
            }
        }
    }
    out
}

fn group_alive(pgid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_lands_after_bundler_and_paymaster_come_back() {
    let mut stack = Stack::up(StackOptions::default()).await;
    let port = stack.alto_cfg.port.unwrap();
    let l = listeners(port);
    assert_eq!(
        l,
        vec![format!("0100007F:{port:04X}")],
        "alto must listen on 127.0.0.1 only"
    );

    let client = stack.client(UserOpConfig {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(60),
        },
        ..UserOpConfig::default()
    });
    let a = stack.node(0xa1).await;
    client
        .submit(a.account(stack.cluster), &a.registration)
        .await
        .unwrap();

    // Everything the node needs besides the chain goes away.
    let alto = stack.alto.take().unwrap();
    let pgid = alto.pid().unwrap();
    alto.stop();
    assert!(!group_alive(pgid), "a process of alto's group survived");
    assert!(listeners(port).is_empty());
    stack.sponsor.stop().await;

    // With a short budget, the outage is reported as such (not as a denial or a revert).
    let impatient = stack.client(UserOpConfig {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            max_elapsed: Duration::from_millis(600),
        },
        ..UserOpConfig::default()
    });
    let key = B256::repeat_byte(0x42);
    let publish = INetworkFacet::publishWgKeyCall { wgPubKey: key }.abi_encode();
    let err = impatient
        .submit(a.account(stack.cluster), &publish)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UserOpError::Unavailable { attempts, .. } if attempts > 1),
        "{err:?}"
    );

    let started = Instant::now();
    let cluster = stack.cluster;
    let submission = {
        let client = &client;
        let account = a.account(cluster);
        let publish = publish.clone();
        async move { client.submit(account, &publish).await }
    };
    let revive = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack.sponsor.start_again().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Alto::start(&stack.alto_cfg).await.unwrap()
    };
    let (result, alto) = tokio::join!(submission, revive);
    let landed = result.unwrap();
    stack.alto = Some(alto);
    assert!(landed.receipt.success);
    assert!(landed.retries >= 3, "retries: {}", landed.retries);
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(
        read(
            &stack.rpc,
            cluster,
            INetworkFacet::wgPubKeyOfCall {
                memberId: a.member_id(cluster)
            }
        )
        .await,
        key
    );
    eprintln!(
        "figure: publishWgKey with paymaster down 2 s and bundler down 5 s: landed after {:?}, {} retries",
        landed.elapsed, landed.retries
    );
}
