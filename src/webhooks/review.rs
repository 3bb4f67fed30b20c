//! Decoding AdmissionReviews and encoding the answers.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, DynamicResourceScope, TypeMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// An AdmissionReview as the apiserver sends it. kube's `AdmissionReview` reads its
/// `apiVersion` and `kind` through `#[serde(flatten)]`, which makes serde buffer the whole
/// body (object included) in an intermediate tree first; this reads them as plain fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<T: Resource> {
    api_version: String,
    kind: String,
    request: Option<AdmissionRequest<T>>,
}

/// Parses a request body into the request it carries, with its objects as `T`:
/// `DynamicObject` for handlers that read them whole, `RawObject` for those that read
/// only parts.
pub fn decode<T: Resource + DeserializeOwned>(
    body: &[u8],
) -> Result<AdmissionRequest<T>, ReviewError> {
    let review: Review<T> = serde_json::from_slice(body)?;
    if review.api_version != "admission.k8s.io/v1" {
        return Err(ReviewError::Version(review.api_version));
    }
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::Kind(review.kind));
    }
    let mut request = review.request.ok_or(ReviewError::NoRequest)?;
    // The response copies apiVersion and kind from the request; the apiserver rejects a
    // response without them.
    request.types = TypeMeta {
        api_version: review.api_version,
        kind: review.kind,
    };
    Ok(request)
}

/// An object of a request kept as the JSON text the apiserver sent. The policies read a
/// few fields of it (a pod spec, a name), each deserialized straight from the text;
/// building a tree of the whole object first was most of a review's time.
///
/// It is a `Resource` only so that kube's `AdmissionRequest` can carry it: its metadata
/// is never parsed, so `meta()` is always empty. Read `json()`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RawObject {
    json: Box<RawValue>,
    #[serde(skip)]
    unparsed: ObjectMeta,
}

impl RawObject {
    pub fn json(&self) -> &RawValue {
        &self.json
    }
}

impl Resource for RawObject {
    type DynamicType = ();
    type Scope = DynamicResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.unparsed
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.unparsed
    }
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
pub fn respond<T: Resource>(
    request: &AdmissionRequest<T>,
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
        let request: AdmissionRequest<DynamicObject> =
            decode(review("").as_bytes()).expect("valid review");
        let answer =
            serde_json::to_value(respond(&request, Verdict::Deny("no".into()))).expect("json");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "1");
        assert_eq!(answer["response"]["allowed"], false);
        assert_eq!(answer["response"]["status"]["message"], "no");
        assert_eq!(answer["response"]["status"]["code"], 403);
    }

    /// A policy request keeps its objects as the text sent, and is answered like any other.
    #[test]
    fn a_raw_request_keeps_the_object_text() {
        let body = review(r#","oldObject":null"#);
        let request: AdmissionRequest<RawObject> = decode(body.as_bytes()).expect("valid review");
        let object = request.object.as_ref().expect("an object");
        let parsed: serde_json::Value = serde_json::from_str(object.json().get()).expect("JSON");
        assert_eq!(parsed["metadata"]["name"], "x");
        assert!(request.old_object.is_none());
        let answer =
            serde_json::to_value(respond(&request, Verdict::Deny("no".into()))).expect("json");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "1");
        assert_eq!(answer["response"]["allowed"], false);
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
            assert!(
                decode::<DynamicObject>(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
            assert!(
                decode::<RawObject>(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_denial_carries_warnings_too() {
        let request: AdmissionRequest<DynamicObject> =
            decode(review("").as_bytes()).expect("valid review");
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
        let request: AdmissionRequest<DynamicObject> =
            decode(review("").as_bytes()).expect("valid review");
        let answer = serde_json::to_value(respond(&request, Verdict::Warn(vec!["careful".into()])))
            .expect("json");
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["warnings"][0], "careful");
    }
}
