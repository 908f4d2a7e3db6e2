//! The scheduling framework, in upstream's shape: plugins implement some of the extension
//! points (PreFilter, Filter, PreScore, Score with its normalization, then Reserve, Permit,
//! PreBind and Bind), a profile orders them, and one scheduling cycle runs them over a
//! snapshot of the cluster. A plugin's filter and score are plain functions of the pod, the
//! node and what its PreFilter or PreScore computed for the cycle, so each plugin is
//! table-tested without a server. Reserve and Permit run in the scheduling cycle, on the
//! chosen node; PreBind and Bind, which write to the API, run in the pod's binding cycle in the
//! background ([`BindFuture`]).

pub mod affinity;
pub mod cycle_state;
pub mod diagnosis;
pub mod labels;
pub mod node_info;
pub mod pod_index;
pub mod pod_info;
pub mod resources;
pub mod snapshot;
pub mod volumes;
pub mod waiting;

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

pub use cycle_state::CycleState;
pub use diagnosis::Diagnosis;
pub use node_info::NodeInfo;
pub use pod_info::{NodePod, PodInfo};
pub use snapshot::{Indexed, Snapshot};
pub use volumes::Volumes;
pub use waiting::{WaitEnd, WaitingPods};

/// The best score a plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// Whether a rejection could be lifted by preempting pods on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The node does not fit now; removing pods could make it fit.
    Unschedulable,
    /// The node cannot fit whatever is removed from it (a taint, a label).
    UnschedulableAndUnresolvable,
}

/// Why a plugin refused a node: data, worded by `Display` as upstream's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Not enough of a resource is free (`cpu`, `memory`, an extended resource).
    Insufficient(String),
    /// The node holds as many pods as it allows.
    TooManyPods,
    /// The node is cordoned.
    NodeUnschedulable,
    /// A taint the pod does not tolerate.
    UntoleratedTaint {
        /// The taint's key.
        key: String,
        /// The taint's value.
        value: String,
    },
    /// The node's labels do not match the pod's node selector or required node affinity.
    NodeAffinityMismatch,
    /// The pod asks for another node by name.
    NodeNameMismatch,
    /// A host port the pod asks for is taken.
    PortsInUse,
    /// No existing pod matches a required pod affinity term in the node's topology domain.
    PodAffinityMismatch,
    /// A pod in the node's topology domain matches a required anti-affinity term of the pod.
    PodAntiAffinityMismatch,
    /// The pod matches a required anti-affinity term of a pod in the node's topology domain.
    ExistingPodsAntiAffinityMismatch,
    /// Placing the pod here would break a topology spread constraint.
    TopologySpreadMismatch,
    /// The node lacks a label a topology spread constraint spreads over.
    TopologySpreadMissingLabel,
    /// The node was not considered because a PreFilter narrowed the nodes.
    NotInPreFilterResult(&'static str),
    /// A claim the pod uses does not exist.
    ClaimNotFound(String),
    /// A claim the pod uses is being deleted.
    ClaimBeingDeleted(String),
    /// A claim the pod uses is unbound, and its class binds immediately (not by the
    /// scheduler).
    UnboundImmediateClaims,
    /// A volume bound to a claim of the pod does not admit the node.
    VolumeNodeAffinityConflict,
    /// No available volume on the node for a claim that waits for its first consumer.
    NoVolumeToBind,
    /// A claim of the pod is bound to a volume that does not exist.
    BoundToMissingVolume,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::NodeUnschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinityMismatch => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NodeNameMismatch => f.write_str("node(s) didn't match the requested node name"),
            Reason::PortsInUse => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::PodAffinityMismatch => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinityMismatch => {
                f.write_str("node(s) didn't match pod anti-affinity rules")
            }
            Reason::ExistingPodsAntiAffinityMismatch => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Reason::TopologySpreadMismatch => {
                f.write_str("node(s) didn't match pod topology spread constraints")
            }
            Reason::TopologySpreadMissingLabel => f.write_str(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            Reason::NotInPreFilterResult(plugin) => {
                write!(f, "node(s) didn't satisfy plugin(s) [{plugin}]")
            }
            Reason::ClaimNotFound(name) => write!(f, "persistentvolumeclaim {name:?} not found"),
            Reason::ClaimBeingDeleted(name) => {
                write!(f, "persistentvolumeclaim {name:?} is being deleted")
            }
            Reason::UnboundImmediateClaims => {
                f.write_str("pod has unbound immediate PersistentVolumeClaims")
            }
            Reason::VolumeNodeAffinityConflict => {
                f.write_str("node(s) had volume node affinity conflict")
            }
            Reason::NoVolumeToBind => {
                f.write_str("node(s) didn't find available persistent volumes to bind")
            }
            Reason::BoundToMissingVolume => f.write_str(
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
            ),
        }
    }
}

