//! Member ids and how a user names a peer on the command line.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::AppError;

/// A 32-byte member id (DESIGN §3), shown as `0x`-prefixed hex like the chain and the CLI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub [u8; 32]);

impl MemberId {
    /// From the agent's `bytes` field; anything but 32 bytes means a broken agent or proto skew.
    pub fn from_slice(field: &str, b: &[u8]) -> Result<Self, AppError> {
        <[u8; 32]>::try_from(b).map(MemberId).map_err(|_| {
            AppError::BadAgentData(format!("{field} is {} bytes, expected 32", b.len()))
        })
    }

    /// The first 4 bytes, for compact human output (`peers`, logs); never for identification.
    pub fn short(&self) -> String {
        format!("0x{}", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({self})")
    }
}

impl FromStr for MemberId {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, AppError> {
        let bad = |why: &str| AppError::InvalidMemberId {
            input: s.to_owned(),
            why: why.to_owned(),
        };
        let h = s.strip_prefix("0x").unwrap_or(s);
        if h.len() != 64 {
            return Err(bad(&format!("expected 64 hex digits, got {}", h.len())));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).map_err(|e| bad(&e.to_string()))?;
        Ok(MemberId(out))
    }
}

/// How a peer is named on the command line: its full member id, a unique hex prefix of it (as
/// `peers` prints), or its mesh IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSpec {
    Id(MemberId),
    Prefix(String),
    MeshIp(Ipv4Addr),
}

impl FromStr for PeerSpec {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, AppError> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(PeerSpec::MeshIp(ip));
        }
        let h = s.strip_prefix("0x").unwrap_or(s);
        if h.len() == 64 {
            return s.parse().map(PeerSpec::Id);
        }
        if (4..64).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(PeerSpec::Prefix(h.to_ascii_lowercase()));
        }
        Err(AppError::InvalidMemberId {
            input: s.to_owned(),
            why: "expected a member id (64 hex digits), a unique prefix of at least 4 hex \
                  digits, or a mesh IP"
                .into(),
        })
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSpec::Id(id) => write!(f, "{id}"),
            PeerSpec::Prefix(p) => write!(f, "0x{p}…"),
            PeerSpec::MeshIp(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_round_trip_and_errors() {
        let id = MemberId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 66);
        assert_eq!(s.parse::<MemberId>().ok(), Some(id));
        assert_eq!(s[2..].parse::<MemberId>().ok(), Some(id), "0x is optional");
        assert!(matches!(
            "0x1234".parse::<MemberId>(),
            Err(AppError::InvalidMemberId { .. })
        ));
        let not_hex = format!("0x{}", "zz".repeat(32));
        assert!(not_hex.parse::<MemberId>().is_err());
        assert!(MemberId::from_slice("f", &[0; 31]).is_err());
    }

    #[test]
    fn peer_specs() {
        assert_eq!(
            "10.13.0.7".parse::<PeerSpec>().ok(),
            Some(PeerSpec::MeshIp(Ipv4Addr::new(10, 13, 0, 7)))
        );
        assert_eq!(
            "0xABcd12".parse::<PeerSpec>().ok(),
            Some(PeerSpec::Prefix("abcd12".into()))
        );
        let id = MemberId([7; 32]);
        assert_eq!(
            id.to_string().parse::<PeerSpec>().ok(),
            Some(PeerSpec::Id(id))
        );
        assert!("abc".parse::<PeerSpec>().is_err(), "too short a prefix");
        assert!("node-b".parse::<PeerSpec>().is_err());
    }
}
