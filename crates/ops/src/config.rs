//! `cluster.toml`: everything a cluster is born with (DESIGN §3.1, §3.5).
//!
//! Unknown keys are refused (a misspelt `require_tcb_uptodate` must not silently leave the TCB
//! rule off), and every bad value is reported with its key, e.g. `compose_hashes[1]`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_chain::bindings::ClusterInitArgs;
use attestmesh_core::mesh::MeshCidr;
use serde::Deserialize;

use crate::error::OpsError;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    owner: Option<String>,
    mesh_cidr: Option<String>,
    salt: Option<String>,
    #[serde(default)]
    kms_roots: Vec<String>,
    #[serde(default)]
    compose_hashes: Vec<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    app_ids: Vec<String>,
    allow_any_device: Option<bool>,
    require_tcb_up_to_date: Option<bool>,
}

/// A validated cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub owner: Address,
    pub mesh_cidr: MeshCidr,
    pub salt: B256,
    pub kms_roots: Vec<Address>,
    pub compose_hashes: Vec<B256>,
    pub devices: Vec<B256>,
    pub app_ids: Vec<Address>,
    pub allow_any_device: bool,
    pub require_tcb_up_to_date: bool,
}

/// Parses `"10.13.0.0/16"`; prefix 8..30, host bits zero (what `ClusterInit` accepts).
pub fn parse_cidr(text: &str) -> Result<MeshCidr, String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not of the form a.b.c.d/prefix"))?;
    let ip: Ipv4Addr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .trim()
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    MeshCidr::new(u32::from(ip), prefix).map_err(|e| format!("{text:?}: {e}"))
}

/// Whether two CIDRs share any address.
pub fn cidrs_overlap(a: &MeshCidr, b: &MeshCidr) -> bool {
    let p = a.prefix().min(b.prefix());
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a.ip() & mask == b.ip() & mask
}

fn parse_b256(text: &str) -> Result<B256, String> {
    let body = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("{text:?} must be 0x followed by 64 hex digits"))?;
    if body.len() != 64 {
        return Err(format!(
            "{text:?} must be 0x followed by 64 hex digits (32 bytes), it has {}",
            body.len()
        ));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not hexadecimal"))
}

fn parse_address(text: &str) -> Result<Address, String> {
    let a: Address = text
        .parse()
        .map_err(|_| format!("{text:?} is not a 20-byte 0x address"))?;
    if a == Address::ZERO {
        return Err("the zero address is not allowed".into());
    }
    Ok(a)
}

/// A 32-byte hex value, or any other text hashed with keccak256 (so `salt = "prod-eu-1"` works).
pub fn parse_salt(text: &str) -> Result<B256, String> {
    if text.starts_with("0x") {
        parse_b256(text)
    } else if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(keccak256(text.as_bytes()))
    }
}

