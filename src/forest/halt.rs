use crate::api::reasons;

/// Why a namespace is halted (`ActivitiesHalted`): nothing is propagated into or out of
/// it, and nothing in it is deleted, until it heals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaltReason {
    /// Its ancestry loops back to itself.
    InCycle { members: Vec<String> },
    /// Its parent does not exist.
    ParentMissing { parent: String },
    /// Its parent is excluded (or it is excluded itself and has a parent).
    IllegalParent { parent: String },
    /// An ancestor is halted.
    AncestorHalted { ancestor: String },
    /// It is being deleted.
    Deleting,
}

impl HaltReason {
    /// The condition reason of the contract.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InCycle { .. } => reasons::IN_CYCLE,
            Self::ParentMissing { .. } => reasons::PARENT_MISSING,
            Self::IllegalParent { .. } => reasons::ILLEGAL_PARENT,
            Self::AncestorHalted { .. } => reasons::ANCESTOR_HALTED,
            Self::Deleting => reasons::DELETING,
        }
    }

    /// A sentence for the condition's message.
    pub fn message(&self) -> String {
        match self {
            Self::InCycle { members } => {
                let mut path = members.clone();
                if let Some(first) = members.first() {
                    path.push(first.clone());
                }
                format!(
                    "the parent chain loops back: {}; set a parent outside the cycle",
                    path.join(" -> ")
                )
            }
            Self::ParentMissing { parent } => {
                format!(
                    "parent namespace {parent:?} does not exist; create it or set another parent"
                )
            }
            Self::IllegalParent { parent } => format!(
                "parent {parent:?} is not allowed: excluded namespaces are never part of a tree"
            ),
            Self::AncestorHalted { ancestor } => {
                format!("ancestor {ancestor:?} is halted; see its HierarchyConfiguration")
            }
            Self::Deleting => "the namespace is being deleted".to_owned(),
        }
    }
}
