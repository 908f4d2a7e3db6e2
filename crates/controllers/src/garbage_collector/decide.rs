//! What the collector does with one object, given what it learned of its owners (upstream's
//! `attemptToDeleteItem`), as a plain function.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph::Node;

/// What an owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The owner exists with that uid and is not waiting for its dependents.
    Solid,
    /// No object of that name has that uid: the reference dangles.
    Absent,
    /// The owner is being deleted in the foreground, waiting for its dependents.
    WaitingForDependents,
}

/// The propagation a deletion asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the object, by the collector.
    Background,
    /// The object waits until its blocking dependents are gone.
    Foreground,
    /// Dependents are cut off and kept.
    Orphan,
}

impl Propagation {
    /// Upstream's name of it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "Background",
            Self::Foreground => "Foreground",
            Self::Orphan => "Orphan",
        }
    }
}

/// What to do with an object whose owners were looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It stays as it is.
    Keep,
    /// It stays, without its references to these owner uids.
    CutOff(Vec<String>),
    /// It is garbage: delete it with this propagation.
    Delete(Propagation),
}

/// Judges `node`, whose owners are in the states `owners` (same order as its references);
/// `has_dependents` says whether anything depends on it.
pub fn judge(node: &Node, owners: &[(OwnerReference, Owner)], has_dependents: bool) -> Verdict {
    if owners.is_empty() || (node.deleting && !node.deleting_dependents()) {
        return Verdict::Keep;
    }
    let uids = |state: Owner| -> Vec<String> {
        owners.iter().filter(|(_, s)| *s == state).map(|(o, _)| o.uid.clone()).collect()
    };
    let (solid, dangling, waiting) =
        (uids(Owner::Solid), uids(Owner::Absent), uids(Owner::WaitingForDependents));
    if !solid.is_empty() {
        // A live owner keeps it; references to gone or going owners are cut.
        let cut: Vec<String> = dangling.into_iter().chain(waiting).collect();
        return if cut.is_empty() { Verdict::Keep } else { Verdict::CutOff(cut) };
    }
    if !waiting.is_empty() && has_dependents {
        // Its owner waits for it; it in turn waits for its own dependents.
        return Verdict::Delete(Propagation::Foreground);
    }
    Verdict::Delete(if node.orphan {
        Propagation::Orphan
    } else if node.foreground {
        Propagation::Foreground
    } else {
        Propagation::Background
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garbage_collector::graph::Identity;

    fn node() -> Node {
        Node {
            identity: Identity {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: "ns".into(),
                name: "p".into(),
                uid: "p".into(),
            },
            resource_version: "1".into(),
            owners: vec![],
            deleting: false,
            orphan: false,
            foreground: false,
        }
    }

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference { uid: uid.into(), ..Default::default() }
    }

    #[test]
    fn an_object_whose_owners_are_all_gone_is_deleted_in_the_background() {
        let v = judge(&node(), &[(owner("a"), Owner::Absent), (owner("b"), Owner::Absent)], false);
        assert_eq!(v, Verdict::Delete(Propagation::Background));
    }

    #[test]
    fn a_live_owner_keeps_it_and_dead_references_are_cut() {
        assert_eq!(judge(&node(), &[(owner("a"), Owner::Solid)], false), Verdict::Keep);
        let v = judge(&node(), &[(owner("a"), Owner::Solid), (owner("b"), Owner::Absent)], false);
        assert_eq!(v, Verdict::CutOff(vec!["b".into()]));
    }

    #[test]
    fn a_foreground_owner_deletes_its_dependents_in_the_foreground_when_they_have_their_own() {
        let waiting = [(owner("a"), Owner::WaitingForDependents)];
        assert_eq!(judge(&node(), &waiting, true), Verdict::Delete(Propagation::Foreground));
        assert_eq!(judge(&node(), &waiting, false), Verdict::Delete(Propagation::Background));
    }

    #[test]
    fn an_object_already_being_deleted_is_left_to_finish() {
        let mut n = node();
        n.deleting = true;
        assert_eq!(judge(&n, &[(owner("a"), Owner::Absent)], false), Verdict::Keep);
        n.orphan = true;
        assert_eq!(judge(&n, &[(owner("a"), Owner::Absent)], false), Verdict::Keep);
    }

    #[test]
    fn an_object_without_owners_is_kept() {
        assert_eq!(judge(&node(), &[], true), Verdict::Keep);
    }
}
