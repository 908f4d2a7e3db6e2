//! The ownership graph (upstream's `GraphBuilder`): every object of every resource, by uid,
//! with its owners, and for every owner uid the dependents that name it, whether or not the
//! owner itself was seen. Fed by the monitors' events in one task; answers, for each change,
//! the work the collector's queues get. Memory: one small node per object (its identity,
//! owner references, resourceVersion and two flags), about 300 bytes.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer that makes the server wait until the garbage collector orphaned the
/// dependents (`propagationPolicy: Orphan`).
pub const ORPHAN: &str = "orphan";

/// The finalizer that makes the server wait until the blocking dependents are gone
/// (`propagationPolicy: Foreground`).
pub const FOREGROUND: &str = "foregroundDeletion";

/// Which object a node is: enough to read, patch or delete it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `group/version` or `v1`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// The namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// The uid.
    pub uid: String,
}

/// What the graph keeps of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Which object.
    pub identity: Identity,
    /// Its `resourceVersion` when last seen, which guards the collector's patches.
    pub resource_version: String,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// Whether its deletion began (`deletionTimestamp` set).
    pub deleting: bool,
    /// Whether it holds the `orphan` finalizer.
    pub orphan: bool,
    /// Whether it holds the `foregroundDeletion` finalizer.
    pub foreground: bool,
}

impl Node {
    /// Whether it is being deleted in the foreground: it waits for its blocking dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.foreground
    }
}

/// Work for the collector's queues, by uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// See whether an object's owners are gone, and delete it or cut them off.
    AttemptToDelete(String),
    /// Cut an object's dependents off it, then remove its `orphan` finalizer.
    Orphan(String),
    /// Delete an object's blocking dependents, or once none is left remove its
    /// `foregroundDeletion` finalizer.
    DeleteDependents(String),
}

/// Every object seen, and who depends on whom.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Dependents by owner uid, including owners never seen.
    dependents: HashMap<String, HashSet<String>>,
    /// Whether every monitor listed once: before that, a missing owner may just not be
    /// listed yet, so nothing is judged.
    synced: bool,
}

