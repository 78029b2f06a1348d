//! Every way an operator command can fail, each naming what to fix: the setting, the config key,
//! the contract or the account. The CLI prints these as they are.

use std::path::PathBuf;

use alloy_primitives::{Address, B256};

use attestmesh_chain::rpc::RpcError;

/// An operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A command-line setting that parsed but cannot work.
    #[error("invalid {setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    /// A key of the cluster config file is missing or malformed.
    #[error("{path}: {key}: {reason}")]
    Config {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// The signing key could not be loaded.
    #[error("signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    /// A chain read or write failed at the transport or JSON-RPC level.
    #[error("{what}: {source}")]
    Chain {
        what: String,
        #[source]
        source: RpcError,
    },
    /// A transaction would revert (simulation) or did revert (receipt).
    #[error("{what} reverted{}: {reason}", .tx.map(|t| format!(" in {t}")).unwrap_or_default())]
    Reverted {
        what: String,
        tx: Option<B256>,
        reason: String,
    },
    /// The sender cannot do this: the contract only accepts `owner`.
    #[error("{what}: only {owner} may do this, but the sender is {sender}")]
    NotOwner {
        what: String,
        owner: Address,
        sender: Address,
    },
    /// An address that must hold a contract holds none.
    #[error("no contract {what} at {address} on chain {chain_id}{}", hint_suffix(.hint))]
    NoCode {
        what: String,
        address: Address,
        chain_id: u64,
        hint: &'static str,
    },
    /// Something on chain is not what the command expects.
    #[error("{0}")]
    Unexpected(String),
    /// A careless-operator guard tripped. `--force` overrides it.
    #[error("refusing: {0}\n(pass --force if this is really what you want)")]
    Refused(String),
    /// The deployments file is missing, unreadable or for another chain.
    #[error("deployments file {path}: {reason}")]
    Deployments { path: PathBuf, reason: String },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

impl OpsError {
    /// Wraps a chain error with what was being done.
    pub(crate) fn chain(what: impl Into<String>) -> impl FnOnce(RpcError) -> OpsError {
        let what = what.into();
        move |source| OpsError::Chain { what, source }
    }

    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Self {
        OpsError::Setting {
            setting,
            reason: reason.into(),
        }
    }
}
