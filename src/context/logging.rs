//! Log output: `tracing` events rendered as short text lines (`04:31:02 INFO  message`) or as one
//! JSON object a line (`--log-format json`), on stderr, with every secret masked on the way out.
//! `-v`/`-q` move the level; `NO_COLOR` or a non-terminal turns colors off.

use std::{
    fmt,
    io::{self, Write},
    sync::Arc,
};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter, format::Writer},
    registry::LookupSpan,
};

use crate::{
    config::{LogFormat, Settings},
    redact::Redactor,
};

/// The `tracing` target of lines written by scripts (`print`, `log::info`, …).
pub const SCRIPT_TARGET: &str = "runbook";

/// Installs the global subscriber. Called once, before anything logs.
pub fn init(settings: &Settings, redactor: Arc<Redactor>) {
    let level = match settings.verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // The platform verifier logs each certificate it refuses as an error of its own; the check
    // that made the connection reports it (`invalid peer certificate: UnknownIssuer`) already.
    let filter = EnvFilter::new(format!(
        "warn,rustls_platform_verifier=off,cutover={level},{SCRIPT_TARGET}={level}"
    ));
    let writer = RedactingStderr { redactor };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .log_internal_errors(false);
    let _ = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .event_format(TextFormat {
                color: settings.color,
            })
            .try_init(),
    };
}

/// Writes each formatted event to stderr with secrets masked. The fmt layer hands over one whole
/// event per `write_all`, so a secret is never split across two writes.
struct RedactingStderr {
    redactor: Arc<Redactor>,
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            redactor: &self.redactor,
        }
    }
}

struct RedactingWriter<'a> {
    redactor: &'a Redactor,
}

impl Write for RedactingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = self.redactor.redact(&text);
        // A line written under a spinner would be torn by its next tick: clear it first. A
        // closed stderr (`cutover … 2>&1 | head -1`) drops the line: logging must never change
        // what a run does.
        let _ = super::progress::suspend(|| io::stderr().lock().write_all(text.as_bytes()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// `HH:MM:SS LEVEL message key=value …`, the level colored on a terminal.
struct TextFormat {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = jiff::Timestamp::now().to_zoned_datetime(crate::local_time::zone());
        let level = *event.metadata().level();
        let (name, color) = match level {
            Level::ERROR => ("ERROR", "31"),
            Level::WARN => ("WARN ", "33"),
            Level::INFO => ("INFO ", "32"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::TRACE => ("TRACE", "35"),
        };
        write!(writer, "{} ", now.strftime("%H:%M:%S"))?;
        if self.color {
            write!(writer, "\x1b[{color}m{name}\x1b[0m ")?;
        } else {
            write!(writer, "{name} ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
