//! Reading typed fields out of an untyped admission object.
//!
//! Only the part a policy needs is deserialized: a whole `Deployment` would also have to
//! carry a well-formed `status`, `apiVersion` and `kind`, none of which the policies read.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::PolicyError;

/// The field at `pointer` (a JSON pointer of object keys) of `object`, `None` when it is
/// absent or null.
///
/// It is deserialized straight from the request's JSON text: everything beside the
/// pointer's path is skipped without being built, so a review never pays for a tree of the
/// whole object (parsing one was most of a review's time).
pub(crate) fn optional_field<'v, T: Deserialize<'v>>(
    kind: &'static str,
    object: &'v RawValue,
    pointer: &'static str,
    path: &'static str,
) -> Result<Option<T>, PolicyError> {
    if !object.get().trim_start().starts_with('{') {
        return Err(PolicyError::NotAnObject { kind });
    }
    let keys: Vec<&str> = pointer.split('/').skip(1).collect();
    at_path(object, &keys).map_err(|source| PolicyError::Malformed { kind, path, source })
}

/// The field at `pointer` of `object`, which must be there.
pub(crate) fn required_field<'v, T: Deserialize<'v>>(
    kind: &'static str,
    object: &'v RawValue,
    pointer: &'static str,
    path: &'static str,
) -> Result<T, PolicyError> {
    optional_field(kind, object, pointer, path)?.ok_or(PolicyError::MissingField { kind, path })
}

/// The object's name for messages: `metadata.name`, or `metadata.generateName` when the
/// name is not chosen yet, or nothing.
pub(crate) fn object_name(object: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Names {
        name: Option<IgnoringBadType<String>>,
        generate_name: Option<IgnoringBadType<String>>,
    }
    let names: Names = at_path(object, &["metadata"]).ok().flatten()?;
    let text =
        |field: Option<IgnoringBadType<String>>| field.and_then(|f| f.0).filter(|s| !s.is_empty());
    text(names.name).or_else(|| text(names.generate_name).map(|prefix| format!("{prefix}*")))
}

/// A value that reads as `None` when it has another type: a name is only for messages,
/// so a malformed one is left out rather than failing the review.
struct IgnoringBadType<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for IgnoringBadType<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(Self(T::deserialize(value).ok()))
    }
}

/// `T` at `keys` below the top of `object`; `None` when a key is missing or a value on the
/// way is not an object. A key given twice counts as its last occurrence, as when the
/// object is read whole.
fn at_path<'v, T: Deserialize<'v>>(
    object: &'v RawValue,
    keys: &[&str],
) -> Result<Option<T>, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_str(object.get());
    let found = AtPath {
        keys,
        found: PhantomData,
    }
    .deserialize(&mut reader)?;
    reader.end()?;
    Ok(found)
}

struct AtPath<'k, T> {
    keys: &'k [&'k str],
    found: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for AtPath<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        if self.keys.is_empty() {
            Option::<T>::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for AtPath<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let Some((key, rest)) = self.keys.split_first() else {
            return Ok(None);
        };
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(key))? {
            if matches {
                found = map.next_value_seed(AtPath {
                    keys: rest,
                    found: PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// Whether a map key is the one looked for, without allocating it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The JSON text of `value`, as a request carries an object: for tests.
#[cfg(test)]
pub(crate) fn raw(value: &serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a Value is JSON")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn name_falls_back_to_generate_name() {
        assert_eq!(
            object_name(&raw(&json!({"metadata": {"name": "web"}}))).as_deref(),
            Some("web")
        );
        assert_eq!(
            object_name(&raw(&json!({"metadata": {"generateName": "web-"}}))).as_deref(),
            Some("web-*")
        );
        assert_eq!(object_name(&raw(&json!({"metadata": {"name": 3}}))), None);
        assert_eq!(object_name(&raw(&json!([]))), None);
    }

    #[test]
    fn fields_distinguish_missing_from_malformed() {
        let object = raw(&json!({"spec": {"n": "x"}}));
        let missing = required_field::<String>("Pod", &object, "/spec/m", "spec.m");
        assert!(matches!(missing, Err(PolicyError::MissingField { .. })));
        let malformed = required_field::<u32>("Pod", &object, "/spec/n", "spec.n");
        assert!(matches!(malformed, Err(PolicyError::Malformed { .. })));
        let not_object = optional_field::<String>("Pod", &raw(&json!("x")), "/spec", "spec");
        assert!(matches!(not_object, Err(PolicyError::NotAnObject { .. })));
        let null = optional_field::<String>("Pod", &raw(&json!({"spec": null})), "/spec", "spec");
        assert!(matches!(null, Ok(None)));
    }

    /// The walk reads what `Value::pointer` would, skipping everything else: through
    /// nested objects and arrays beside the path, escapes in keys, a key given twice (the
    /// last counts) and values on the way that are not objects.
    #[test]
    fn a_field_is_what_the_whole_object_holds_there() {
        let object = json!({
            "metadata": {"name": "web", "labels": {"a/b": "c", "q\"k": "v"}, "managedFields": [{"x": [1, 2, {"y": null}]}]},
            "spec": {"template": {"spec": {"containers": [{"name": "app"}]}}, "replicas": 3},
            "status": {"conditions": [{"type": "Ready", "message": "say \"hi\" \u{e9}"}]},
            "odd": "spec"
        });
        let text = raw(&object);
        for pointer in [
            "/spec/template/spec",
            "/spec/replicas",
            "/metadata/labels/a~1b",
            "/metadata/labels/q\"k",
            "/status/conditions",
            "/odd/spec",
            "/spec/missing",
            "/metadata/name/deeper",
        ] {
            let keys: Vec<String> = pointer
                .split('/')
                .skip(1)
                .map(|k| k.replace("~1", "/"))
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let walked: Option<Value> = at_path(&text, &keys).expect("parses");
            assert_eq!(walked.as_ref(), object.pointer(pointer), "{pointer}");
        }
        let twice = serde_json::value::RawValue::from_string(
            r#"{"spec": {"n": 1}, "spec": {"n": 2}}"#.to_owned(),
        )
        .expect("JSON");
        let n: Option<u32> = at_path(&twice, &["spec", "n"]).expect("parses");
        assert_eq!(n, Some(2));
    }
}
