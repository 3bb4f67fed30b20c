//! The per-source exceptions: `propagate.canopy.dev/none`, `select`, `treeSelect`, `all`.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, Selector, SelectorExt};

use crate::api::keys;
use crate::forest::Forest;

/// A source's propagation annotations, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exceptions {
    pub none: bool,
    /// Propagate to every descendant (for `AllowPropagate` kinds).
    pub all: bool,
    pub select: Option<Selector>,
    pub tree_select: Option<TreeSelect>,
}

/// Why a source's annotations cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Exceptions {
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let flag = |key: &str| annotations.get(key).is_some_and(|v| v.trim() == "true");
        let select = annotations
            .get(keys::PROPAGATE_SELECT)
            .map(|s| parse_label_selector(s))
            .transpose()
            .map_err(|message| SelectorError::Invalid {
                key: keys::PROPAGATE_SELECT,
                message,
            })?;
        let tree_select = annotations
            .get(keys::PROPAGATE_TREE_SELECT)
            .map(|s| TreeSelect::parse(s))
            .transpose()
            .map_err(|message| SelectorError::Invalid {
                key: keys::PROPAGATE_TREE_SELECT,
                message,
            })?;
        Ok(Self {
            none: flag(keys::PROPAGATE_NONE),
            all: flag(keys::PROPAGATE_ALL),
            select,
            tree_select,
        })
    }

    /// Whether the source opted in, for kinds that propagate only on request.
    pub fn opted_in(&self) -> bool {
        self.all || self.select.is_some() || self.tree_select.is_some()
    }

    /// Whether a copy belongs in `namespace`.
    pub fn admits(&self, forest: &Forest, namespace: &str) -> bool {
        if self.none {
            return false;
        }
        if let Some(selector) = &self.select {
            let labels = forest.get(namespace).map(|s| &s.labels);
            let empty = BTreeMap::new();
            if !selector.matches(labels.unwrap_or(&empty)) {
                return false;
            }
        }
        if let Some(tree) = &self.tree_select
            && !tree.admits(forest, namespace)
        {
            return false;
        }
        true
    }
}

/// `"team-a, !team-a-sandbox"`: the subtrees of the positive entries (all, if there are
/// none), minus the subtrees of the negated ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSelect {
    include: BTreeSet<String>,
    exclude: BTreeSet<String>,
}

impl TreeSelect {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tree = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (set, name) = match entry.strip_prefix('!') {
                Some(name) => (&mut tree.exclude, name.trim()),
                None => (&mut tree.include, entry),
            };
            if name.is_empty() || !is_dns_label(name) {
                return Err(format!("{entry:?} is not a namespace name"));
            }
            set.insert(name.to_owned());
        }
        if tree.include.is_empty() && tree.exclude.is_empty() {
            return Err("names no namespace".to_owned());
        }
        Ok(tree)
    }

    fn admits(&self, forest: &Forest, namespace: &str) -> bool {
        let in_subtree_of =
            |root: &String| root == namespace || forest.is_ancestor(root, namespace);
        (self.include.is_empty() || self.include.iter().any(in_subtree_of))
            && !self.exclude.iter().any(in_subtree_of)
    }
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parses the string form of a Kubernetes label selector (`a=b,c!=d,e in (x,y),!f,g`).
pub fn parse_label_selector(text: &str) -> Result<Selector, String> {
    let mut expressions = Vec::new();
    for term in split_terms(text)? {
        expressions.push(parse_term(&term)?);
    }
    if expressions.is_empty() {
        return Err(
            "an empty selector would select every namespace; remove the annotation instead".into(),
        );
    }
    let mut selector = Selector::default();
    selector.extend(expressions);
    Ok(selector)
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced ')'")?,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    terms.push(current);
    Ok(terms
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect())
}

fn parse_term(term: &str) -> Result<Expression, String> {
    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(format!("{term:?} has no valid key"))
        } else {
            Ok(k.to_owned())
        }
    };
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key(rest)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Expression::NotEqual(key(k)?, v.trim().to_owned()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Expression::Equal(key(k)?, v.trim().to_owned()));
    }
    for (op, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = term.split_once(op) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("{term:?}: expected a list in parentheses"))?;
            let values: BTreeSet<String> = inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            return Ok(if notin {
                Expression::NotIn(key(k)?, values)
            } else {
                Expression::In(key(k)?, values)
            });
        }
    }
    Ok(Expression::Exists(key(term)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::forest::testing::labels;

    #[test]
    fn label_selectors_parse_like_kubectl() {
        let s = parse_label_selector("env=prod, tier in (web, api), !legacy, team").expect("valid");
        assert!(s.matches(&labels(&[("env", "prod"), ("tier", "api"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "db"), ("team", "a")])));
        assert!(!s.matches(&labels(&[
            ("env", "prod"),
            ("tier", "web"),
            ("team", "a"),
            ("legacy", "1")
        ])));
        let s = parse_label_selector("env!=dev,zone notin (a,b)").expect("valid");
        assert!(s.matches(&labels(&[("env", "prod"), ("zone", "c")])));
        assert!(!s.matches(&labels(&[("zone", "a")])));
        for bad in ["", "a in b", "a in (b", "=x", ",,"] {
            assert!(parse_label_selector(bad).is_err(), "{bad:?}");
        }
    }

    fn forest() -> Forest {
        let mut f = Forest::new();
        for (ns, parent, team) in [
            ("root", None, "x"),
            ("team-a", Some("root"), "a"),
            ("team-a-sandbox", Some("team-a"), "a"),
            ("team-a-prod", Some("team-a"), "a"),
            ("team-b", Some("root"), "b"),
        ] {
            f.set_namespace(ns, labels(&[("team", team)]), false);
            f.set_hierarchy(ns, parent, false);
        }
        f
    }

    #[test]
    fn tree_select_takes_subtrees_and_removes_negated_ones() {
        let f = forest();
        let ex = Exceptions::parse(&labels(&[(
            keys::PROPAGATE_TREE_SELECT,
            "team-a, !team-a-sandbox",
        )]))
        .expect("valid");
        assert!(ex.admits(&f, "team-a"));
        assert!(ex.admits(&f, "team-a-prod"));
        assert!(!ex.admits(&f, "team-a-sandbox"));
        assert!(!ex.admits(&f, "team-b"));
        let only_not =
            Exceptions::parse(&labels(&[(keys::PROPAGATE_TREE_SELECT, "!team-b")])).expect("valid");
        assert!(only_not.admits(&f, "team-a-prod") && !only_not.admits(&f, "team-b"));
        assert!(Exceptions::parse(&labels(&[(keys::PROPAGATE_TREE_SELECT, "Team A")])).is_err());
    }

    #[test]
    fn select_matches_descendant_labels_and_none_stops_everything() {
        let f = forest();
        let ex = Exceptions::parse(&labels(&[(keys::PROPAGATE_SELECT, "team=b")])).expect("valid");
        assert!(ex.admits(&f, "team-b") && !ex.admits(&f, "team-a"));
        let none = Exceptions::parse(&labels(&[(keys::PROPAGATE_NONE, "true")])).expect("valid");
        assert!(!none.admits(&f, "team-b"));
        assert!(!none.opted_in());
        assert!(
            Exceptions::parse(&labels(&[(keys::PROPAGATE_ALL, "true")]))
                .expect("valid")
                .opted_in()
        );
    }
}
