//! Installing canopy's CRDs into a cluster.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

use super::DevError;
use crate::api::{all_crds, keys::FIELD_MANAGER};

/// Server-side applies every canopy CRD and waits until each is established.
pub async fn install_crds(client: &kube::Client) -> Result<(), DevError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let fail = |source| DevError::InstallCrd {
            name: name.clone(),
            source,
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &kube::api::Patch::Apply(&crd),
        )
        .await
        .map_err(fail)?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(Duration::from_secs(30), established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(DevError::InstallCrd {
                    name,
                    source: kube::Error::Service(Box::new(e)),
                });
            }
            Err(_) => {
                return Err(DevError::Timeout {
                    what: format!("CRD {name} to be established"),
                    logs: String::new(),
                });
            }
        }
    }
    Ok(())
}
