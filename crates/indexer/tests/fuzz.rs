//! Fuzz targets of the Indexer's decoders (proptest; BRIEF convention: one `fuzz_<decoder>` per
//! decoder, cases from `ATTESTMESH_FUZZ_CASES`, default 256).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_primitives::{Address, B256};
use attestmesh_chain::read::Log;
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::push::PushError;
use attestmesh_fuzzkit::config;
use proptest::prelude::*;

/// A well-formed `eth_getLogs` answer (two logs, as anvil prints them).
const VALID: &str = r#"[{"address":"0xc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1","topics":["0x0101010101010101010101010101010101010101010101010101010101010101","0x0202020202020202020202020202020202020202020202020202020202020202"],"data":"0xdeadbeef","blockHash":"0xb1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1","blockNumber":"0x4d2","blockTimestamp":"0x6553f100","transactionHash":"0x7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f","transactionIndex":"0x0","logIndex":"0x3","removed":false},{"address":"0xc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1","topics":[],"data":"0x","blockHash":"0xb1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1","blockNumber":"0x4d2","transactionHash":"0x7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f","transactionIndex":"0x0","logIndex":"0x4"}]"#;

/// What the follower does with a decoded log (`Log::push_body`, then sign). Never panics; more than four
/// topics (no EVM emits them, a lying RPC could) is the typed error.
fn sign_as_push(l: &Log) -> Result<(), PushError> {
    l.push_body()
        .sign(&Ed25519Secret::from_seed([3; 32]))
        .map(|_| ())
}

proptest! {
    #![proptest_config(config())]

    /// `eth_getLogs` answers as the Indexer follower decodes them (`Vec<Log>`): arbitrary
    /// text and mutated valid answers never panic, decode or fail cleanly, and whatever decodes
    /// signs as a push or fails with `TooManyTopics`; the valid answer decodes field by field;
    /// a truncated answer never decodes.
    #[test]
    fn fuzz_rpc_log(
        junk in ".{0,300}",
        junk_bytes in proptest::collection::vec(any::<u8>(), 0..300),
        at in any::<usize>(),
        mask in 1u8..=255,
        insert in any::<u8>(),
        cut in any::<usize>(),
        op in 0u8..3,
    ) {
        for input in [junk.as_bytes(), junk_bytes.as_slice()] {
            if let Ok(logs) = serde_json::from_slice::<Vec<Log>>(input) {
                for l in &logs {
                    let r = sign_as_push(l);
                    prop_assert!(r.is_ok() || matches!(r, Err(PushError::TooManyTopics(_))));
                }
            }
        }

        let logs: Vec<Log> = serde_json::from_str(VALID).unwrap();
        prop_assert_eq!(logs.len(), 2);
        prop_assert_eq!(logs[0].address, Address::repeat_byte(0xc1));
        prop_assert_eq!(&logs[0].topics, &vec![B256::repeat_byte(1), B256::repeat_byte(2)]);
        prop_assert_eq!(logs[0].data.as_ref(), &[0xde, 0xad, 0xbe, 0xef]);
        prop_assert_eq!(logs[0].block_number, 1234);
        prop_assert_eq!(logs[0].log_index, 3);
        prop_assert!(!logs[1].removed, "removed defaults to false");

        let mut m = VALID.as_bytes().to_vec();
        let i = at % m.len();
        match op {
            0 => m[i] ^= mask,
            1 => m.insert(i, insert),
            _ => m.truncate(cut % m.len()),
        }
        match serde_json::from_slice::<Vec<Log>>(&m) {
            Ok(logs) => {
                prop_assert!(op != 2, "a truncated answer decoded");
                for l in &logs {
                    let r = sign_as_push(l);
                    prop_assert!(r.is_ok() || matches!(r, Err(PushError::TooManyTopics(_))));
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
