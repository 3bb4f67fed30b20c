//! The CRDs of every canopy kind, as `canopy crds` prints them and `crds/` holds them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{CanopyConfiguration, HierarchyConfiguration, SubnamespaceAnchor, Tenant};

/// Every CRD, in a fixed order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Tenant::crd(),
        SubnamespaceAnchor::crd(),
        HierarchyConfiguration::crd(),
        CanopyConfiguration::crd(),
    ]
}

/// The file in `crds/` that holds this CRD.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(crd)
}

/// Every CRD as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let docs = all_crds()
        .iter()
        .map(crd_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs
        .iter()
        .map(|d| format!("---\n{d}"))
        .collect::<String>())
}
