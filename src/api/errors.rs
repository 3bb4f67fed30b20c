//! Which refusal the apiserver answered, for the ones canopy handles instead of reporting
//! (a delete of what is already gone, a create of what already exists, ...).
//!
//! kube-core's `Status::is_not_found` and its siblings compare the reason only. A refusal
//! whose body is not a `Status` (an API path that is not served, a proxy in between)
//! reaches us with a made-up reason and the real HTTP code, so these also accept the code
//! when the reason is not one the apiserver uses, as client-go's `apierrors.IsNotFound`
//! does. Every check of an apiserver answer goes through here, not through `code == 404`.

use kube::core::Status;
use kube::core::response::reason;

/// The apiserver's answer, if `err` is one.
pub fn status(err: &kube::Error) -> Option<&Status> {
    match err {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

/// `reason`, or `code` with a reason the apiserver never sends.
fn reason_or_code(status: &Status, wanted: &str, code: u16) -> bool {
    status.reason == wanted || (!reason::is_known(&status.reason) && status.code == code)
}

/// 404: the object (or its namespace, or its kind) does not exist.
pub fn is_not_found(err: &kube::Error) -> bool {
    status(err).is_some_and(|s| s.is_not_found() || reason_or_code(s, reason::NOT_FOUND, 404))
}

/// 409 on a create: an object of that name exists.
pub fn is_already_exists(err: &kube::Error) -> bool {
    status(err)
        .is_some_and(|s| s.is_already_exists() || reason_or_code(s, reason::ALREADY_EXISTS, 409))
}

/// 409 on a write with a `resourceVersion`: the object changed since it was read.
pub fn is_conflict(err: &kube::Error) -> bool {
    status(err).is_some_and(|s| s.is_conflict() || reason_or_code(s, reason::CONFLICT, 409))
}

/// 403: refused by RBAC, or by an admission plugin (a namespace being terminated).
pub fn is_forbidden(err: &kube::Error) -> bool {
    status(err).is_some_and(|s| s.is_forbidden() || reason_or_code(s, reason::FORBIDDEN, 403))
}

/// 403 from the NamespaceLifecycle admission plugin: the namespace is being deleted and
/// takes no new objects. Expected while a tree is torn down; nothing to report.
pub fn is_namespace_terminating(err: &kube::Error) -> bool {
    status(err).is_some_and(|s| {
        is_forbidden(err)
            && (s.message.contains("because it is being terminated")
                || s.details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
    })
}

/// 422: the content was refused (validation, an immutable field changed).
pub fn is_invalid(err: &kube::Error) -> bool {
    status(err).is_some_and(|s| s.is_invalid() || reason_or_code(s, reason::INVALID, 422))
}

/// 5xx: the apiserver (or something behind it) failed; worth retrying.
pub fn is_server_error(err: &kube::Error) -> bool {
    status(err).is_some_and(|s| s.code >= 500)
}

/// 410 (a watch's resource version is too old; the watcher must relist).
pub fn is_gone(status: &Status) -> bool {
    status.reason == reason::EXPIRED || reason_or_code(status, reason::GONE, 410)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(reason: &str, code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("refused", reason).with_code(code)))
    }

    #[test]
    fn the_reason_decides_and_the_code_counts_only_without_a_known_reason() {
        assert!(is_not_found(&api("NotFound", 404)));
        // What kube-client makes of a plain-text 404 (an API path that is not served).
        assert!(is_not_found(&api("Failed to parse error data", 404)));
        assert!(!is_not_found(&api("Forbidden", 403)));
        assert!(is_already_exists(&api("AlreadyExists", 409)));
        assert!(!is_conflict(&api("AlreadyExists", 409)));
        assert!(is_conflict(&api("Conflict", 409)));
        assert!(!is_already_exists(&api("Conflict", 409)));
        assert!(is_forbidden(&api("Forbidden", 403)));
        assert!(!is_namespace_terminating(&api("Forbidden", 403)));
        let terminating = kube::Error::Api(Box::new(
            Status::failure(
                "roles \"x\" is forbidden: unable to create new content in namespace team \
                 because it is being terminated",
                "Forbidden",
            )
            .with_code(403),
        ));
        assert!(is_namespace_terminating(&terminating));
        assert!(is_invalid(&api("Invalid", 422)));
        assert!(is_server_error(&api("InternalError", 500)));
        assert!(!is_server_error(&api("NotFound", 404)));
        assert!(is_gone(
            &Status::failure("too old", "Expired").with_code(410)
        ));
        assert!(is_gone(&Status::failure("gone", "Gone").with_code(410)));
        assert!(!is_gone(
            &Status::failure("boom", "InternalError").with_code(500)
        ));
        assert!(!is_not_found(&kube::Error::LinesCodecMaxLineLengthExceeded));
    }
}
