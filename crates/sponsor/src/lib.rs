//! Sponsorship policy and the ERC-7677 paymaster service.
