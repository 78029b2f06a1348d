//! One module per subcommand; each exposes `Args` (clap, every flag with an env twin) and `run`.

pub mod devtee;
pub mod gateway;
pub mod sponsor;
