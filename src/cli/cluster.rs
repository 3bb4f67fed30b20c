//! Connecting as kubectl would, and loading the cluster's namespaces and
//! HierarchyConfigurations into a [`Snapshot`] (all at once, else by a [`walk`]).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::error::{CliError, Request, with_sources};
use super::snapshot::Snapshot;
use super::walk;
use crate::api::HierarchyConfiguration;

/// kubectl's connection flags; global, so they may come before or after the subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Connection options")]
pub struct ConnectionArgs {
    /// The kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace to work on (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The user to impersonate for every request.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// A group to impersonate (repeat for several); needs --as, as in kubectl.
    #[arg(
        long = "as-group",
        global = true,
        value_name = "GROUP",
        requires = "as_user"
    )]
    pub as_groups: Vec<String>,
}

/// A client and the namespace that commands default to.
pub struct Connection {
    pub client: Client,
    namespace: String,
}

impl Connection {
    /// `explicit` (a positional argument), else `-n`, else the context's namespace.
    pub fn namespace(&self, explicit: Option<&str>) -> String {
        explicit.unwrap_or(&self.namespace).to_owned()
    }
}

/// Loads the kubeconfig as kubectl does and applies the impersonation flags.
pub async fn connect(args: &ConnectionArgs) -> Result<Connection, CliError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let loaded = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                CliError::new(format!(
                    "cannot read kubeconfig {}: {}",
                    path.display(),
                    with_sources(&e)
                ))
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    };
    let mut config = loaded
        .map_err(|e| CliError::new(format!("cannot load kubeconfig: {}", with_sources(&e))))?;
    if let Some(user) = &args.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !args.as_groups.is_empty() {
        config.auth_info.impersonate_groups = Some(args.as_groups.clone());
    }
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| {
        CliError::new(format!(
            "cannot build a client from the kubeconfig: {}",
            with_sources(&e)
        ))
    })?;
    Ok(Connection { client, namespace })
}

/// The hierarchy around `start`: all of it when the user may list cluster-wide, else
/// what a walk from `start` can read (see [`walk`]).
pub async fn load_around(client: &Client, start: &str) -> Result<Snapshot, CliError> {
    match load(client).await {
        Err(e) if e.is_forbidden() => walk::walk(client, start).await,
        other => other,
    }
}

/// Lists every Namespace and HierarchyConfiguration; needs `list` on both cluster-wide.
pub async fn load(client: &Client) -> Result<Snapshot, CliError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let hierarchies: Api<HierarchyConfiguration> = Api::all(client.clone());
    let list = ListParams::default();
    // Both at once, but the namespaces' error first whichever fails first, so the same
    // refusal always gets the same message.
    let (namespaces, hierarchies) =
        futures::join!(namespaces.list_metadata(&list), hierarchies.list(&list));
    let namespaces = namespaces.map_err(|e| Request::cluster("list", "namespaces").error(e))?;
    let hierarchies = hierarchies
        .map_err(|e| Request::cluster("list", "hierarchyconfigurations.canopy.dev").error(e))?;
    Ok(Snapshot::build(namespaces.items, hierarchies.items))
}
