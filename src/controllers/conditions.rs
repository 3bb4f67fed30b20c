//! `metav1.Condition` lists: set a condition without churning `lastTransitionTime`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::Condition;

/// A condition that should be present, before timestamps are decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The condition list for `desired`, reusing each existing condition's
/// `lastTransitionTime` when its status did not change, so a status that did not change
/// is written byte for byte as it was (no churn for GitOps tools).
pub fn merge(
    existing: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let status = if want.status { "True" } else { "False" };
            let old = existing.iter().find(|c| c.type_ == want.type_);
            let last_transition_time = match old {
                Some(old) if old.status == status => old.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: want.type_.to_owned(),
                status: status.to_owned(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(status: bool, reason: &str) -> DesiredCondition {
        DesiredCondition {
            type_: "ActivitiesHalted",
            status,
            reason: reason.to_owned(),
            message: "m".to_owned(),
        }
    }

    #[test]
    fn keeps_the_transition_time_while_the_status_holds() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let t1 = Timestamp::from_second(2_000).expect("valid");
        let first = merge(&[], &[desired(true, "InCycle")], Some(1), t0);
        let again = merge(&first, &[desired(true, "ParentMissing")], Some(1), t1);
        assert_eq!(again[0].last_transition_time, Time(t0));
        assert_eq!(again[0].reason, "ParentMissing");
        let flipped = merge(&again, &[desired(false, "Healed")], Some(2), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn conditions_not_desired_are_dropped() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let first = merge(&[], &[desired(true, "InCycle")], None, t0);
        assert!(merge(&first, &[], None, t0).is_empty());
    }
}
