//! `cluster compose-hash` and `cluster app-compose`: the compose hash an operator allowlists is
//! dstack's — sha256 of the `app-compose.json` bytes (`attestmesh_tee::compose`) — never a hash
//! of the docker-compose file. Neither command touches the chain.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use attestmesh_tee::compose;

/// Largest manifest read (dstack's VMM caps uploads far below this).
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct HashArgs {
    /// The app-compose.json exactly as it will be deployed (as given to dstack's VMM or Phala
    /// Cloud). Prints its compose hash (0x…, 32 bytes) on stdout.
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The docker-compose file to embed (e.g. deploy/docker-compose.yaml).
    pub docker_compose: PathBuf,
    /// The dstack app name recorded in the manifest.
    #[arg(long)]
    pub name: String,
    /// Where to write app-compose.json; refuses to overwrite an existing file unless --force.
    #[arg(long, short)]
    pub out: PathBuf,
    /// An encrypted variable dstack may pass in (repeatable); default: every variable the
    /// docker-compose file interpolates (`${NAME}`).
    #[arg(long = "allowed-env", value_name = "NAME")]
    pub allowed_envs: Vec<String>,
    /// Publish the CVM's logs on the dstack dashboard (default: private).
    #[arg(long)]
    pub public_logs: bool,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

fn read_limited(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {} is not a regular file", path.display());
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        bail!(
            "{what} {} is {} bytes; larger than {MAX_MANIFEST_BYTES} bytes is not a manifest",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Notes about a manifest that are not errors but change what runs: printed on stderr.
fn warnings(app: &compose::AppCompose, bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let missing = app.missing_allowed_envs();
    if !missing.is_empty() {
        out.push(format!(
            "the docker-compose file uses {} but allowed_envs does not list {}: dstack will not \
             pass {} in, so compose sees {} unset",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            if missing.len() == 1 { "it" } else { "them" },
            if missing.len() == 1 { "it" } else { "them" },
        ));
    }
    if !compose::is_canonical(bytes)? {
        out.push(format!(
            "this file is not in canonical form: dstack-sdk's get_compose_hash gives {} for it, \
             but dstack measures and the KMS checks the file's bytes — allowlist the hash above \
             and deploy this exact file (or rewrite it with `attestmesh cluster app-compose`)",
            compose::canonical_hash(bytes)?
        ));
    }
    Ok(out)
}

pub fn run_hash(a: HashArgs) -> anyhow::Result<()> {
    let bytes = read_limited(&a.file, "app-compose manifest")?;
    let app = compose::parse(&bytes).with_context(|| {
        let hint = if looks_like_yaml(&bytes) {
            " — it looks like a docker-compose file; dstack hashes the app-compose.json that \
             embeds it: build one with `attestmesh cluster app-compose <file> --name <app> --out \
             app-compose.json`"
        } else {
            ""
        };
        format!("{} is not an app-compose manifest{hint}", a.file.display())
    })?;
    println!("{}", compose::sha256(&bytes));
    for w in warnings(&app, &bytes)? {
        eprintln!("warning: {w}");
    }
    Ok(())
}

pub fn run_build(a: BuildArgs) -> anyhow::Result<()> {
    let yaml_bytes = read_limited(&a.docker_compose, "docker-compose file")?;
    let yaml = String::from_utf8(yaml_bytes)
        .with_context(|| format!("{} is not UTF-8", a.docker_compose.display()))?;
    if a.name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    let mut spec = compose::AppComposeSpec::node(&a.name, &yaml);
    if !a.allowed_envs.is_empty() {
        spec.allowed_envs = a.allowed_envs;
    }
    spec.public_logs = a.public_logs;
    let manifest = compose::build_app_compose(&yaml, &spec)?;
    if a.out.exists() && !a.force {
        bail!(
            "{} exists; pass --force to overwrite it (its hash may be allowlisted already)",
            a.out.display()
        );
    }
    attestmesh_atomicfile::write(&a.out, manifest.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let app = compose::parse(manifest.as_bytes())?;
    println!("{}", compose::sha256(manifest.as_bytes()));
    eprintln!(
        "wrote {} (allowed_envs: {}); its compose hash is above",
        a.out.display(),
        app.allowed_envs().join(", ")
    );
    for w in warnings(&app, manifest.as_bytes())? {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// A document that starts like YAML (a `services:` key or a comment), not like JSON.
fn looks_like_yaml(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    text.trim_start().starts_with('#')
        || first.is_some_and(|l| !l.starts_with('{') && l.contains(':'))
}