/// A plugin's refusal of a node (or, from PreFilter, of every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The plugin that refused.
    pub plugin: &'static str,
    /// Whether preemption could help.
    pub code: Code,
    /// Why, one or more.
    pub reasons: Vec<Reason>,
}

impl Rejection {
    /// A refusal that preemption could lift.
    pub fn unschedulable(plugin: &'static str, reasons: Vec<Reason>) -> Self {
        Self { plugin, code: Code::Unschedulable, reasons }
    }

    /// A refusal that no preemption can lift.
    pub fn unresolvable(plugin: &'static str, reason: Reason) -> Self {
        Self { plugin, code: Code::UnschedulableAndUnresolvable, reasons: vec![reason] }
    }
}

/// The extension points a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Points(u8);

impl Points {
    /// Runs once per cycle before filtering; may refuse the pod outright.
    pub const PRE_FILTER: Points = Points(1);
    /// Refuses nodes.
    pub const FILTER: Points = Points(2);
    /// Runs once per cycle before scoring.
    pub const PRE_SCORE: Points = Points(4);
    /// Scores nodes.
    pub const SCORE: Points = Points(8);
    /// Sets aside what the pod needs on the chosen node (and gives it back on failure).
    pub const RESERVE: Points = Points(16);
    /// Allows, rejects or holds the pod before it is bound.
    pub const PERMIT: Points = Points(32);
    /// Writes what must exist before the pod is bound (a volume bound to its claim).
    pub const PRE_BIND: Points = Points(64);
    /// Binds the pod to the node.
    pub const BIND: Points = Points(128);

    /// Whether every point of `other` is in `self`.
    pub fn contains(self, other: Points) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Points {
    type Output = Points;
    fn bitor(self, other: Points) -> Points {
        Points(self.0 | other.0)
    }
}

/// A change in the cluster that can make a pod that did not fit fit now. Each plugin names the
/// ones that can lift its refusals, and the queue moves a refused pod back when one happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    /// A node was added.
    NodeAdd,
    /// A node's labels changed.
    NodeLabel,
    /// A node's taints or `spec.unschedulable` changed.
    NodeTaint,
    /// A node's allocatable resources changed.
    NodeAllocatable,
    /// A node's conditions or other status changed.
    NodeOther,
    /// A node was deleted.
    NodeDelete,
    /// A pod was bound to a node.
    AssignedPodAdd,
    /// A bound pod changed (its labels, its requests).
    AssignedPodUpdate,
    /// A bound pod went away (deleted or finished), freeing what it held.
    AssignedPodDelete,
    /// A PersistentVolume, PersistentVolumeClaim or StorageClass was added or changed.
    VolumeChange,
}

/// What a cluster change touched, as a plugin's queueing hint sees it.
#[derive(Debug, Clone, Copy)]
pub enum Involved<'a> {
    /// A node added or changed, as it now is, with its pods.
    Node(&'a NodeInfo),
    /// A pod on a node: as it now is when added or changed, as it was when gone.
    Pod(&'a NodePod),
    /// Not known (a re-list, a binding that failed).
    Unknown,
}

/// A Permit plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permit {
    /// The pod may be bound.
    Allow,
    /// The pod waits (at most this long) until the plugin allows it through
    /// [`WaitingPods::allow`].
    Wait(Duration),
    /// The pod is not bound; the message says why.
    Reject(String),
}

