//! Fixtures that several crates' tests share, kept once so they cannot drift apart.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The sponsor's signer key in the local test stacks (node e2e, cli userop tests): a throwaway
/// key, the `attestmesh-sponsor` tests' `SIGNER_KEY` as bytes.
pub const SPONSOR_KEY: [u8; 32] = [0x5e; 32];

/// Writes [`SPONSOR_KEY`] as hex to `dir/sponsor.key`, mode 0600 (the sponsor refuses a signer
/// key file that group or others can read), and returns the path.
pub fn sponsor_key_file(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("sponsor.key");
    let hex: String = SPONSOR_KEY.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, hex)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}
