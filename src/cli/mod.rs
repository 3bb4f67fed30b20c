//! The `kubectl-canopy` plugin: `tree`, `create`, `set`, `describe`.
//!
//! Each command fetches what it needs, then hands it to a pure renderer, so the output is
//! unit tested without a cluster and the integration tests only check the wiring.

mod cluster;
mod create;
mod describe;
mod error;
mod quota;
mod set;
mod snapshot;
mod tree;
mod walk;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use cluster::ConnectionArgs;
pub use error::CliError;
pub use set::{FIELD_MANAGER, SetArgs};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-canopy",
    bin_name = "kubectl canopy",
    version,
    about = "Manage canopy namespace trees: show them, create subnamespaces, set parents"
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a namespace and its subtree, or with -A every tree.
    Tree {
        /// The namespace at the top (default: -n, then the context's namespace).
        #[arg(value_name = "NAMESPACE")]
        name: Option<String>,
        /// Print every tree of the cluster.
        #[arg(short = 'A', long, conflicts_with = "name")]
        all_namespaces: bool,
    },
    /// Create a subnamespace: a SubnamespaceAnchor named CHILD in the -n namespace.
    Create {
        /// The name of the new child namespace.
        child: String,
    },
    /// Set a namespace's parent or cascading deletion (its HierarchyConfiguration).
    Set(SetArgs),
    /// Show a namespace's place in its tree, its anchors and its conditions.
    Describe {
        /// The namespace (default: -n, then the context's namespace).
        #[arg(value_name = "NAMESPACE")]
        name: Option<String>,
    },
}

/// Parses the command line, runs the command and prints its output; on any error prints
/// it and exits with 1, as kubectl does (usage errors too, where clap would use 2).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are "errors" that go to stdout.
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command and returns what it prints.
pub async fn run(cli: &Cli) -> Result<String, CliError> {
    let conn = cluster::connect(&cli.connection).await?;
    match &cli.command {
        Command::Tree {
            name,
            all_namespaces,
        } => {
            let ns = conn.namespace(name.as_deref());
            tree::run(&conn.client, &ns, *all_namespaces).await
        }
        Command::Create { child } => create::run(&conn.client, &conn.namespace(None), child).await,
        Command::Set(args) => {
            let ns = conn.namespace(args.name.as_deref());
            set::run(&conn.client, &ns, args).await
        }
        Command::Describe { name } => {
            let ns = conn.namespace(name.as_deref());
            describe::run(&conn.client, &ns).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-canopy",
            "create",
            "child",
            "-n",
            "parent",
            "--as",
            "bob",
            "--as-group",
            "devs",
            "--context",
            "kind",
        ])
        .expect("parses");
        assert_eq!(cli.connection.namespace.as_deref(), Some("parent"));
        assert_eq!(cli.connection.as_user.as_deref(), Some("bob"));
        assert_eq!(cli.connection.as_groups, ["devs"]);
        assert_eq!(cli.connection.context.as_deref(), Some("kind"));
        assert!(matches!(cli.command, Command::Create { ref child } if child == "child"));
    }

    /// The positional namespace must not shadow the global `-n` (clap matches by id).
    #[test]
    fn the_namespace_may_come_from_n() {
        for argv in [
            ["kubectl-canopy", "tree", "-n", "x"].as_slice(),
            &["kubectl-canopy", "describe", "-n", "x"],
            &["kubectl-canopy", "set", "-n", "x", "--root"],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            assert_eq!(cli.connection.namespace.as_deref(), Some("x"), "{argv:?}");
        }
    }

    #[test]
    fn as_group_needs_as() {
        assert!(
            Cli::try_parse_from(["kubectl-canopy", "tree", "x", "--as-group", "devs"]).is_err()
        );
    }

    #[test]
    fn tree_takes_a_namespace_or_all() {
        assert!(Cli::try_parse_from(["kubectl-canopy", "tree", "-A"]).is_ok());
        assert!(Cli::try_parse_from(["kubectl-canopy", "tree", "x", "-A"]).is_err());
    }
}
