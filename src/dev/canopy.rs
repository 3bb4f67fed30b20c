//! Installing and running canopy in a local control plane, as a real cluster would run
//! it: its own ServiceAccount and ClusterRole (not an admin), webhooks registered with the
//! apiserver and called over HTTPS.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kubeconfig::{self, Credentials};
use super::{ControlPlane, DevError, install_crds};
use crate::manager::WebhookListener;

/// The namespace and ServiceAccount canopy runs as.
pub const CANOPY_NAMESPACE: &str = "canopy-system";
pub const CANOPY_SERVICE_ACCOUNT: &str = "canopy";

const SERVICE_ACCOUNT: &str = include_str!("../../config/rbac/service_account.yaml");
const CLUSTER_ROLE: &str = include_str!("../../config/rbac/role.yaml");
const CLUSTER_ROLE_BINDING: &str = include_str!("../../config/rbac/role_binding.yaml");
const USER_ROLES: &str = include_str!("../../config/rbac/user_roles.yaml");
const WEBHOOKS: &str = include_str!("../../webhooks/validating-webhook-configuration.yaml");

/// What `prepare` set up: the manager's credentials and its bound webhook listener.
pub struct PreparedCanopy {
    /// A kubeconfig for `system:serviceaccount:canopy-system:canopy`.
    pub manager_kubeconfig: PathBuf,
    pub webhooks: WebhookListener,
}

/// Installs the CRDs, canopy's namespace, ServiceAccount and RBAC, binds the webhook
/// server on a free loopback port and registers the webhooks there.
pub async fn prepare(plane: &ControlPlane) -> Result<PreparedCanopy, DevError> {
    let admin = plane.client().await?;
    install_crds(&admin).await?;

    let mut ns = Namespace::default();
    ns.metadata.name = Some(CANOPY_NAMESPACE.to_owned());
    apply(Api::all(admin.clone()), &ns).await?;
    let sa_api = Api::namespaced(admin.clone(), CANOPY_NAMESPACE);
    apply(sa_api, &parse::<ServiceAccount>(SERVICE_ACCOUNT)?).await?;
    for document in CLUSTER_ROLE.split("\n---\n") {
        apply(Api::all(admin.clone()), &parse::<ClusterRole>(document)?).await?;
    }
    apply(
        Api::all(admin.clone()),
        &parse::<ClusterRoleBinding>(CLUSTER_ROLE_BINDING)?,
    )
    .await?;
    for document in USER_ROLES.split("\n---\n") {
        apply(Api::all(admin.clone()), &parse::<ClusterRole>(document)?).await?;
    }

    // Empty, as the chart and kustomize install it: canopy fills it when it manages its
    // own certificates, and needs no right to create Secrets.
    let mut ca_secret = k8s_openapi::api::core::v1::Secret::default();
    ca_secret.metadata.name = Some("canopy-webhook-ca".to_owned());
    ca_secret.metadata.namespace = Some(CANOPY_NAMESPACE.to_owned());
    apply(Api::namespaced(admin.clone(), CANOPY_NAMESPACE), &ca_secret).await?;
    wait_for_aggregation(&admin, Duration::from_secs(60)).await?;
    let token = service_account_token(&admin).await?;
    let manager_kubeconfig = plane.dir().join("canopy-manager.kubeconfig");
    let contents = kubeconfig::render(
        plane.server(),
        &plane.pki().ca.cert_pem,
        Credentials::Token(&token),
        "canopy-manager",
    );
    kubeconfig::write_atomically(&manager_kubeconfig, &contents)?;

    let serving = &plane.pki().loopback_serving;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let webhooks = WebhookListener::bind(
        addr,
        serving.cert_pem.as_bytes(),
        serving.key_pem.as_bytes(),
    )
    .await
    .map_err(|e| DevError::Canopy(e.to_string()))?;
    let port = webhooks
        .local_addr()
        .map(|a| a.port())
        .ok_or_else(|| DevError::Canopy("the webhook listener has no address".into()))?;
    register_webhooks(&admin, port, &plane.pki().ca.cert_pem).await?;
    Ok(PreparedCanopy {
        manager_kubeconfig,
        webhooks,
    })
}

