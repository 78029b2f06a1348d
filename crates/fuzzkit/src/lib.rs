//! The common half of every `tests/fuzz.rs` in the workspace (DESIGN §15.7).
//!
//! We fuzz with proptest on the stable toolchain (cargo-fuzz needs nightly): each target runs
//! inside `cargo test`, shrinks what it finds, and is bounded by one case budget,
//! `ATTESTMESH_FUZZ_CASES` (default 256; CI sets it), so the whole campaign has a known cost.
//! Arbitrary bytes rarely get past a decoder's first length check, so every target also feeds
//! [`mutate`]d copies of a real, well-formed input.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per target when `ATTESTMESH_FUZZ_CASES` is unset or not a number.
pub const DEFAULT_CASES: u32 = 256;

/// The proptest configuration of a fuzz target: `ATTESTMESH_FUZZ_CASES` cases, and no
/// regression files (a crash found becomes a named `regression_*` test instead).
pub fn config() -> Config {
    let cases = std::env::var("ATTESTMESH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One edit of a valid encoding. Applied alone, every variant changes the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// XOR a non-zero mask into the byte at this position (modulo the length).
    Flip { at: usize, mask: u8 },
    /// Insert a byte at this position (modulo the length + 1).
    Insert { at: usize, byte: u8 },
    /// Remove the byte at this position (modulo the length).
    Remove { at: usize },
    /// Cut to a strictly shorter length (this modulo the length).
    Truncate { len: usize },
}

/// One [`Edit`].
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert { at, byte }),
        any::<usize>().prop_map(|at| Edit::Remove { at }),
        any::<usize>().prop_map(|len| Edit::Truncate { len }),
    ]
}

/// One to five [`Edit`]s.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..6)
}

/// `valid` with `edits` applied in order. On empty input, the edits that need a byte append a
/// zero instead, so an edit never does nothing.
pub fn mutate(valid: impl AsRef<[u8]>, edits: &[Edit]) -> Vec<u8> {
    let mut b = valid.as_ref().to_vec();
    for e in edits {
        let n = b.len();
        match *e {
            Edit::Flip { at, mask } if n > 0 => b[at % n] ^= mask,
            Edit::Insert { at, byte } => b.insert(at % (n + 1), byte),
            Edit::Remove { at } if n > 0 => {
                b.remove(at % n);
            }
            Edit::Truncate { len } if n > 0 => b.truncate(len % n),
            _ => b.push(0),
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #![proptest_config(config())]

        /// A single edit always changes the input (what "a mutated input never verifies" needs).
        #[test]
        fn one_edit_changes_the_bytes(
            valid in proptest::collection::vec(any::<u8>(), 0..64),
            e in edit(),
        ) {
            prop_assert_ne!(mutate(&valid, &[e]), valid);
        }
    }
}
