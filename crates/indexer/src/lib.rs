//! The attested Indexer: follows every cluster of a factory and pushes signed wake-ups.
