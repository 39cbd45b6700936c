//! One module per subcommand.

pub mod pretrain;
pub mod report;