impl ClusterConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, OpsError> {
        let text = std::fs::read_to_string(path).map_err(|e| OpsError::Config {
            path: path.to_path_buf(),
            key: "(file)".into(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, OpsError> {
        let err = |key: &str, reason: String| OpsError::Config {
            path: PathBuf::from(path),
            key: key.to_string(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml names the key in its message ("unknown field `x`", "invalid type … for key `y`").
            err("(syntax)", e.message().to_string())
        })?;
        let required = |v: Option<String>, key: &str| v.ok_or_else(|| err(key, "missing".into()));
        let owner = parse_address(&required(raw.owner, "owner")?).map_err(|r| err("owner", r))?;
        let mesh_cidr =
            parse_cidr(&required(raw.mesh_cidr, "mesh_cidr")?).map_err(|r| err("mesh_cidr", r))?;
        let salt = parse_salt(&required(raw.salt, "salt")?).map_err(|r| err("salt", r))?;
        fn list<T: PartialEq + std::fmt::Display>(
            key: &str,
            items: &[String],
            parse: impl Fn(&str) -> Result<T, String>,
            err: &dyn Fn(&str, String) -> OpsError,
        ) -> Result<Vec<T>, OpsError> {
            let mut out: Vec<T> = Vec::with_capacity(items.len());
            for (i, s) in items.iter().enumerate() {
                let v = parse(s).map_err(|r| err(&format!("{key}[{i}]"), r))?;
                if out.contains(&v) {
                    return Err(err(&format!("{key}[{i}]"), format!("{v} is listed twice")));
                }
                out.push(v);
            }
            Ok(out)
        }
        let kms_roots = list("kms_roots", &raw.kms_roots, parse_address, &err)?;
        if kms_roots.is_empty() {
            return Err(err(
                "kms_roots",
                "empty: with no trusted KMS root no node can ever register".into(),
            ));
        }
        let compose_hashes = list("compose_hashes", &raw.compose_hashes, parse_b256, &err)?;
        let devices = list("devices", &raw.devices, parse_b256, &err)?;
        let app_ids = list("app_ids", &raw.app_ids, parse_address, &err)?;
        let allow_any_device = raw
            .allow_any_device
            .ok_or_else(|| err("allow_any_device", "missing (true or false)".into()))?;
        let require_tcb_up_to_date = raw
            .require_tcb_up_to_date
            .ok_or_else(|| err("require_tcb_up_to_date", "missing (true or false)".into()))?;
        if !allow_any_device && devices.is_empty() {
            return Err(err(
                "devices",
                "empty while allow_any_device = false: the boot gate would refuse every VM".into(),
            ));
        }
        Ok(Self {
            owner,
            mesh_cidr,
            salt,
            kms_roots,
            compose_hashes,
            devices,
            app_ids,
            allow_any_device,
            require_tcb_up_to_date,
        })
    }

    /// The factory's init arguments.
    pub fn init_args(&self, member_factory: Address) -> ClusterInitArgs {
        ClusterInitArgs {
            clusterOwner: self.owner,
            meshCidrIp: self.mesh_cidr.ip(),
            meshPrefix: self.mesh_cidr.prefix(),
            memberFactory: member_factory,
            kmsRoots: self.kms_roots.clone(),
            composeHashes: self.compose_hashes.clone(),
            devices: self.devices.clone(),
            appIds: self.app_ids.clone(),
            allowAnyDevice: self.allow_any_device,
            requireTcbUpToDate: self.require_tcb_up_to_date,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
owner = "0x1111111111111111111111111111111111111111"
mesh_cidr = "10.13.0.0/16"
salt = "prod-1"
kms_roots = ["0x2222222222222222222222222222222222222222"]
compose_hashes = ["0x3333333333333333333333333333333333333333333333333333333333333333"]
devices = []
app_ids = []
allow_any_device = true
require_tcb_up_to_date = true
"#;

    fn key_of(text: &str) -> String {
        match ClusterConfig::parse(text, Path::new("c.toml")) {
            Err(OpsError::Config { key, reason, .. }) => format!("{key}: {reason}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn good_config() {
        let c = ClusterConfig::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(c.mesh_cidr.to_string(), "10.13.0.0/16");
        assert_eq!(c.salt, keccak256("prod-1"));
        assert!(c.require_tcb_up_to_date);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(key_of(&GOOD.replace("10.13.0.0/16", "10.13.0.1/16")).starts_with("mesh_cidr"));
        assert!(key_of(&GOOD.replace("10.13.0.0/16", "10.13.0.0/31")).starts_with("mesh_cidr"));
        assert!(
            key_of(&GOOD.replace(
                "0x3333333333333333333333333333333333333333333333333333333333333333",
                "0x33"
            ))
            .starts_with("compose_hashes[0]")
        );
        assert!(key_of(&GOOD.replace("owner = ", "#")).starts_with("owner: missing"));
        assert!(
            key_of(&GOOD.replace(
                "kms_roots = [\"0x2222222222222222222222222222222222222222\"]",
                "kms_roots = []"
            ))
            .starts_with("kms_roots")
        );
        assert!(
            key_of(&GOOD.replace("allow_any_device = true", "allow_any_device = false"))
                .starts_with("devices")
        );
        let typo = key_of(&GOOD.replace("require_tcb_up_to_date", "require_tcb_uptodate"));
        assert!(typo.contains("require_tcb_uptodate"), "{typo}");
    }

    #[test]
    fn overlap() {
        let a = parse_cidr("10.13.0.0/16").unwrap();
        assert!(cidrs_overlap(&a, &parse_cidr("10.13.128.0/24").unwrap()));
        assert!(cidrs_overlap(&a, &parse_cidr("10.0.0.0/8").unwrap()));
        assert!(!cidrs_overlap(&a, &parse_cidr("10.14.0.0/16").unwrap()));
    }
}
