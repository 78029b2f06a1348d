//! What the agent and the Indexer assume about the chains they run on, by chain id.
//!
//! The confirmation depth is how far below the head an event must be before it is acted on
//! (DESIGN §9.1). Zero is right only on a local dev chain that never reorganises; on Base the
//! sequencer's unsafe head can still be replaced, so a public chain gets a depth by default and
//! an operator must ask for less explicitly.

/// Base mainnet.
pub const BASE: u64 = 8453;
/// Base Sepolia (testnet).
pub const BASE_SEPOLIA: u64 = 84532;
/// anvil's and hardhat's default chain id.
pub const ANVIL: u64 = 31337;
/// geth `--dev` and ganache.
pub const GETH_DEV: u64 = 1337;

/// Depth on Base and Base Sepolia: 10 blocks of 2 s, i.e. 20 s behind the head — past the
/// sequencer reorgs seen on OP-stack chains, well short of L1 finality (which would delay every
/// membership change by ~15 minutes).
pub const BASE_CONFIRMATIONS: u64 = 10;

/// Depth for a chain id we know nothing about: Base's, the deepest default we have.
pub const UNKNOWN_CHAIN_CONFIRMATIONS: u64 = BASE_CONFIRMATIONS;

/// Whether `chain_id` is a local development chain (no reorgs, instant or interval mining).
pub const fn is_dev_chain(chain_id: u64) -> bool {
    matches!(chain_id, ANVIL | GETH_DEV)
}

/// The confirmation depth used when the operator sets none.
pub const fn default_confirmations(chain_id: u64) -> u64 {
    match chain_id {
        ANVIL | GETH_DEV => 0,
        BASE | BASE_SEPOLIA => BASE_CONFIRMATIONS,
        _ => UNKNOWN_CHAIN_CONFIRMATIONS,
    }
}

/// A human name for the chain ids we know, for logs.
pub const fn chain_name(chain_id: u64) -> Option<&'static str> {
    match chain_id {
        BASE => Some("Base"),
        BASE_SEPOLIA => Some("Base Sepolia"),
        ANVIL => Some("anvil"),
        GETH_DEV => Some("dev chain"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_chains_need_no_depth_and_public_ones_do() {
        assert_eq!(default_confirmations(ANVIL), 0);
        assert_eq!(default_confirmations(GETH_DEV), 0);
        assert_eq!(default_confirmations(BASE), 10);
        assert_eq!(default_confirmations(BASE_SEPOLIA), 10);
        assert_eq!(default_confirmations(1), UNKNOWN_CHAIN_CONFIRMATIONS);
        assert!(is_dev_chain(ANVIL) && !is_dev_chain(BASE));
        assert_eq!(chain_name(BASE), Some("Base"));
        assert_eq!(chain_name(7), None);
    }
}
