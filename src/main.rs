//! The `canopy` binary: `canopy crds`, `canopy dev`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "canopy", version, about = "Kubernetes multi-tenancy: namespace trees, tenants, policy propagation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every canopy CRD as YAML.
    Crds,
    /// Run a local control plane (etcd, kube-apiserver, kube-controller-manager) with
    /// canopy installed, until Ctrl-C or SIGTERM.
    Dev(canopy::dev::DevArgs),
}

fn main() -> ExitCode {
    canopy::telemetry::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds => print_crds(),
        Command::Dev(args) => run_async(canopy::dev::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("canopy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds() -> anyhow::Result<()> {
    print!("{}", canopy::api::crds_yaml()?);
    Ok(())
}

fn run_async(fut: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

