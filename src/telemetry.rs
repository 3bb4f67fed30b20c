//! Logging: `tracing` with the level from `--log-level`, else `RUST_LOG`, else `info`, as
//! text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
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
    use super::*;

    #[test]
    fn the_level_flag_wins_and_keeps_kube_client_quiet() {
        let f = filter(Some("debug")).to_string();
        assert!(f.contains("debug"), "{f}");
        assert!(f.contains("kube_client::client::builder=off"), "{f}");
        let directives = filter(Some("info,canopy=trace")).to_string();
        assert!(directives.contains("canopy=trace"), "{directives}");
    }
}
