//! One module per subcommand.

pub mod pretrain;
