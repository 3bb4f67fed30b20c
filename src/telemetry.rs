//! Logging: `tracing` with the level from `--log-level`, else `RUST_LOG`, else `info`, as
//! text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global subscriber; logs go to stderr so stdout stays machine-readable.
///
/// `level` is a filter in `RUST_LOG`'s syntax (`info`, `debug`, `info,canopy=debug`);
/// without it `RUST_LOG` decides, and without that `info`. Colours only when stderr is a
/// terminal: a Pod's log is a file, where escape codes are noise. JSON lines carry each
/// event's fields at the top level and the current span as `span` (its name and its
/// fields, one key each), without the list of every enclosing span, which repeated them.
pub fn init_logging(format: LogFormat, level: Option<&str>) {
    // A second call (tests) keeps the first subscriber.
    match format {
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter(level))
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .try_init();
        }
        LogFormat::Json => {
            let _ = json_subscriber(filter(level), std::io::stderr).try_init();
        }
    }
}

/// The JSON subscriber: one object per line, the event's fields flattened into it, the
/// current span as `span`.
fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
}

/// The filter for `level`, else `RUST_LOG`, else `info`; kube-client's request errors
/// stay off unless named.
fn filter(level: Option<&str>) -> EnvFilter {
    let base = match level {
        Some(level) => Some(level.to_owned()),
        None => std::env::var("RUST_LOG").ok(),
    }
    .filter(|l| !l.trim().is_empty())
    .unwrap_or_else(|| "info".to_owned());
    EnvFilter::try_new(format!("{base},{QUIET}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")))
}

/// kube-client logs every failed request at ERROR, including the expected refusals while
/// a control plane starts and `/readyz` is polled; callers see those errors as results.
const QUIET: &str = "kube_client::client::builder=off";

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut inner) = self.0.lock() {
                inner.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// A JSON line has each key once: the event's fields at the top, the span's (with its
    /// name) in `span`, no list of spans repeating them, no escape codes.
    #[test]
    fn json_lines_have_one_key_per_field() {
        let buffer = Buffer::default();
        let subscriber = json_subscriber(EnvFilter::new("info"), buffer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile_anchor", namespace = "team", anchor = "dev");
            let _entered = span.enter();
            tracing::info!(namespace = "team-dev", "deleting namespace");
        });
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        let line = String::from_utf8(bytes).unwrap_or_default();
        assert!(!line.contains('\u{1b}'), "{line}");
        assert_eq!(line.matches("\"name\":").count(), 1, "{line}");
        assert_eq!(line.matches("\"anchor\":").count(), 1, "{line}");
        assert!(!line.contains("\"spans\""), "{line}");
        let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
        assert_eq!(value["message"], "deleting namespace", "{line}");
        assert_eq!(value["namespace"], "team-dev", "{line}");
        assert_eq!(value["span"]["name"], "reconcile_anchor", "{line}");
        assert_eq!(value["span"]["namespace"], "team", "{line}");
    }

    #[test]
    fn the_level_flag_wins_and_keeps_kube_client_quiet() {
        let f = filter(Some("debug")).to_string();
        assert!(f.contains("debug"), "{f}");
        assert!(f.contains("kube_client::client::builder=off"), "{f}");
        let directives = filter(Some("info,canopy=trace")).to_string();
        assert!(directives.contains("canopy=trace"), "{directives}");
    }
}
