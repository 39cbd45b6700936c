//! Drawing a run's [`RunEvent`]s: an indicatif bar per epoch, JSON lines, or nothing.
//!
//! The bar draws only when stderr is a terminal; otherwise (logs redirected to a file, CI)
//! indicatif hides it and the epoch summaries and warnings come through `tracing` as plain
//! lines. Log lines written while a bar is shown go through [`LogWriter`], which hides the
//! bar for the moment of the write so lines never interleave with it.

use carp_train::progress::{Observer, RunEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::OnceLock;

/// How `carp pretrain` reports progress.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// A progress bar per epoch on stderr (when it is a terminal) and readable log lines.
    #[default]
    Text,
    /// One JSON object per event on stdout (step records, epoch summaries, warnings).
    Json,
}

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// A `tracing` writer that suspends the progress bar while a log line is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Renders events as a bar (text), JSON lines (json) or not at all (quiet).
pub struct Progress {
    format: LogFormat,
    quiet: bool,
    bar: Option<ProgressBar>,
    steps_per_epoch: usize,
    end: usize,
}

impl Progress {
    /// A renderer that shows nothing: the ranks other than 0 of a data-parallel run.
    pub fn silent() -> Self {
        Self::new(LogFormat::Text, true)
    }

    /// A renderer for `format`; `quiet` draws no bar and prints no JSON step lines.
    pub fn new(format: LogFormat, quiet: bool) -> Self {
        Self {
            format,
            quiet,
            bar: None,
            steps_per_epoch: 1,
            end: 0,
        }
    }

    fn new_bar(&mut self, done: usize) {
        let spe = self.steps_per_epoch;
        let epoch = done / spe;
        let epoch_end = ((epoch + 1) * spe).min(self.end);
        let bar = multi().add(ProgressBar::new((epoch_end - epoch * spe) as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:24} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("{epoch}"));
        bar.set_position((done - epoch * spe) as u64);
        self.bar = Some(bar);
    }
}

impl Observer for Progress {
    fn event(&mut self, event: &RunEvent) {
        if self.format == LogFormat::Json {
            let quiet_skip = self.quiet && matches!(event, RunEvent::Step { .. });
            let unlogged = matches!(event, RunEvent::Step { record: None, .. });
            if !quiet_skip && !unlogged {
                let line = serde_json::to_string(event).expect("event serialises");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            return;
        }
        if self.quiet {
            return;
        }
        match event {
            RunEvent::Start {
                start,
                end,
                steps_per_epoch,
                ..
            } => {
                self.steps_per_epoch = (*steps_per_epoch).max(1);
                self.end = *end;
                if start < end {
                    self.new_bar(*start);
                }
            }
            RunEvent::Step { done, record } => {
                if self.bar.is_none() && *done < self.end {
                    self.new_bar(done - 1);
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    if let Some(r) = record {
                        let mut msg = format!(
                            "step {} loss {:.4} (cons {:.4} ent {:.4}) lr {:.4} {:.1} img/s",
                            r.step, r.loss, r.consistency, r.entropy, r.lr, r.img_per_s
                        );
                        if r.skipped_steps > 0 {
                            msg.push_str(&format!(" skipped {}", r.skipped_steps));
                        }
                        if r.collapse {
                            msg.push_str(" COLLAPSE?");
                        }
                        bar.set_message(msg);
                    }
                }
                if done.is_multiple_of(self.steps_per_epoch) || *done == self.end {
                    if let Some(bar) = self.bar.take() {
                        bar.finish_and_clear();
                    }
                }
            }
            _ => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Set once from the global `--quiet` flag, for commands that draw a bar of their own.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records the global `--quiet` flag.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn is_quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}
