//! `kubectl canopy create CHILD -n PARENT`: a SubnamespaceAnchor named CHILD in PARENT.

use kube::api::PostParams;
use kube::{Api, Client};

use super::error::{CliError, Request};
use super::snapshot::not_found;
use crate::api::errors;
use crate::api::{SubnamespaceAnchor, SubnamespaceAnchorSpec};

const RESOURCE: &str = "subnamespaceanchors.canopy.dev";

pub async fn run(client: &Client, parent: &str, child: &str) -> Result<String, CliError> {
    check_namespace_name(child)?;
    if child == parent {
        return Err(CliError::new(format!(
            "{child:?} cannot be a subnamespace of itself"
        )));
    }
    let anchors: Api<SubnamespaceAnchor> = Api::namespaced(client.clone(), parent);
    let anchor = SubnamespaceAnchor::new(child, SubnamespaceAnchorSpec::default());
    match anchors.create(&PostParams::default(), &anchor).await {
        Ok(_) => Ok(format!(
            "Successfully created {child:?} subnamespace anchor in {parent:?} namespace\n"
        )),
        Err(e) if errors::is_already_exists(&e) => Err(CliError::new(format!(
            "subnamespace anchor {child:?} already exists in {parent:?} namespace"
        ))),
        // The apiserver answers 404 for a create in a namespace that does not exist.
        Err(e) if errors::is_not_found(&e) => Err(not_found(parent)),
        Err(e) => Err(Request::namespaced("create", RESOURCE, parent).error(e)),
    }
}

/// The anchor's name becomes a namespace's, so it must be a DNS label; checked here
/// because the apiserver only checks the looser object-name rules for the anchor itself.
pub fn check_namespace_name(name: &str) -> Result<(), CliError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{name:?} is not a valid namespace name: use at most 63 lowercase letters, \
             digits and '-', starting and ending with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_must_be_dns_labels() {
        for good in ["a", "team-a", "x1", &"a".repeat(63)] {
            assert!(check_namespace_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Team", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            let err = check_namespace_name(bad).expect_err(bad);
            assert!(err.message().contains("not a valid namespace name"));
        }
    }
}
