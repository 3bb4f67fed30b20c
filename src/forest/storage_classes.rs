//! The cluster's default StorageClass, for the storage guardrail: a claim without a class
//! gets the default one (the DefaultStorageClass admission plugin, or later the
//! PersistentVolume controller), so the webhook judges a class-less claim by it.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use parking_lot::RwLock;

use super::indexer::{Indexer, lists_whole};

/// The annotation that makes a StorageClass the default.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Its beta spelling, which the apiserver still honours.
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// The StorageClasses marked default, by name, with their creation time.
#[derive(Clone, Default)]
pub struct StorageClassIndex {
    defaults: Arc<RwLock<BTreeMap<String, Option<Timestamp>>>>,
}

impl StorageClassIndex {
    /// The default class. With several, the newest, as the apiserver picks it (ties by
    /// name, so the answer does not depend on the order of events).
    pub fn default_class(&self) -> Option<String> {
        self.defaults
            .read()
            .iter()
            .max_by(|(a_name, a_time), (b_name, b_time)| {
                a_time.cmp(b_time).then_with(|| b_name.cmp(a_name))
            })
            .map(|(name, _)| name.clone())
    }

    fn set(&self, class: &StorageClass) {
        let name = class.name_any();
        let is_default = [DEFAULT_CLASS, DEFAULT_CLASS_BETA]
            .iter()
            .any(|key| class.annotations().get(*key).is_some_and(|v| v == "true"));
        let mut defaults = self.defaults.write();
        if is_default {
            let created = class.metadata.creation_timestamp.as_ref().map(|t| t.0);
            defaults.insert(name, created);
        } else {
            defaults.remove(&name);
        }
    }
}

/// No reconciler decides anything from StorageClasses: the index reports no change.
impl Indexer<StorageClass> for StorageClassIndex {
    type Change = std::convert::Infallible;
    lists_whole!(StorageClass);

    fn apply(&self, class: StorageClass) -> Vec<Self::Change> {
        self.set(&class);
        Vec::new()
    }

    fn delete(&self, class: StorageClass) -> Vec<Self::Change> {
        self.defaults.write().remove(&class.name_any());
        Vec::new()
    }

    fn reset(&self, listed: Vec<StorageClass>, _first: bool) -> Vec<Self::Change> {
        self.defaults.write().clear();
        for class in &listed {
            self.set(class);
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn class(name: &str, default: Option<&str>, second: i64) -> StorageClass {
        let mut class = StorageClass::default();
        class.metadata.name = Some(name.to_owned());
        class.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(second).expect("a valid time")));
        if let Some(value) = default {
            class.metadata.annotations = Some(BTreeMap::from([(
                DEFAULT_CLASS.to_owned(),
                value.to_owned(),
            )]));
        }
        class
    }

    #[test]
    fn the_newest_default_wins_and_unmarking_forgets() {
        let index = StorageClassIndex::default();
        index.apply(class("standard", Some("true"), 10));
        index.apply(class("fast", Some("false"), 20));
        assert_eq!(index.default_class().as_deref(), Some("standard"));
        index.apply(class("fast", Some("true"), 20));
        assert_eq!(index.default_class().as_deref(), Some("fast"));
        index.apply(class("fast", None, 20));
        assert_eq!(index.default_class().as_deref(), Some("standard"));
        index.delete(class("standard", Some("true"), 10));
        assert_eq!(index.default_class(), None);
        index.reset(
            vec![class("a", Some("true"), 5), class("b", Some("true"), 5)],
            false,
        );
        assert_eq!(index.default_class().as_deref(), Some("a"));
        // The beta annotation counts too.
        let mut beta = class("beta", None, 1);
        beta.metadata.annotations = Some(BTreeMap::from([(
            DEFAULT_CLASS_BETA.to_owned(),
            "true".to_owned(),
        )]));
        index.reset(vec![beta], false);
        assert_eq!(index.default_class().as_deref(), Some("beta"));
    }
}
