//! One module per subcommand.

pub mod embed;
pub mod eval;
pub mod pretrain;
