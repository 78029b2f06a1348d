//! A hosted paymaster with a sponsorship policy (issue 15 item 4): the sponsor requires a policy
//! id in the ERC-7677 context, and a node configured with `PAYMASTER_CONTEXT` registers through
//! the real client, sponsor, alto and EntryPoint, while the same node without it is refused
//! before anything is charged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod userop_stack;

use std::time::Duration;

use attestmesh_chain::userop::{UserOpConfig, UserOpError};
use attestmesh_core::backoff::BackoffPolicy;
use attestmesh_node::config::parse_paymaster_context;
use userop_stack::{Stack, StackOptions};

const POLICY: &str = "sp_attestmesh_devnet";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_policy_context_registers_and_one_without_is_refused() {
    let stack = Stack::up(StackOptions {
        daily_cap: 2,
        sponsorship_policy_id: Some(POLICY.into()),
        ..StackOptions::default()
    })
    .await;
    let cfg = UserOpConfig {
        receipt_timeout: Duration::from_secs(60),
        backoff: BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        },
        ..UserOpConfig::default()
    };
    let node = stack.node(0xc3).await;

    // Without the context (the default `{}`) and with another policy's id: a typed denial, both
    // times, and nothing charged (the daily cap of 2 still admits the registration below).
    for context in ["{}", r#"{"sponsorshipPolicyId":"sp_someone_else"}"#] {
        let client =
            stack.client_with_context(cfg.clone(), parse_paymaster_context(context).unwrap());
        let err = client
            .submit(node.account(stack.cluster), &node.registration)
            .await
            .expect_err("must be refused");
        assert!(
            matches!(&err, UserOpError::SponsorshipDenied { .. }),
            "{context}: {err:?}"
        );
        assert_eq!(
            err.deny_reason(),
            Some("sponsorship_policy_mismatch"),
            "{err}"
        );
        assert!(!stack.is_member(node.member).await);
    }

    // With the policy named, exactly as an operator writes PAYMASTER_CONTEXT.
    let context =
        parse_paymaster_context(&format!(r#"{{"sponsorshipPolicyId":"{POLICY}"}}"#)).unwrap();
    let client = stack.client_with_context(cfg, context);
    let reg = client
        .submit(node.account(stack.cluster), &node.registration)
        .await
        .unwrap();
    assert!(reg.bootstrap && reg.receipt.success);
    assert_eq!(reg.receipt.paymaster, Some(stack.paymaster));
    assert!(stack.is_member(node.member).await);
}
