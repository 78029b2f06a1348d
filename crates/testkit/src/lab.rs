//! Whether a test that cannot run here skips or fails.
//!
//! A lab test needs what a developer's machine may lack (root for network namespaces,
//! `/dev/net/tun`, iproute2, a built binary, util-linux). Without it the test skips with the
//! reason — unless [`REQUIRE_LAB`] is set, as `scripts/test` and CI do, where a missing
//! prerequisite must fail the run instead of letting it pass silently.

use std::fmt::Display;

/// The environment variable that turns every skip into a failure.
pub const REQUIRE_LAB: &str = "ATTESTMESH_REQUIRE_LAB";

/// Whether skips are forbidden: [`REQUIRE_LAB`] is set to anything but empty or `0`.
pub fn required() -> bool {
    std::env::var_os(REQUIRE_LAB).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Records that the calling test cannot run here because of `why`; the caller then returns.
/// Panics instead when [`required`].
#[track_caller]
pub fn skip(why: impl Display) {
    assert!(
        !required(),
        "{REQUIRE_LAB} is set but the test cannot run: {why}"
    );
    eprintln!("skipped: {why}");
}

/// `Ok(v)` as `Some(v)`; `Err(why)` [skipped](skip) as `None`.
#[track_caller]
pub fn or_skip<T, E: Display>(r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(why) => {
            skip(why);
            None
        }
    }
}