/// How a Bind plugin answered.
#[derive(Debug)]
pub enum Bound {
    /// It bound the pod.
    Done,
    /// It does not bind this pod; the next Bind plugin does.
    Skip,
    /// Binding failed.
    Failed(BindError),
}

/// Why a PreBind or Bind step failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The pod is gone: it is not tried again.
    #[error("the pod is gone")]
    PodGone,
    /// The API refused or could not be reached.
    #[error("{0}")]
    Api(String),
}

/// The future of a PreBind or Bind step.
pub type BindFuture<'a, T> = BoxFuture<'a, T>;

/// A scheduling plugin. Each method has a default that does nothing; a profile calls only the
/// points a plugin declares in [`Plugin::points`].
pub trait Plugin: Send + Sync {
    /// The plugin's name, as in a `KubeSchedulerConfiguration`.
    fn name(&self) -> &'static str;

    /// The extension points it implements.
    fn points(&self) -> Points;

    /// The cluster changes that can lift this plugin's refusals.
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }

    /// The queueing hint: whether `event`, which touched `involved`, may make `pod` (which this
    /// plugin refused) fit, so that it is worth trying again. Called only for the events the
    /// plugin lists; `true` unless the plugin can tell that the change does not help.
    fn hint(&self, _pod: &PodInfo, _event: ClusterEvent, _involved: Involved<'_>) -> bool {
        true
    }

    /// Computes what the filter reads for this pod, once per cycle, or refuses the pod on
    /// every node.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _snapshot: &Snapshot<'_>,
    ) -> Result<(), Rejection> {
        Ok(())
    }

    /// Refuses a node, or lets it through.
    fn filter(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _node: &NodeInfo,
    ) -> Result<(), Rejection> {
        Ok(())
    }

    /// Computes what the score reads, once per cycle, over the nodes that passed the filters.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot<'_>,
    ) {
    }

    /// A node's raw score.
    fn score(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        0
    }

    /// Brings the raw scores of every feasible node into `0..=MAX_NODE_SCORE`.
    fn normalize(&self, _scores: &mut [i64]) {}

    /// Sets aside on `node` what the pod needs, before it is bound; a refusal fails the
    /// cycle, and every Reserve plugin's [`unreserve`](Self::unreserve) runs.
    fn reserve(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &str) -> Result<(), String> {
        Ok(())
    }

    /// Gives back what [`reserve`](Self::reserve) set aside: the pod was not bound. It must
    /// be idempotent, and it may run after a failed `reserve` of this plugin.
    fn unreserve(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &str) {}

    /// Whether the pod may be bound to `node` now. `waiting` holds the pods other Permit
    /// calls made wait, for this plugin to allow or reject.
    fn permit(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _node: &str,
        _waiting: &WaitingPods,
    ) -> Permit {
        Permit::Allow
    }

    /// Writes what must exist before the pod is bound to `node`.
    fn pre_bind<'a>(
        &'a self,
        _client: &'a kube::Client,
        _state: &'a CycleState,
        _pod: &'a PodInfo,
        _node: &'a str,
    ) -> BindFuture<'a, Result<(), BindError>> {
        Box::pin(async { Ok(()) })
    }

    /// Binds the pod to `node`, or leaves it to the next Bind plugin.
    fn bind<'a>(
        &'a self,
        _client: &'a kube::Client,
        _state: &'a CycleState,
        _pod: &'a PodInfo,
        _node: &'a str,
    ) -> BindFuture<'a, Bound> {
        Box::pin(async { Bound::Skip })
    }
}

/// Upstream's `DefaultNormalizeScore`: scales scores so that the highest is
/// [`MAX_NODE_SCORE`]; `reverse` makes the lowest raw score the best.
pub fn normalize_scores(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores {
        *score = MAX_NODE_SCORE * *score / max;
        if reverse {
            *score = MAX_NODE_SCORE - *score;
        }
    }
}
