//! Library errors name configuration keys and options; the command line names flags. This
//! maps one to the other.

use carp_io::ImportError;
use carp_train::TrainError;

/// `--flag` for a configuration key of `carp pretrain`, or an option of the weight loader.
pub fn flag_of(key: &str) -> Option<String> {
    if let Some((field, _)) = crate::cmd::pretrain::KEYS
        .iter()
        .find(|(_, k)| k.trim_start_matches('!') == key)
    {
        return Some(format!("--{}", field.replace('_', "-")));
    }
    matches!(key, "format" | "key" | "arch").then(|| format!("--{key}"))
}

/// `err` with the flag that sets its key named in front, where there is one.
pub fn explain(err: impl Into<anyhow::Error>) -> anyhow::Error {
    let err = err.into();
    let key = match (
        err.downcast_ref::<TrainError>(),
        err.downcast_ref::<ImportError>(),
    ) {
        (Some(TrainError::Config { key, .. }), _) => Some(key.as_str()),
        (Some(TrainError::Import(ImportError::Option { key, .. })), _)
        | (_, Some(ImportError::Option { key, .. })) => Some(*key),
        _ => None,
    };
    match key.and_then(flag_of) {
        Some(flag) => err.context(flag),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_flags() {
        assert_eq!(flag_of("optim.base_lr").as_deref(), Some("--lr"));
        assert_eq!(flag_of("run.eval").as_deref(), Some("--no-eval"));
        assert_eq!(
            flag_of("model.partition_size").as_deref(),
            Some("--partition-size")
        );
        assert_eq!(flag_of("format").as_deref(), Some("--format"));
        assert_eq!(flag_of("model.nlayers"), None);
        let err = explain(TrainError::Config {
            key: "optim.batch_size".into(),
            message: "too large".into(),
        });
        assert_eq!(
            format!("{err:#}"),
            "--batch-size: config `optim.batch_size`: too large"
        );
    }
}
