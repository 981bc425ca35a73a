//! Progress for long waits (pulls, builds, health waits, dumps): a spinner or a bar on the
//! terminal, nothing at all when stderr is not a terminal or logs are JSON, so CI logs and
//! piped output stay clean. Log lines written while a bar is shown suspend it, so the two never
//! garble each other.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};

use crate::{config::LogFormat, context::Context, redact::Redactor};

/// The bar on screen, if any, for the log writer to suspend around its lines.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `write` with the visible progress bar (if any) cleared from the screen.
pub fn suspend<T>(write: impl FnOnce() -> T) -> T {
    let active = ACTIVE.lock().unwrap().clone();
    match active {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// A progress indicator; every method is a no-op when progress is not shown.
pub struct Progress {
    bar: Option<ProgressBar>,
    secrets: Arc<Redactor>,
}

impl Progress {
    /// A spinner with a message, for waits of unknown length.
    pub fn spinner(context: &Context, message: &str) -> Progress {
        let settings = &context.settings;
        let shown = settings.log_format == LogFormat::Text
            && settings.verbosity >= 0
            && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let secrets = Arc::clone(&context.secrets);
        if !shown {
            return Progress { bar: None, secrets };
        }
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(secrets.redact(message).into_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        *ACTIVE.lock().unwrap() = Some(bar.clone());
        Progress {
            bar: Some(bar),
            secrets,
        }
    }

    pub fn set_message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.secrets.redact(message).into_owned());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            ACTIVE.lock().unwrap().take();
        }
    }
}
