//! What `devnet up` needs before it starts anything: root, TUN, iproute2, the npm toolchain.

use super::*;

/// True when this process may build namespaces.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Finds the repository root from `start` upward (the directory holding `artifacts/` and
/// `package.json`), so `attestmesh devnet up` works from anywhere inside a checkout.
pub fn find_repo(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|d| {
        (d.join("artifacts/EntryPointV07.json").is_file() && d.join("package.json").is_file())
            .then(|| d.to_path_buf())
    })
}

/// Root, TUN, iproute2, and what `npm ci` installs; the first missing one is reported.
pub fn check_prerequisites(cfg: &UpConfig) -> Result<(), DevnetError> {
    if !is_root() {
        return Err(DevnetError::NeedsRoot);
    }
    let missing = |what: &str, path: &Path, hint: &str| DevnetError::Prerequisite {
        what: what.into(),
        path: path.to_path_buf(),
        hint: hint.into(),
    };
    let tun = Path::new("/dev/net/tun");
    if !tun.exists() {
        return Err(missing(
            "/dev/net/tun",
            tun,
            "load the tun module (`modprobe tun`) or run the container with --device /dev/net/tun",
        ));
    }
    if std::process::Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err(missing(
            "iproute2 (`ip`)",
            Path::new("ip"),
            "install iproute2",
        ));
    }
    let anvil = AnvilConfig::from_repo(&cfg.repo).bin;
    if !anvil.exists() {
        return Err(missing("anvil", &anvil, "run `npm ci` at the repo root"));
    }
    let alto = AltoConfig::from_repo(&cfg.repo, "", &cfg.dir);
    if !alto.alto_js.exists() {
        return Err(missing(
            "the alto bundler",
            &alto.alto_js,
            "run `npm ci` at the repo root",
        ));
    }
    if std::process::Command::new(&alto.node)
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err(missing(
            "node (Node.js, runs alto)",
            &alto.node,
            "install Node.js 20+ or set NODE",
        ));
    }
    for name in ["EntryPointV07", "ClusterDiamondFactory", "SponsorPaymaster"] {
        let p = cfg.repo.join("artifacts").join(format!("{name}.json"));
        if !p.is_file() {
            return Err(missing(
                "contract artifacts",
                &p,
                "run from a complete checkout (artifacts/ is committed)",
            ));
        }
    }
    if !cfg.exe.is_file() {
        return Err(missing(
            "the attestmesh binary",
            &cfg.exe,
            "build it (`cargo build -p attestmesh-cli`)",
        ));
    }
    Ok(())
}

/// True when `exe` has subcommand `sub` (the devnet adapts to what this build contains).
pub(super) fn has_subcommand(exe: &Path, sub: &str) -> bool {
    std::process::Command::new(exe)
        .args([sub, "--help"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
