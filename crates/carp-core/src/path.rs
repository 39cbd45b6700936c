//! Module paths (`backbone.layer1.0.conv1.weight`) tracked while visiting or mapping a module.

/// A stack of module names, joined with dots.
#[derive(Clone, Debug, Default)]
pub struct ParamPath(Vec<String>);

impl ParamPath {
    /// Enters a sub-module (or field).
    pub fn push(&mut self, name: &str) {
        self.0.push(name.to_string());
    }

    /// Leaves the current sub-module.
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// The dotted path.
    pub fn join(&self) -> String {
        self.0.join(".")
    }

    /// Whether this is a BatchNorm running statistic (a buffer, not a trainable parameter).
    pub fn is_running_stat(&self) -> bool {
        matches!(
            self.0.last().map(String::as_str),
            Some("running_mean" | "running_var")
        )
    }
}
