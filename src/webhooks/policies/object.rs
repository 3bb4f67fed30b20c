//! Reading typed fields out of an untyped admission object.
//!
//! Only the part a policy needs is deserialized: a whole `Deployment` would also have to
//! carry a well-formed `status`, `apiVersion` and `kind`, none of which the policies read.

use serde::Deserialize;
use serde_json::Value;

use super::PolicyError;

/// The field at `pointer` (JSON pointer) of `object`, `None` when it is absent or null.
pub(crate) fn optional_field<'v, T: Deserialize<'v>>(
    kind: &'static str,
    object: &'v Value,
    pointer: &'static str,
    path: &'static str,
) -> Result<Option<T>, PolicyError> {
    if !object.is_object() {
        return Err(PolicyError::NotAnObject { kind });
    }
    match object.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value)
            .map(Some)
            .map_err(|source| PolicyError::Malformed { kind, path, source }),
    }
}

/// The field at `pointer` of `object`, which must be there.
pub(crate) fn required_field<'v, T: Deserialize<'v>>(
    kind: &'static str,
    object: &'v Value,
    pointer: &'static str,
    path: &'static str,
) -> Result<T, PolicyError> {
    optional_field(kind, object, pointer, path)?.ok_or(PolicyError::MissingField { kind, path })
}

/// The object's name for messages: `metadata.name`, or `metadata.generateName` when the
/// name is not chosen yet, or nothing.
pub(crate) fn object_name(object: &Value) -> Option<String> {
    let text = |pointer| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    text("/metadata/name")
        .map(str::to_owned)
        .or_else(|| text("/metadata/generateName").map(|prefix| format!("{prefix}*")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn name_falls_back_to_generate_name() {
        assert_eq!(
            object_name(&json!({"metadata": {"name": "web"}})).as_deref(),
            Some("web")
        );
        assert_eq!(
            object_name(&json!({"metadata": {"generateName": "web-"}})).as_deref(),
            Some("web-*")
        );
        assert_eq!(object_name(&json!({"metadata": {"name": 3}})), None);
        assert_eq!(object_name(&json!([])), None);
    }

    #[test]
    fn fields_distinguish_missing_from_malformed() {
        let object = json!({"spec": {"n": "x"}});
        let missing = required_field::<String>("Pod", &object, "/spec/m", "spec.m");
        assert!(matches!(missing, Err(PolicyError::MissingField { .. })));
        let malformed = required_field::<u32>("Pod", &object, "/spec/n", "spec.n");
        assert!(matches!(malformed, Err(PolicyError::Malformed { .. })));
        let not_object = optional_field::<String>("Pod", &json!("x"), "/spec", "spec");
        assert!(matches!(not_object, Err(PolicyError::NotAnObject { .. })));
        let null = optional_field::<String>("Pod", &json!({"spec": null}), "/spec", "spec");
        assert!(matches!(null, Ok(None)));
    }
}
