//! Policy unit tests over an in-memory chain: every deny reason, the order of checks, the
//! provenance cache, the daily cap.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::Address;
use attestmesh_sponsor::policy::{
    Decision, DenyReason, Mode, OriginKind, Policy, PolicyConfig, PolicyError, TrustSet,
};
use attestmesh_sponsor::store::CounterStore;
use common::*;

const NOW: u64 = 1_750_000_000;

struct Fixture {
    policy: Policy<MemView>,
    state: Arc<common::MemState>,
    _dir: tempfile::TempDir,
}

fn fixture_with(cap: u32, tweak: impl FnOnce(&mut PolicyConfig)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CounterStore::open(&dir.path().join("c.redb")).expect("store"));
    let state = MemState::fixture();
    let mut cfg = policy_config(cap);
    tweak(&mut cfg);
    Fixture {
        policy: Policy::new(cfg, MemView(state.clone()), store),
        state,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(100, |_| {})
}

async fn decide(f: &Fixture, op: &attestmesh_core::userop::UserOperation) -> Decision {
    f.policy
        .decide(op, entry_point(), CHAIN_ID, NOW, Mode::Check)
        .await
        .expect("decides")
}

async fn deny(f: &Fixture, op: &attestmesh_core::userop::UserOperation) -> DenyReason {
    match decide(f, op).await {
        Decision::Deny(r) => r,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn sponsors_member_factory_members_and_allowlisted_app_ids() {
    let f = fixture();
    match decide(&f, &good_op(0)).await {
        Decision::Sponsor {
            origin,
            inner,
            used_today,
            charged_wei,
        } => {
            assert_eq!(origin.kind, OriginKind::MemberFactory);
            assert_eq!(origin.cluster, CLUSTER_A);
            assert_eq!(inner, "setCskCommitment");
            assert_eq!(used_today, 0);
            assert_eq!(charged_wei, 0, "a stub decision charges nothing");
        }
        d => panic!("{d:?}"),
    }
    let app = op(APP_A, 0, execute(CLUSTER_A, 0, &set_csk(1)));
    match decide(&f, &app).await {
        Decision::Sponsor { origin, .. } => assert_eq!(origin.kind, OriginKind::AllowlistedAppId),
        d => panic!("{d:?}"),
    }
    // Every allowlisted inner selector passes.
    for (name, sel) in attestmesh_sponsor::calls::ALLOWED_INNER_SELECTORS {
        let mut inner = sel.to_vec();
        inner.extend_from_slice(&[0u8; 64]);
        match decide(&f, &op(NODE_A, 0, execute(CLUSTER_A, 0, &inner))).await {
            Decision::Sponsor { inner, .. } => assert_eq!(inner, name),
            d => panic!("{name}: {d:?}"),
        }
    }
}

#[tokio::test]
async fn every_deny_reason() {
    let f = fixture();
    let good = good_op(0);

    let d = f
        .policy
        .decide(&good, entry_point(), CHAIN_ID + 1, NOW, Mode::Check)
        .await
        .expect("decides");
    assert_eq!(d, Decision::Deny(DenyReason::ChainIdMismatch));

    let d = f
        .policy
        .decide(
            &good,
            Address::repeat_byte(0x5f),
            CHAIN_ID,
            NOW,
            Mode::Check,
        )
        .await
        .expect("decides");
    assert_eq!(d, Decision::Deny(DenyReason::UnsupportedEntryPoint));

    for sender in [STRANGER, UNLISTED_APP, ROGUE_APP] {
        let o = op(sender, 0, execute(CLUSTER_A, 0, &set_csk(1)));
        assert_eq!(deny(&f, &o).await, DenyReason::SenderNotMember, "{sender}");
    }

    let mut raw = good.clone();
    raw.call_data = set_csk(1).into();
    assert_eq!(deny(&f, &raw).await, DenyReason::NotExecuteCall);
    raw.call_data = alloy_primitives::Bytes::new();
    assert_eq!(deny(&f, &raw).await, DenyReason::NotExecuteCall);

    let o = op(NODE_A, 0, execute(CLUSTER_A, 1, &set_csk(1)));
    assert_eq!(deny(&f, &o).await, DenyReason::NonzeroValue);

    let mut owner_cmd = SEL_SEND_OWNER_COMMAND.to_vec();
    owner_cmd.extend_from_slice(&[0u8; 96]);
    assert_eq!(
        deny(&f, &op(NODE_A, 0, execute(CLUSTER_A, 0, &owner_cmd))).await,
        DenyReason::InnerSelectorNotAllowed
    );
    assert_eq!(
        deny(&f, &op(NODE_A, 0, execute(CLUSTER_A, 0, &[0x3e, 0xeb]))).await,
        DenyReason::InnerSelectorNotAllowed
    );

    for target in [ROGUE_CLUSTER, STRANGER, MEMBER_FACTORY] {
        let o = op(NODE_A, 0, execute(target, 0, &set_csk(1)));
        assert_eq!(
            deny(&f, &o).await,
            DenyReason::TargetNotTrustedCluster,
            "{target}"
        );
    }

    let o = op(NODE_A, 0, execute(CLUSTER_B, 0, &set_csk(1)));
    assert_eq!(deny(&f, &o).await, DenyReason::TargetNotSenderCluster);

    let capped = fixture_with(0, |_| {});
    assert_eq!(deny(&capped, &good).await, DenyReason::DailyCapExceeded);
}

#[tokio::test]
async fn first_failure_wins_in_documented_order() {
    let f = fixture_with(0, |_| {});
    // An op that fails every check at once: stranger sender, wrong target, value, bad selector.
    let mut worst = op(
        STRANGER,
        0,
        execute(ROGUE_CLUSTER, 5, &SEL_SEND_OWNER_COMMAND),
    );
    let ep = entry_point();
    let run = |op: attestmesh_core::userop::UserOperation, ep: Address, chain: u64| {
        let p = &f.policy;
        async move {
            p.decide(&op, ep, chain, NOW, Mode::Check)
                .await
                .expect("decides")
        }
    };
    assert_eq!(
        run(worst.clone(), Address::ZERO, 1).await,
        Decision::Deny(DenyReason::ChainIdMismatch)
    );
    assert_eq!(
        run(worst.clone(), Address::ZERO, CHAIN_ID).await,
        Decision::Deny(DenyReason::UnsupportedEntryPoint)
    );
    assert_eq!(
        run(worst.clone(), ep, CHAIN_ID).await,
        Decision::Deny(DenyReason::SenderNotMember)
    );
    // Fix one thing at a time; the next reason in the table surfaces.
    worst.sender = NODE_A;
    let call = worst.call_data.clone();
    worst.call_data = alloy_primitives::Bytes::from(vec![0xde, 0xad]);
    assert_eq!(
        run(worst.clone(), ep, CHAIN_ID).await,
        Decision::Deny(DenyReason::NotExecuteCall)
    );
    worst.call_data = call;
    assert_eq!(
        run(worst.clone(), ep, CHAIN_ID).await,
        Decision::Deny(DenyReason::NonzeroValue)
    );
    worst.call_data = execute(ROGUE_CLUSTER, 0, &SEL_SEND_OWNER_COMMAND);
    assert_eq!(
        run(worst.clone(), ep, CHAIN_ID).await,
        Decision::Deny(DenyReason::InnerSelectorNotAllowed)
    );
    worst.call_data = execute(ROGUE_CLUSTER, 0, &set_csk(1));
    assert_eq!(
        run(worst.clone(), ep, CHAIN_ID).await,
        Decision::Deny(DenyReason::TargetNotTrustedCluster)
    );
    worst.call_data = execute(CLUSTER_B, 0, &set_csk(1));
    assert_eq!(
        run(worst.clone(), ep, CHAIN_ID).await,
        Decision::Deny(DenyReason::TargetNotSenderCluster)
    );
    worst.call_data = execute(CLUSTER_A, 0, &set_csk(1));
    // Every gas and fee value out of bounds at once; fixed one at a time in table order.
    worst.call_gas_limit = 10_000_000;
    worst.verification_gas_limit = 10_000_000;
    worst.paymaster = Some(PAYMASTER);
    worst.paymaster_verification_gas_limit = 10_000_000;
    worst.paymaster_post_op_gas_limit = 1;
    worst.pre_verification_gas = alloy_primitives::U256::from(10_000_000u64);
    worst.max_priority_fee_per_gas = 1000 * GWEI;
    worst.max_fee_per_gas = 1000 * GWEI;
    type Fix = fn(&mut attestmesh_core::userop::UserOperation);
    let steps: [(DenyReason, Fix); 8] = [
        (DenyReason::CallGasLimitTooHigh, |o| {
            o.call_gas_limit = 60_000
        }),
        (DenyReason::VerificationGasLimitTooHigh, |o| {
            o.verification_gas_limit = 25_000
        }),
        (DenyReason::PaymasterVerificationGasLimitTooHigh, |o| {
            o.paymaster_verification_gas_limit = 100_000
        }),
        (DenyReason::PaymasterPostOpGasLimitTooHigh, |o| {
            o.paymaster_post_op_gas_limit = 0
        }),
        (DenyReason::PreVerificationGasTooHigh, |o| {
            o.pre_verification_gas = alloy_primitives::U256::from(50_000u64)
        }),
        (DenyReason::MaxPriorityFeeTooHigh, |o| {
            o.max_priority_fee_per_gas = 3 * GWEI
        }),
        (DenyReason::MaxFeeTooHigh, |o| o.max_fee_per_gas = 6 * GWEI),
        (DenyReason::DailyCapExceeded, |_| {}),
    ];
    for (want, fix) in steps {
        assert_eq!(run(worst.clone(), ep, CHAIN_ID).await, Decision::Deny(want));
        fix(&mut worst);
    }

    // The trust set comes after the cluster checks: the same good op from cluster A, with a
    // trust set that does not cover A (by address or by owner).
    let good = good_op(0);
    for trust in [
        TrustSet::clusters([CLUSTER_B]),
        TrustSet::owners([ROGUE_OWNER]),
    ] {
        let f = fixture_with(100, |c| c.trust = trust.clone());
        assert_eq!(
            deny(&f, &good).await,
            DenyReason::ClusterNotInTrustSet,
            "{trust:?}"
        );
    }
    let by_owner = fixture_with(100, |c| c.trust = TrustSet::owners([OPERATOR]));
    assert!(matches!(
        decide(&by_owner, &good).await,
        Decision::Sponsor { .. }
    ));
    // The wei budgets come last: a sender's, then its cluster's.
    let broke = fixture_with(100, |c| c.daily_wei_per_sender = 1);
    assert_eq!(
        deny(&broke, &good).await,
        DenyReason::DailySenderBudgetExceeded
    );
    let broke = fixture_with(100, |c| c.daily_wei_per_cluster = 1);
    assert_eq!(
        deny(&broke, &good).await,
        DenyReason::DailyClusterBudgetExceeded
    );

    // The reason strings are the documented, stable ones, in this order.
    let strings: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        strings,
        [
            "sponsorship_policy_mismatch",
            "chain_id_mismatch",
            "unsupported_entry_point",
            "sender_not_member",
            "not_execute_call",
            "nonzero_value",
            "inner_selector_not_allowed",
            "target_not_trusted_cluster",
            "target_not_sender_cluster",
            "cluster_not_in_trust_set",
            "call_gas_limit_too_high",
            "verification_gas_limit_too_high",
            "paymaster_verification_gas_limit_too_high",
            "paymaster_post_op_gas_limit_too_high",
            "pre_verification_gas_too_high",
            "max_priority_fee_too_high",
            "max_fee_too_high",
            "registration_would_revert",
            "daily_cap_exceeded",
            "daily_sender_budget_exceeded",
            "daily_cluster_budget_exceeded"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn positive_provenance_is_cached_negative_is_short_lived() {
    let f = fixture_with(100, |c| c.negative_ttl = Duration::from_millis(200));
    decide(&f, &good_op(0)).await;
    let after_first = f.state.lookups.load(Ordering::Relaxed);
    assert!(
        after_first >= 3,
        "cold decision reads the chain ({after_first})"
    );
    for n in 1..20 {
        decide(&f, &good_op(n)).await;
    }
    assert_eq!(
        f.state.lookups.load(Ordering::Relaxed),
        after_first,
        "warm decisions read nothing"
    );

    // A stranger is denied; the denial is cached briefly…
    let stranger = op(STRANGER, 0, execute(CLUSTER_A, 0, &set_csk(1)));
    assert_eq!(deny(&f, &stranger).await, DenyReason::SenderNotMember);
    let l = f.state.lookups.load(Ordering::Relaxed);
    assert_eq!(deny(&f, &stranger).await, DenyReason::SenderNotMember);
    assert_eq!(
        f.state.lookups.load(Ordering::Relaxed),
        l,
        "negative answer reused within its TTL"
    );
    // …then the stranger gets deployed by the member factory and is sponsored once it expires.
    f.state.members.lock().expect("lock").insert(STRANGER);
    f.state
        .cluster_of
        .lock()
        .expect("lock")
        .insert(STRANGER, CLUSTER_A);
    // Still inside the 200 ms negative TTL: the denial stands without a lookup…
    tokio::time::advance(Duration::from_millis(199)).await;
    assert_eq!(deny(&f, &stranger).await, DenyReason::SenderNotMember);
    assert_eq!(f.state.lookups.load(Ordering::Relaxed), l);
    // …and past it the chain is asked again.
    tokio::time::advance(Duration::from_millis(2)).await;
    assert!(matches!(
        decide(&f, &stranger).await,
        Decision::Sponsor { .. }
    ));

    // Positive answers outlive a chain outage.
    f.state.down.store(true, Ordering::Relaxed);
    assert!(matches!(
        decide(&f, &good_op(99)).await,
        Decision::Sponsor { .. }
    ));
}

#[tokio::test]
async fn chain_failure_is_an_error_not_a_denial() {
    let f = fixture();
    f.state.down.store(true, Ordering::Relaxed);
    let e = f
        .policy
        .decide(&good_op(0), entry_point(), CHAIN_ID, NOW, Mode::Check)
        .await
        .expect_err("must fail");
    assert!(matches!(e, PolicyError::Chain(_)), "{e}");
    // Nothing was cached from the failure.
    f.state.down.store(false, Ordering::Relaxed);
    assert!(matches!(
        decide(&f, &good_op(0)).await,
        Decision::Sponsor { .. }
    ));
}

#[tokio::test]
async fn daily_cap_counts_charges_only_once_per_nonce_and_resets_next_day() {
    let f = fixture_with(2, |_| {});
    let ep = entry_point();
    let charge = |n: u64, now: u64| {
        let p = &f.policy;
        async move {
            p.decide(&good_op(n), ep, CHAIN_ID, now, Mode::Charge)
                .await
                .expect("decides")
        }
    };
    // Checks never consume.
    for _ in 0..5 {
        assert!(matches!(
            decide(&f, &good_op(0)).await,
            Decision::Sponsor { used_today: 0, .. }
        ));
    }
    // The first charge counts the operation's maximum cost as spend; the retry counts nothing.
    let cost = attestmesh_sponsor::bounds::max_cost(&good_op(0));
    assert!(cost > 0);
    assert!(matches!(
        charge(0, NOW).await,
        Decision::Sponsor { used_today: 1, charged_wei, .. } if charged_wei == cost
    ));
    assert!(
        matches!(
            charge(0, NOW).await,
            Decision::Sponsor {
                used_today: 1,
                charged_wei: 0,
                ..
            }
        ),
        "same nonce: no second charge"
    );
    assert!(matches!(
        charge(1, NOW).await,
        Decision::Sponsor { used_today: 2, .. }
    ));
    assert_eq!(
        charge(2, NOW).await,
        Decision::Deny(DenyReason::DailyCapExceeded)
    );
    assert_eq!(
        deny(&f, &good_op(2)).await,
        DenyReason::DailyCapExceeded,
        "stub check sees the cap too"
    );
    // Another sender has its own allowance.
    let other = op(APP_A, 0, execute(CLUSTER_A, 0, &set_csk(1)));
    assert!(matches!(
        f.policy
            .decide(&other, ep, CHAIN_ID, NOW, Mode::Charge)
            .await
            .expect("decides"),
        Decision::Sponsor { used_today: 1, .. }
    ));
    // Next UTC day.
    assert!(matches!(
        charge(2, NOW + 86_400).await,
        Decision::Sponsor { used_today: 1, .. }
    ));
}

#[tokio::test]
async fn bootstrap_that_would_revert_is_not_paid_for() {
    let f = fixture();
    // dstack_register's selector; the in-memory chain decides by sender whether it would revert.
    let register = [0x27, 0xb3, 0xdd, 0xfa, 0, 0, 0, 0];
    let op_a = op(NODE_A, 0, execute(CLUSTER_A, 0, &register));
    assert!(matches!(decide(&f, &op_a).await, Decision::Sponsor { .. }));

    f.state
        .failing_registrations
        .lock()
        .expect("lock")
        .insert(NODE_A);
    assert_eq!(deny(&f, &op_a).await, DenyReason::RegistrationWouldRevert);
    // Only registrations are simulated: the same sender's other operations are unaffected.
    let other = op(NODE_A, 1, execute(CLUSTER_A, 0, &set_csk(1)));
    assert!(matches!(decide(&f, &other).await, Decision::Sponsor { .. }));
}