/// Waits until the apiserver calls canopy's webhooks: a namespace with a forged tenant
/// label is refused (in a dry run, so nothing is created).
pub async fn wait_for_webhooks(admin: &Client, timeout: Duration) -> Result<(), DevError> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let mut probe = Namespace::default();
    probe.metadata.name = Some("canopy-webhook-probe".to_owned());
    probe.metadata.labels =
        Some([(crate::api::keys::TENANT.to_owned(), "probe".to_owned())].into());
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let start = Instant::now();
    loop {
        let last = match api.create(&params, &probe).await {
            Err(kube::Error::Api(s)) if s.message.contains("only canopy may set") => return Ok(()),
            Err(e) => e.to_string(),
            Ok(_) => "the probe was admitted".to_owned(),
        };
        if start.elapsed() > timeout {
            return Err(DevError::Timeout {
                what: "canopy's webhooks to be called by the apiserver".into(),
                logs: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until canopy's leader has created the CanopyConfiguration `config` and reported
/// on it (its `status.conditions`), so that the first `kubectl get canopyconfiguration
/// config` of the README's tour finds it: `canopy dev` publishes its kubeconfig only
/// after this.
pub async fn wait_for_configuration(admin: &Client, timeout: Duration) -> Result<(), DevError> {
    use crate::api::{CONFIGURATION_NAME, CanopyConfiguration};
    let api: Api<CanopyConfiguration> = Api::all(admin.clone());
    let start = Instant::now();
    loop {
        let last = match api.get_opt(CONFIGURATION_NAME).await {
            Ok(Some(config))
                if config
                    .status
                    .as_ref()
                    .is_some_and(|s| !s.conditions.is_empty()) =>
            {
                return Ok(());
            }
            Ok(Some(_)) => "created, with no status yet".to_owned(),
            Ok(None) => "not created yet".to_owned(),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > timeout {
            return Err(DevError::Timeout {
                what: format!(
                    "canopy to create and report on CanopyConfiguration {CONFIGURATION_NAME:?}"
                ),
                logs: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until kube-controller-manager's clusterrole-aggregation controller has given the
/// aggregated ClusterRole `canopy-manager` the rules of the roles it selects (canopy
/// would otherwise start with no rights at all).
async fn wait_for_aggregation(admin: &Client, timeout: Duration) -> Result<(), DevError> {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    let start = Instant::now();
    loop {
        let last = match api.get_opt(MANAGER_ROLE).await {
            Ok(Some(role)) if role.rules.as_ref().is_some_and(|r| !r.is_empty()) => return Ok(()),
            Ok(_) => "no rules yet".to_owned(),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > timeout {
            return Err(DevError::Timeout {
                what: format!("the ClusterRole {MANAGER_ROLE} to aggregate its rules"),
                logs: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ClusterRole canopy's ServiceAccount is bound to; it aggregates the rules of every
/// ClusterRole labelled `canopy.dev/aggregate-to-manager: "true"`.
pub const MANAGER_ROLE: &str = "canopy-manager";

fn parse<K: DeserializeOwned>(yaml: &str) -> Result<K, DevError> {
    serde_saphyr::from_str(yaml)
        .map_err(|e| DevError::Canopy(format!("a bundled manifest is invalid: {e}")))
}

async fn apply<K>(api: Api<K>, obj: &K) -> Result<(), DevError>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut obj = serde_json::to_value(obj).map_err(|e| DevError::Canopy(e.to_string()))?;
    obj["apiVersion"] = K::api_version(&()).into();
    obj["kind"] = K::kind(&()).into();
    api.patch(
        &name,
        &PatchParams::apply(crate::api::keys::FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .map_err(|source| DevError::Install {
        what: format!("{} {name}", K::kind(&())),
        source,
    })?;
    Ok(())
}

async fn service_account_token(admin: &Client) -> Result<String, DevError> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(7 * 24 * 3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(admin.clone(), CANOPY_NAMESPACE)
        .create_subresource(
            "token",
            CANOPY_SERVICE_ACCOUNT,
            &PostParams::default(),
            &request,
        )
        .await
        .map_err(|source| DevError::Install {
            what: "a token for canopy's ServiceAccount".into(),
            source,
        })?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| DevError::Canopy("the TokenRequest returned no token".into()))
}

/// Registers the bundled webhook configuration with every service reference rewritten to
/// `https://127.0.0.1:<port><path>`, trusting `ca_pem`.
pub async fn register_webhooks(admin: &Client, port: u16, ca_pem: &str) -> Result<(), DevError> {
    let mut config: ValidatingWebhookConfiguration = parse(WEBHOOKS)?;
    for webhook in config.webhooks.iter_mut().flatten() {
        let path = webhook
            .client_config
            .service
            .take()
            .and_then(|s| s.path)
            .unwrap_or_default();
        webhook.client_config.url = Some(format!("https://127.0.0.1:{port}{path}"));
        webhook.client_config.ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
    }
    apply(Api::all(admin.clone()), &config).await
}
