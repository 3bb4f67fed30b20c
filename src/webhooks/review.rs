//! Decoding AdmissionReviews and encoding the answers.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

/// Why a request body is not an AdmissionReview we can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not a JSON AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("unsupported AdmissionReview version {0:?}; only admission.k8s.io/v1 is served")]
    Version(String),
    #[error("the body is a {0:?}, not an AdmissionReview")]
    Kind(String),
}

/// Parses a request body into the request it carries.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, ReviewError> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    if review.types.api_version != "admission.k8s.io/v1" {
        return Err(ReviewError::Version(review.types.api_version));
    }
    if review.types.kind != "AdmissionReview" {
        return Err(ReviewError::Kind(review.types.kind));
    }
    // The conversion (unlike taking `review.request`) copies apiVersion and kind into the
    // request, and from there into the response; the apiserver rejects a response without.
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Admit, with warnings that kubectl prints.
    Warn(Vec<String>),
    /// Refuse, with a message that names the object, what is wrong and the fix.
    Deny(String),
    /// Refuse, and pass on warnings too (of policies in Warn mode), so that a refused user
    /// sees everything that is wrong at once.
    DenyWithWarnings {
        message: String,
        warnings: Vec<String>,
    },
}

impl Verdict {
    /// A label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Allow => "allowed",
            Verdict::Warn(_) => "warned",
            Verdict::Deny(_) | Verdict::DenyWithWarnings { .. } => "denied",
        }
    }

    pub fn denial(&self) -> Option<&str> {
        match self {
            Verdict::Deny(message) | Verdict::DenyWithWarnings { message, .. } => Some(message),
            Verdict::Allow | Verdict::Warn(_) => None,
        }
    }
}

/// The response body for `verdict` on `request`.
pub fn respond(
    request: &AdmissionRequest<DynamicObject>,
    verdict: Verdict,
) -> AdmissionReview<DynamicObject> {
    let response = AdmissionResponse::from(request);
    let response = match verdict {
        Verdict::Allow => response,
        Verdict::Warn(warnings) => {
            let mut response = response;
            response.warnings = Some(warnings);
            response
        }
        Verdict::Deny(message) => deny(response, message),
        Verdict::DenyWithWarnings { message, warnings } => {
            let mut response = deny(response, message);
            response.warnings = Some(warnings);
            response
        }
    };
    response.into_review()
}

fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = 403;
    response.result.reason = "Forbidden".to_owned();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(extra: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{
            "uid":"1","kind":{{"group":"","version":"v1","kind":"Namespace"}},
            "resource":{{"group":"","version":"v1","resource":"namespaces"}},
            "name":"x","operation":"CREATE","userInfo":{{"username":"u"}},
            "object":{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"x"}}}}{extra}}}}}"#
        )
    }

    #[test]
    fn decodes_a_request_and_denies_with_its_uid() {
        let request = decode(review("").as_bytes()).expect("valid review");
        let answer =
            serde_json::to_value(respond(&request, Verdict::Deny("no".into()))).expect("json");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "1");
        assert_eq!(answer["response"]["allowed"], false);
        assert_eq!(answer["response"]["status"]["message"], "no");
        assert_eq!(answer["response"]["status"]["code"], 403);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for body in [
            "".as_bytes(),
            b"{",
            b"[]",
            b"null",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{}}}"#,
            &[0xff, 0xfe, 0x00],
        ] {
            assert!(decode(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_denial_carries_warnings_too() {
        let request = decode(review("").as_bytes()).expect("valid review");
        let verdict = Verdict::DenyWithWarnings {
            message: "no".into(),
            warnings: vec!["also".into()],
        };
        let answer = serde_json::to_value(respond(&request, verdict)).expect("json");
        assert_eq!(answer["response"]["allowed"], false);
        assert_eq!(answer["response"]["status"]["message"], "no");
        assert_eq!(answer["response"]["warnings"][0], "also");
    }

    #[test]
    fn warnings_admit() {
        let request = decode(review("").as_bytes()).expect("valid review");
        let answer = serde_json::to_value(respond(&request, Verdict::Warn(vec!["careful".into()])))
            .expect("json");
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["warnings"][0], "careful");
    }
}