impl Graph {
    /// The node of `uid`.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The dependents of `uid` that are in the graph.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents.get(uid).into_iter().flatten().filter_map(|d| self.nodes.get(d)).collect()
    }

    /// The dependents of `uid` that block its foreground deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// How many objects the graph holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph holds nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Marks every monitor listed: from now on missing owners count. Answers the work the
    /// whole graph needs.
    pub fn synced(&mut self) -> Vec<Work> {
        self.synced = true;
        let uids: Vec<String> = self.nodes.keys().cloned().collect();
        let mut work = Vec::new();
        for uid in uids {
            if let Some(node) = self.nodes.get(&uid) {
                work.extend(self.work_for(node));
            }
        }
        work
    }

    /// An object was added or changed.
    pub fn observe(&mut self, node: Node) -> Vec<Work> {
        let uid = node.identity.uid.clone();
        let old = self.nodes.insert(uid.clone(), node);
        if let Some(old) = &old {
            for o in &old.owners {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(&uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
            }
        }
        let Some(node) = self.nodes.get(&uid) else { return Vec::new() };
        for o in &node.owners {
            self.dependents.entry(o.uid.clone()).or_default().insert(uid.clone());
        }
        let mut work = self.work_for(node);
        // An owner removed from a dependent that blocked its foreground deletion.
        if let Some(old) = old {
            for o in old.owners.iter().filter(|o| !node.owners.iter().any(|n| n.uid == o.uid)) {
                if self.nodes.get(&o.uid).is_some_and(Node::deleting_dependents) {
                    work.push(Work::DeleteDependents(o.uid.clone()));
                }
            }
        }
        if self.synced { work } else { Vec::new() }
    }

    /// An object is gone.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work = Vec::new();
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
            if self.nodes.get(&o.uid).is_some_and(Node::deleting_dependents) {
                work.push(Work::DeleteDependents(o.uid.clone()));
            }
        }
        // Its dependents may be garbage now.
        for d in self.dependents.get(uid).into_iter().flatten() {
            work.push(Work::AttemptToDelete(d.clone()));
        }
        if self.synced { work } else { Vec::new() }
    }

    /// Forgets the objects of one resource not in `seen` (a monitor re-listed).
    pub fn retain_listed(
        &mut self,
        api_version: &str,
        kind: &str,
        seen: &HashSet<String>,
    ) -> Vec<Work> {
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.identity.api_version == api_version && n.identity.kind == kind)
            .filter(|n| !seen.contains(&n.identity.uid))
            .map(|n| n.identity.uid.clone())
            .collect();
        gone.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// The work one object needs by itself.
    fn work_for(&self, node: &Node) -> Vec<Work> {
        let uid = &node.identity.uid;
        let mut work = Vec::new();
        if node.deleting && node.orphan {
            work.push(Work::Orphan(uid.clone()));
        }
        if node.deleting_dependents() {
            work.push(Work::DeleteDependents(uid.clone()));
        }
        let owner_in_doubt = node.owners.iter().any(|o| match self.nodes.get(&o.uid) {
            None => true,
            Some(owner) => owner.deleting_dependents(),
        });
        if owner_in_doubt {
            work.push(Work::AttemptToDelete(uid.clone()));
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
        Node {
            identity: Identity {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "ns".into(),
                name: format!("n-{uid}"),
                uid: uid.into(),
            },
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: format!("n-{o}"),
                    uid: (*o).into(),
                    block_owner_deletion: Some(*block),
                    controller: None,
                })
                .collect(),
            deleting: false,
            orphan: false,
            foreground: false,
        }
    }

    #[test]
    fn nothing_is_judged_before_every_monitor_listed() {
        let mut g = Graph::default();
        assert!(g.observe(node("child", &[("owner", false)])).is_empty());
        assert_eq!(g.synced(), [Work::AttemptToDelete("child".into())]);
    }

    #[test]
    fn an_owner_gone_puts_its_dependents_in_question() {
        let mut g = Graph::default();
        g.synced();
        assert!(g.observe(node("owner", &[])).is_empty());
        assert!(g.observe(node("child", &[("owner", false)])).is_empty());
        assert_eq!(g.dependents("owner").len(), 1);
        assert_eq!(g.remove("owner"), [Work::AttemptToDelete("child".into())]);
    }

    #[test]
    fn a_dependent_of_an_unseen_owner_is_in_question() {
        let mut g = Graph::default();
        g.synced();
        assert_eq!(
            g.observe(node("child", &[("ghost", false)])),
            [Work::AttemptToDelete("child".into())]
        );
    }

    #[test]
    fn orphan_and_foreground_deletions_get_their_work() {
        let mut g = Graph::default();
        g.synced();
        let mut owner = node("owner", &[]);
        g.observe(owner.clone());
        g.observe(node("child", &[("owner", true)]));
        owner.deleting = true;
        owner.orphan = true;
        assert_eq!(g.observe(owner.clone()), [Work::Orphan("owner".into())]);
        owner.orphan = false;
        owner.foreground = true;
        let work = g.observe(owner);
        assert_eq!(work, [Work::DeleteDependents("owner".into())]);
        assert_eq!(g.blocking_dependents("owner").len(), 1);
        // The blocking dependent going away wakes the owner to drop its finalizer.
        assert_eq!(g.remove("child"), [Work::DeleteDependents("owner".into())]);
        assert!(g.blocking_dependents("owner").is_empty());
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_shows() {
        let mut g = Graph::default();
        g.synced();
        g.observe(node("owner", &[]));
        g.observe(node("child", &[("owner", false)]));
        let seen = HashSet::from(["child".to_string()]);
        assert_eq!(
            g.retain_listed("v1", "ConfigMap", &seen),
            [Work::AttemptToDelete("child".into())]
        );
        assert_eq!(g.len(), 1);
    }
}
