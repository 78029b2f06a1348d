//! One module per subcommand; each exposes `Args` (clap, every flag with an env twin) and `run`.

pub mod cluster;
pub mod devnet;
pub mod devtee;
pub mod gateway;
pub mod indexer;
pub mod node;
pub mod sponsor;
