//! One-line errors for the plugin, naming what was refused and by whom.

use std::fmt;

/// An error the plugin prints as `Error: <message>` before exiting with 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    message: String,
    forbidden: bool,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            forbidden: false,
        }
    }

    fn forbidden(message: String) -> Self {
        Self {
            message,
            forbidden: true,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The apiserver refused the request (403), so a narrower request may still work.
    pub fn is_forbidden(&self) -> bool {
        self.forbidden
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Users grep for and paste single lines; apiserver and TLS messages can span several.
        let one_line = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        f.write_str(&one_line)
    }
}

impl std::error::Error for CliError {}

/// A request the plugin makes, so an error can say which verb on which resource failed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    /// `None` for a cluster-wide request.
    pub namespace: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn cluster(verb: &'a str, resource: &'a str) -> Self {
        Self {
            verb,
            resource,
            namespace: None,
        }
    }

    pub fn namespaced(verb: &'a str, resource: &'a str, namespace: &'a str) -> Self {
        Self {
            verb,
            resource,
            namespace: Some(namespace),
        }
    }

    fn describe(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{} {} in namespace {ns:?}", self.verb, self.resource),
            None => format!("{} {} at the cluster scope", self.verb, self.resource),
        }
    }

    /// Which rule refused, the apiserver's words, and what to ask for. A canopy webhook
    /// says why and what to do itself; an RBAC refusal only says what is missing.
    fn forbidden_detail(&self, message: &str) -> String {
        const DENIED: &str = "denied the request: ";
        if let Some(rest) = message.split("admission webhook \"").nth(1)
            && let Some((webhook, _)) = rest.split_once('"')
        {
            let reason = rest.split_once(DENIED).map_or(rest, |(_, r)| r);
            return format!(" by the admission webhook {webhook}: {reason}");
        }
        let ask = match self.namespace {
            Some(ns) => format!(
                "ask an admin of namespace {ns:?} (or a cluster admin) for {} on {} there",
                self.verb, self.resource
            ),
            None => format!(
                "ask a cluster admin for {} on {} at the cluster scope (a ClusterRole and \
                 ClusterRoleBinding)",
                self.verb, self.resource
            ),
        };
        format!(" by RBAC: {message}; {ask}")
    }

    /// Turns a client error into a message that names this request.
    pub fn error(&self, err: kube::Error) -> CliError {
        match err {
            kube::Error::Api(status) => {
                let what = self.describe();
                let message = status.message.trim();
                let message = if message.is_empty() {
                    status.reason.as_str()
                } else {
                    message
                };
                match status.code {
                    401 => CliError::new(format!(
                        "the cluster refused our credentials (Unauthorized) for {what}: {message}"
                    )),
                    403 => CliError::forbidden(format!(
                        "{what} was refused (Forbidden){}",
                        self.forbidden_detail(message)
                    )),
                    _ => CliError::new(format!("cannot {what}: {message}")),
                }
            }
            other => CliError::new(format!(
                "cannot {}: {}",
                self.describe(),
                with_sources(&other)
            )),
        }
    }
}

/// An error with its causes, `outer: inner: innermost`, since the outer layers of a
/// connection error ("client error (Connect)") alone do not tell what went wrong.
pub fn with_sources(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut status = kube::core::Status::failure(message, reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn forbidden_names_the_verb_resource_and_scope() {
        let err = Request::cluster("list", "namespaces").error(api_error(
            403,
            "Forbidden",
            "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\"",
        ));
        assert_eq!(
            err.to_string(),
            "list namespaces at the cluster scope was refused (Forbidden) by RBAC: namespaces \
             is forbidden: User \"bob\" cannot list resource \"namespaces\"; ask a cluster \
             admin for list on namespaces at the cluster scope (a ClusterRole and \
             ClusterRoleBinding)"
        );
        assert!(err.is_forbidden());
        let err = Request::namespaced("create", "subnamespaceanchors", "acme").error(api_error(
            403,
            "Forbidden",
            "no",
        ));
        assert_eq!(
            err.to_string(),
            "create subnamespaceanchors in namespace \"acme\" was refused (Forbidden) by \
             RBAC: no; ask an admin of namespace \"acme\" (or a cluster admin) for create on \
             subnamespaceanchors there"
        );
        // A webhook's refusal names the webhook and keeps its own explanation.
        let err = Request::namespaced("patch", "hierarchyconfigurations", "c").error(api_error(
            403,
            "Forbidden",
            "admission webhook \"hierarchy.canopy.dev\" denied the request: alice may not \
             change the parent of namespace \"c\": ask an admin of \"root\"",
        ));
        assert_eq!(
            err.to_string(),
            "patch hierarchyconfigurations in namespace \"c\" was refused (Forbidden) by the \
             admission webhook hierarchy.canopy.dev: alice may not change the parent of \
             namespace \"c\": ask an admin of \"root\""
        );
    }

    #[test]
    fn messages_are_one_line() {
        let err = CliError::new("first\n  second\tthird");
        assert_eq!(err.to_string(), "first second third");
    }

    #[test]
    fn an_empty_message_falls_back_to_the_reason() {
        let err = Request::cluster("get", "things").error(api_error(500, "InternalError", ""));
        assert!(!err.is_forbidden());
        assert_eq!(
            err.to_string(),
            "cannot get things at the cluster scope: InternalError"
        );
    }
}
