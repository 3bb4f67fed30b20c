//! The `canopy` binary: `canopy manager`, `canopy crds`, `canopy dev`, `canopy image`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// jemalloc, not glibc malloc: with 64 reviews in flight the webhook spent a sixth of its time
// in glibc's allocator; jemalloc answers 1.5x the reviews/s with the same peak memory
// (docs/performance.md).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "canopy",
    version,
    about = "Kubernetes multi-tenancy: namespace trees, tenants, policy propagation"
)]
struct Cli {
    /// Log as text or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = canopy::telemetry::LogFormat::Text)]
    log_format: canopy::telemetry::LogFormat,
    /// What to log, in RUST_LOG's syntax: `info`, `debug`, `info,canopy=debug`
    /// (default: $RUST_LOG, then info).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every canopy CRD as YAML, or write one file per CRD into a directory.
    Crds {
        /// Write `<crd name>.yaml` files here instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Run the controllers and the webhook server.
    Manager(Box<canopy::manager::ManagerArgs>),
    /// Run a local control plane (etcd, kube-apiserver, kube-controller-manager) with
    /// canopy installed, until Ctrl-C or SIGTERM.
    #[cfg(target_os = "linux")]
    Dev(canopy::dev::DevArgs),
    /// Write canopy's OCI image (an OCI archive) from this binary: what `make image` runs.
    #[cfg(target_os = "linux")]
    Image(canopy::dev::image::ImageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    canopy::telemetry::init_logging(cli.log_format, cli.log_level.as_deref());
    let result = match cli.command {
        Command::Crds { output_dir } => print_crds(output_dir),
        #[cfg(target_os = "linux")]
        Command::Dev(args) => run_async(canopy::dev::run(args)),
        #[cfg(target_os = "linux")]
        Command::Image(args) => canopy::dev::image::run(args),
        Command::Manager(args) => run_async(run_manager(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("canopy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(output_dir: Option<PathBuf>) -> anyhow::Result<()> {
    use anyhow::Context;
    use canopy::api::{all_crds, crd_file_name, crd_yaml, crds_yaml};
    let Some(dir) = output_dir else {
        print!("{}", crds_yaml()?);
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for crd in all_crds() {
        let path = dir.join(crd_file_name(&crd));
        std::fs::write(&path, crd_yaml(&crd)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn run_manager(args: canopy::manager::ManagerArgs) -> anyhow::Result<()> {
    use canopy::admin::AdminListener;
    use canopy::manager::{Halves, Listeners, WebhookListener, run_with};
    let halves = Halves {
        controllers: !args.webhooks_only,
        webhooks: !args.controllers_only,
    };
    let client = kube::Client::try_default().await?;
    let listener = if !halves.webhooks {
        None
    } else if args.certificates.self_signed_certificates {
        let certs = canopy::webhooks::certs::CertManager::start(
            client.clone(),
            args.certificates.clone(),
            args.leader_election.leader_election_namespace.clone(),
        )
        .await?;
        let listener = WebhookListener::bind_with_resolver(args.webhook_addr, certs.resolver())?;
        tokio::spawn(certs.run());
        Some(listener)
    } else {
        Some(WebhookListener::from_args(&args).await?)
    };
    // Bound before anything runs, so a port in use fails the start, not a probe later.
    let admin = AdminListener::bind(args.admin_addr)?;
    let election = args
        .leader_election
        .leader_elect
        .then(|| args.leader_election.clone());
    run_with(
        client,
        Listeners {
            webhooks: listener,
            admin: Some(admin),
        },
        halves,
        election,
        args.write_qps,
        args.certificates.webhook_configuration.clone(),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Resolves on the first SIGTERM or Ctrl-C.
#[cfg(unix)]
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C: the manager runs in Linux containers, but `canopy` still builds
/// elsewhere (the library is shared with the kubectl plugin).
#[cfg(not(unix))]
async fn shutdown_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn run_async(fut: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}
