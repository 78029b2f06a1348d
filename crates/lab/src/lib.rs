//! End-to-end harness: network namespaces, devnet, attack tests.
