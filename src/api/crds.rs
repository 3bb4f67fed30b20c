//! The CRDs of every canopy kind, as `canopy crds` prints them and `crds/` holds them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResourceExt;

use super::{
    CanopyConfiguration, HierarchicalResourceQuota, HierarchyConfiguration, SubnamespaceAnchor,
    Tenant,
};

/// Every CRD, in a fixed order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Tenant::crd(),
        spec_optional(SubnamespaceAnchor::crd()),
        spec_optional(HierarchyConfiguration::crd()),
        spec_optional(CanopyConfiguration::crd()),
        HierarchicalResourceQuota::crd(),
    ]
    .into_iter()
    .map(unwrapped_descriptions)
    .collect()
}

/// Doc comments wrap at 90 columns, and `kubectl explain` would print those line breaks
/// in the middle of a sentence: each paragraph of a field's description becomes one line
/// (blank lines between paragraphs stay), and `kubectl explain` wraps to the terminal.
fn unwrapped_descriptions(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            unwrap_schema(root);
        }
    }
    crd
}

/// Unwraps the description of `schema` and of every field and list item below it.
fn unwrap_schema(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = unwrap_paragraphs(description);
    }
    for field in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        unwrap_schema(field);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        unwrap_schema(items);
    }
}

/// `text` with the line breaks inside each paragraph replaced by spaces.
pub fn unwrap_paragraphs(text: &str) -> String {
    text.trim()
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Every field of these specs has a default, so an object without `spec` is valid (as an
/// HNC anchor is): the apiserver defaults `spec` to `{}` and then fills in its fields, so
/// readers (and canopy's own typed structs) always see a spec.
fn spec_optional(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(required) = root.required.as_mut() {
            required.retain(|field| field != "spec");
        }
        if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(JSON(serde_json::json!({})));
        }
    }
    crd
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
    Ok(docs.iter().map(|d| format!("---\n{d}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `crds/` is what users and the chart install; it must be exactly what the types say.
    #[test]
    fn crds_directory_matches_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for crd in all_crds() {
            let path = dir.join(crd_file_name(&crd));
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
            let generated = crd_yaml(&crd).expect("a CRD serializes to YAML");
            assert!(
                on_disk == generated,
                "{} has drifted from the Rust types; run `make crds`",
                path.display()
            );
        }
        let files = std::fs::read_dir(&dir).expect("crds/ exists").count();
        assert_eq!(
            files,
            all_crds().len(),
            "crds/ holds a file that no type generates"
        );
    }

    #[test]
    fn every_kind_has_a_status_subresource_and_printer_columns() {
        for crd in all_crds() {
            let version = &crd.spec.versions[0];
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{name} has no status subresource"
            );
            assert!(
                version
                    .additional_printer_columns
                    .as_ref()
                    .is_some_and(|c| !c.is_empty()),
                "{name} has no printer columns"
            );
        }
    }

    /// Every field `kubectl explain` can show, as `kind.path.to.field`, with its schema.
    fn fields(crd: &CustomResourceDefinition) -> Vec<(String, JSONSchemaProps)> {
        fn walk(path: &str, schema: &JSONSchemaProps, out: &mut Vec<(String, JSONSchemaProps)>) {
            for (name, field) in schema.properties.iter().flat_map(|p| p.iter()) {
                // apiVersion, kind and metadata are the apiserver's, documented by it.
                if path.matches('.').count() == 0
                    && ["apiVersion", "kind", "metadata"].contains(&name.as_str())
                {
                    continue;
                }
                let here = format!("{path}.{name}");
                out.push((here.clone(), field.clone()));
                walk(&here, field, out);
                if let Some(JSONSchemaPropsOrArray::Schema(items)) = field.items.as_ref() {
                    walk(&here, items, out);
                }
            }
        }
        let kind = crd.spec.names.kind.to_lowercase();
        let mut out = Vec::new();
        for version in &crd.spec.versions {
            if let Some(root) = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
            {
                out.push((kind.clone(), root.clone()));
                walk(&kind, root, &mut out);
            }
        }
        out
    }

    /// `kubectl explain` shows every field's description: none may be empty, and none may
    /// break a line inside a paragraph (explain would print the break mid-sentence).
    #[test]
    fn every_field_of_every_kind_has_a_description_in_whole_sentences() {
        let mut missing = Vec::new();
        let mut wrapped = Vec::new();
        for crd in all_crds() {
            for (path, schema) in fields(&crd) {
                let description = schema.description.as_deref().unwrap_or("").trim();
                if description.is_empty() {
                    missing.push(path);
                } else if description.split("\n\n").any(|p| p.contains('\n')) {
                    wrapped.push(path);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
        assert!(
            wrapped.is_empty(),
            "descriptions wrapped mid-paragraph: {wrapped:?}"
        );
    }

    #[test]
    fn paragraphs_are_unwrapped_and_kept_apart() {
        assert_eq!(
            unwrap_paragraphs("One sentence\nthat wraps.\n\nAnother one."),
            "One sentence that wraps.\n\nAnother one."
        );
    }

    #[test]
    fn the_stream_holds_every_crd() {
        let yaml = crds_yaml().expect("CRDs serialize");
        assert_eq!(yaml.matches("kind: CustomResourceDefinition").count(), 5);
        for name in [
            "tenants.canopy.dev",
            "subnamespaceanchors.canopy.dev",
            "hierarchyconfigurations.canopy.dev",
            "canopyconfigurations.canopy.dev",
            "hierarchicalresourcequotas.canopy.dev",
        ] {
            assert!(yaml.contains(&format!("name: {name}\n")), "{name} missing");
        }
    }
}
