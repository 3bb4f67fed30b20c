//! The `kubectl-canopy` plugin: `tree`, `create`, `set`, `describe`.
//!
//! Each command fetches what it needs, then hands it to a pure renderer, so the output is
//! unit tested without a cluster and the integration tests only check the wiring.

mod cluster;
mod create;
mod describe;
mod error;
mod owned;
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
    about = "Manage canopy namespace trees: show them, create subnamespaces, set parents",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Examples of every command, for `kubectl canopy --help`.
const EXAMPLES: &str = "Examples:
  kubectl canopy tree acme                    # acme and its subtree
  kubectl canopy tree -A                      # every tree (a tenant owner: their tenants' trees)
  kubectl canopy create acme-dev -n acme      # a subnamespace acme-dev of acme
  kubectl canopy set team-b --parent acme     # make acme the parent of team-b
  kubectl canopy describe acme-dev            # parent, ancestors, anchors, conditions

Run `kubectl canopy COMMAND --help` for more examples.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a namespace and its subtree, or with -A every tree.
    #[command(after_help = "Examples:
  # The tree below acme, with subnamespaces and problems marked
  kubectl canopy tree acme

  # The tree of the context's namespace (as a tenant owner whose context namespace is
  # not theirs: the trees of the tenants they own)
  kubectl canopy tree

  # Every tree of the cluster; a tenant owner, who may not list namespaces, sees the
  # trees of the tenants they own
  kubectl canopy tree -A

  # As someone else (needs the impersonate right)
  kubectl canopy tree acme --as alice --as-group acme-admins")]
    Tree {
        /// The namespace at the top (default: -n, then the context's namespace).
        #[arg(value_name = "NAMESPACE")]
        name: Option<String>,
        /// Print every tree of the cluster.
        #[arg(short = 'A', long, conflicts_with = "name")]
        all_namespaces: bool,
    },
    /// Create a subnamespace: a SubnamespaceAnchor named CHILD in the -n namespace.
    #[command(after_help = "Examples:
  # A subnamespace acme-dev of acme (a SubnamespaceAnchor acme-dev in acme)
  kubectl canopy create acme-dev -n acme

  # Delete it again (with its subtree only if cascading deletion is allowed)
  kubectl delete subnamespaceanchor acme-dev -n acme")]
    Create {
        /// The name of the new child namespace.
        child: String,
    },
    /// Set a namespace's parent or cascading deletion (its HierarchyConfiguration).
    #[command(after_help = "Examples:
  # Make acme the parent of team-b (you need update on hierarchyconfigurations in team-b,
  # in acme's tree and in the tree team-b leaves: the consent rule)
  kubectl canopy set team-b --parent acme

  # Make team-b a root again
  kubectl canopy set team-b --root

  # Let deleting team-b (or its anchor) delete its subnamespaces too
  kubectl canopy set team-b --allow-cascading-deletion

  # Both at once
  kubectl canopy set team-b --parent acme --forbid-cascading-deletion")]
    Set(SetArgs),
    /// Show a namespace's place in its tree, its anchors and its conditions.
    #[command(after_help = "Examples:
  # Parent, ancestors, tenant, children, anchors and conditions of acme-dev
  kubectl canopy describe acme-dev

  # The context's namespace
  kubectl canopy describe")]
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
            let scope = if *all_namespaces {
                tree::Scope::All
            } else if name.is_none() && cli.connection.namespace.is_none() {
                tree::Scope::Default
            } else {
                tree::Scope::Named
            };
            tree::run(&conn.client, &ns, scope).await
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

    /// Every command's `--help` ends with examples of it.
    #[test]
    fn every_command_has_help_examples() {
        let mut command = Cli::command();
        let top = command.render_help().to_string();
        assert!(top.contains("Examples:"), "{top}");
        command.build();
        for sub in command.get_subcommands_mut() {
            let name = sub.get_name().to_owned();
            if name == "help" {
                continue;
            }
            let help = sub.render_help().to_string();
            assert!(
                help.contains("Examples:") && help.contains(&format!("kubectl canopy {name}")),
                "{name}: {help}"
            );
        }
    }

    #[test]
    fn tree_takes_a_namespace_or_all() {
        assert!(Cli::try_parse_from(["kubectl-canopy", "tree", "-A"]).is_ok());
        assert!(Cli::try_parse_from(["kubectl-canopy", "tree", "x", "-A"]).is_err());
    }
}
