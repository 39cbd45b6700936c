//! Graceful stop on SIGINT/SIGTERM: the first signal asks the loop to finish its step and
//! write a checkpoint; a second one ends the process at once (exit status 130/143-style 1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag the training loop polls between steps; set by a signal or by the caller.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the loop to stop after the current step.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Installs SIGINT and SIGTERM handlers (Unix): the first signal sets this flag, a second
    /// one while it is set exits the process immediately with status 1.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGINT, SIGTERM};
            use signal_hook::flag;
            for sig in [SIGINT, SIGTERM] {
                // Registered first, so it sees the flag as it was before this signal.
                flag::register_conditional_shutdown(sig, 1, Arc::clone(&self.0))?;
                flag::register(sig, Arc::clone(&self.0))?;
            }
        }
        Ok(())
    }
}
