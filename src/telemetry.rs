//! Logging: `tracing` with the level from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; logs go to stderr so stdout stays machine-readable.
pub fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// kube-client logs every failed request at ERROR, including the expected refusals while
/// a control plane starts and `/readyz` is polled; callers see those errors as results.
const DEFAULT_FILTER: &str = "info,kube_client::client::builder=off";
