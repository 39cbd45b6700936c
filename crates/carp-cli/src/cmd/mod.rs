//! One module per subcommand.

pub mod convert;
pub mod data;
pub mod devices;
pub mod embed;
pub mod eval;
pub mod eval_protocols;
pub mod inspect;
pub mod pretrain;
pub mod report;
