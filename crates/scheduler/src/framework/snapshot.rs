//! The cluster as one scheduling cycle sees it: every node with its pods, borrowed from the
//! scheduler's cache (which does not change during a cycle), and how widely each image is
//! spread.

use std::collections::HashMap;

use super::NodeInfo;

/// An image's size and how many nodes hold it (what image locality scores by).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageSpread {
    /// Its size in bytes.
    pub size: i64,
    /// How many nodes report it.
    pub nodes: usize,
}

/// One cycle's view of the cluster.
pub struct Snapshot<'a> {
    /// Every node whose Node object is known, in a stable order.
    pub nodes: Vec<&'a NodeInfo>,
    /// Images by name.
    pub images: &'a HashMap<String, ImageSpread>,
}

impl<'a> Snapshot<'a> {
    /// The nodes that hold at least one pod with pod affinity or anti-affinity terms.
    pub fn nodes_with_affinity_pods(&self) -> impl Iterator<Item = &'a NodeInfo> + '_ {
        self.nodes.iter().copied().filter(|n| n.pods_with_affinity > 0)
    }
}
