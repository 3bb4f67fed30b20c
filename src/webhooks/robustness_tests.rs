//! Property tests of the request path the HTTP server runs (decode, review, encode): any
//! body, and any JSON in the place of an object, gets a 400 or a well-formed review, and
//! never a panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use warp::http::StatusCode;

use super::server::answer;
use super::{Webhooks, paths};
use crate::api::{CanopyConfigurationSpec, PolicyScope};
use crate::forest::Forest;
use crate::forest::watch::ClusterState;

fn webhooks() -> Webhooks {
    let mut forest = Forest::new();
    let tenant = BTreeMap::from([(crate::api::keys::TENANT.to_owned(), "acme".to_owned())]);
    forest.set_namespace("acme", tenant, false);
    let mut config = CanopyConfigurationSpec::default();
    config.policies.scope = PolicyScope::AllNamespaces;
    Webhooks::detached(ClusterState::detached(forest, config), "canopy".into())
}

fn run(webhooks: &Webhooks, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let answer = runtime.block_on(answer(webhooks, path, body));
    (answer.status, answer.body)
}

/// A 400 with a line of text, or a 200 with an AdmissionReview answering `uid`.
fn assert_well_formed(status: StatusCode, body: &[u8], uid: Option<&str>) {
    match status {
        StatusCode::BAD_REQUEST => assert!(!body.is_empty(), "a 400 says why"),
        StatusCode::OK => {
            let review: Value = serde_json::from_slice(body).expect("the answer is JSON");
            assert_eq!(review["kind"], "AdmissionReview");
            assert!(review["response"]["allowed"].is_boolean(), "{review}");
            if let Some(uid) = uid {
                assert_eq!(review["response"]["uid"], uid);
            }
        }
        other => panic!(
            "unexpected status {other}: {}",
            String::from_utf8_lossy(body)
        ),
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9/._-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,8}",
                    Just("spec".to_owned()),
                    Just("containers".to_owned()),
                    Just("volumes".to_owned()),
                    Just("resources".to_owned()),
                    Just("template".to_owned()),
                    Just("hostPath".to_owned()),
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn any_container() -> impl Strategy<Value = Value> {
    let quantity = prop_oneof!["[0-9]{1,4}(m|Mi|Gi)?".prop_map(Value::from), any_json(),];
    let resources = prop::collection::btree_map(
        prop_oneof![Just("requests"), Just("limits"), Just("claims")],
        prop::collection::btree_map(
            prop_oneof![Just("cpu"), Just("memory"), Just("ephemeral-storage")],
            quantity,
            0..3,
        ),
        0..3,
    )
    .prop_map(|map| json!(map));
    ("[a-z]{0,6}", resources, any_json()).prop_map(|(name, resources, extra)| {
        json!({"name": name, "image": "x", "resources": resources, "extra": extra})
    })
}

/// Pod-shaped JSON whose fields are sometimes right, sometimes of the wrong type.
fn any_pod_spec() -> impl Strategy<Value = Value> {
    let volume = (
        "[a-z]{0,6}",
        prop_oneof![
            Just(json!({"hostPath": {"path": "/"}})),
            Just(json!({"emptyDir": {}})),
            any_json().prop_map(|v| json!({"hostPath": v})),
            any_json(),
        ],
    )
        .prop_map(|(name, source)| {
            let mut volume = json!({"name": name});
            if let (Value::Object(volume), Value::Object(source)) = (&mut volume, source) {
                volume.extend(source);
            }
            volume
        });
    (
        prop::collection::vec(any_container(), 0..4),
        prop::collection::vec(any_container(), 0..2),
        prop::collection::vec(volume, 0..3),
        any_json(),
    )
        .prop_map(|(containers, init, volumes, resources)| {
            json!({"containers": containers, "initContainers": init, "volumes": volumes,
                   "resources": resources})
        })
}

fn review(
    kind: (&str, &str),
    namespace: &str,
    operation: &str,
    object: Value,
    old: Value,
) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz", "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "resource": {"group": kind.0, "version": "v1", "resource": "x"},
            "name": "x", "namespace": namespace, "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object, "oldObject": old,
        }
    })
}

const KINDS: [(&str, &str); 8] = [
    ("", "Pod"),
    ("apps", "Deployment"),
    ("batch", "CronJob"),
    ("batch", "Job"),
    ("", "PodTemplate"),
    ("", "PersistentVolume"),
    ("storage.k8s.io", "StorageClass"),
    ("", "ConfigMap"),
];

/// Puts `spec` where `kind` keeps its pod spec.
fn wrap(kind: &str, spec: Value) -> Value {
    let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": spec});
    let body = match kind {
        "Pod" => json!({"spec": spec}),
        "PodTemplate" => json!({"template": template}),
        "CronJob" => json!({"spec": {"jobTemplate": {"spec": {"template": template}}}}),
        "PersistentVolume" => json!({"spec": {"hostPath": spec["volumes"].clone(),
                                              "persistentVolumeReclaimPolicy": spec["resources"].clone()}}),
        "StorageClass" => json!({"reclaimPolicy": spec["resources"].clone()}),
        _ => json!({"spec": {"template": template}}),
    };
    let mut object = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}});
    if let (Value::Object(object), Value::Object(body)) = (&mut object, body) {
        object.extend(body);
    }
    object
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_400(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let webhooks = webhooks();
        for path in [paths::WORKLOADS, paths::VOLUMES, paths::NAMESPACE] {
            let (status, text) = run(&webhooks, path, &body);
            assert_well_formed(status, &text, None);
        }
    }

    #[test]
    fn arbitrary_json_gets_400_or_a_review(body in any_json()) {
        let webhooks = webhooks();
        let bytes = body.to_string().into_bytes();
        let (status, text) = run(&webhooks, paths::WORKLOADS, &bytes);
        assert_well_formed(status, &text, None);
    }

    #[test]
    fn arbitrary_objects_get_a_review(
        kind in prop::sample::select(KINDS.to_vec()),
        namespace in prop_oneof![Just("acme"), Just("elsewhere"), Just("")],
        operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
        spec in any_pod_spec(),
        old in prop_oneof![Just(Value::Null), any_pod_spec(), any_json()],
        raw in prop::option::of(any_json()),
    ) {
        let webhooks = webhooks();
        let object = raw.unwrap_or_else(|| wrap(kind.1, spec));
        let old = if old.is_null() { old } else { wrap(kind.1, old) };
        let body = review(kind, namespace, operation, object, old).to_string();
        for path in [paths::WORKLOADS, paths::VOLUMES] {
            let (status, text) = run(&webhooks, path, body.as_bytes());
            assert_well_formed(status, &text, Some("fuzz"));
        }
    }
}

#[test]
fn well_formed_pods_get_a_review_not_a_400() {
    let webhooks = webhooks();
    let pod = wrap(
        "Pod",
        json!({"containers": [{"name": "app", "image": "x"}], "volumes": []}),
    );
    let body = review(("", "Pod"), "acme", "CREATE", pod, Value::Null).to_string();
    let (status, text) = run(&webhooks, paths::WORKLOADS, body.as_bytes());
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_slice(&text).expect("JSON");
    assert_eq!(review["response"]["allowed"], false, "{review}");
}
