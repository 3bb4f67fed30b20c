//! Why an object could not be checked.

/// An object a policy cannot read. The apiserver validates objects before validating
/// webhooks see them, so this means a hand-made or corrupted request, never a user mistake
/// in a manifest.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the request carries no {kind} object")]
    MissingObject { kind: &'static str },
    #[error("the {kind} object is not a JSON object")]
    NotAnObject { kind: &'static str },
    #[error("the {kind} object has no {path}")]
    MissingField {
        kind: &'static str,
        path: &'static str,
    },
    #[error("the {kind} object's {path} is malformed: {source}")]
    Malformed {
        kind: &'static str,
        path: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("a {kind} request carries no namespace")]
    MissingNamespace { kind: &'static str },
}
