//! The scheduler at work: node and pod watches feed the cache and the queue; one loop pops a
//! pod, runs a cycle over the cache, assumes the pod on the chosen node and binds it through
//! `pods/binding` in the background, so the next cycle starts at once and already sees it.
//! A pod no node fits gets upstream's `FailedScheduling` event and `PodScheduled=False`
//! condition, and waits in the queue for a cluster change that could make it fit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition,
    ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use krust_client::{Events, Trimmed, untrimmed};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{Semaphore, mpsc};

use crate::binding::{self, Permitted};
use crate::cache::Cache;
use crate::cycle::{self, Placement, Random};
use crate::framework::affinity::Labels;
use crate::framework::{
    ClusterEvent, CycleState, Involved, NodePod, Plugin, PodInfo, Volumes, WaitingPods,
};
use crate::preemption::{self, Budget, Preemption};
use crate::profile::{DEFAULT_SCHEDULER, Profile};
use crate::queue::Queue;
use crate::workloads::{self, Entry, Kind, Workloads};

/// Bindings sent at once; more wait for a slot (each in flight holds a connection).
const BINDINGS_IN_FLIGHT: usize = 32;

/// How often parked pods are checked for the five-minute limit and back-offs.
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// What the watches report.
enum Input {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
    Budget(Box<watcher::Event<PodDisruptionBudget>>),
    Namespace(Box<watcher::Event<Namespace>>),
    Workload(Kind, Box<watcher::Event<workloads::Entry>>),
    Claim(Box<watcher::Event<PersistentVolumeClaim>>),
    Volume(Box<watcher::Event<PersistentVolume>>),
    Class(Box<watcher::Event<StorageClass>>),
}

/// How a binding cycle ended.
enum Outcome {
    Bound { uid: String },
    Failed(Box<Undo>),
}

/// A binding cycle that failed, with what its Unreserve needs.
struct Undo {
    failure: binding::Failure,
    scheduler: String,
    pod: PodInfo,
    node: String,
    state: CycleState,
}

/// One scheduler's state while it leads.
pub struct Scheduler {
    client: Client,
    profiles: Vec<Profile>,
    events: HashMap<String, Events>,
    /// Every profile's plugins by name, for their events and queueing hints.
    plugins: HashMap<&'static str, Arc<dyn Plugin>>,
    cache: Cache,
    queue: Queue,
    next_start: usize,
    random: Random,
    nodes_synced: bool,
    pods_synced: bool,
    node_relist: Option<HashSet<String>>,
    pod_relist: Option<HashSet<String>>,
    /// PodDisruptionBudgets by `namespace/name`, for preemption.
    budgets: HashMap<String, Budget>,
    budget_relist: Option<HashMap<String, Budget>>,
    /// Namespaces' labels gathered by a relist, until it is done.
    namespace_relist: Option<HashMap<String, Labels>>,
    /// The selectors of services and controllers, for default topology spreading.
    workloads: Workloads,
    outcomes: (mpsc::UnboundedSender<Outcome>, mpsc::UnboundedReceiver<Outcome>),
    /// Slots for bindings in flight.
    binding_slots: Arc<Semaphore>,
    /// Pods held by Permit plugins.
    waiting: WaitingPods,
    /// Claims, volumes and classes gathered by a relist of their kind, until it is done.
    volume_relist: Volumes,
}

impl Scheduler {
    /// A scheduler for `profiles`, acting through `client`.
    pub fn new(client: Client, profiles: Vec<Profile>) -> Self {
        let events = profiles
            .iter()
            .map(|p| (p.scheduler_name.clone(), Events::new(client.clone(), &p.scheduler_name)))
            .collect();
        let mut plugins: HashMap<&'static str, Arc<dyn Plugin>> = HashMap::new();
        for profile in &profiles {
            for plugin in profile.plugins() {
                plugins.entry(plugin.name()).or_insert_with(|| plugin.clone());
            }
        }
        let seed = Timestamp::now().as_nanosecond() as u64;
        Self {
            client,
            profiles,
            events,
            plugins,
            cache: Cache::default(),
            queue: Queue::default(),
            next_start: 0,
            random: Random::new(seed),
            nodes_synced: false,
            pods_synced: false,
            node_relist: None,
            pod_relist: None,
            budgets: HashMap::new(),
            budget_relist: None,
            namespace_relist: None,
            workloads: Workloads::default(),
            outcomes: mpsc::unbounded_channel(),
            binding_slots: Arc::new(Semaphore::new(BINDINGS_IN_FLIGHT)),
            waiting: WaitingPods::default(),
            volume_relist: Volumes::default(),
        }
    }

    /// Schedules until dropped.
    pub async fn run(mut self) {
        let (sender, mut inputs) = mpsc::channel::<Input>(1024);
        let mut watches = tokio::task::JoinSet::new();
        // Nodes and pods, the most and largest objects watched, are decoded without their
        // managedFields, which nothing here reads.
        let nodes: Api<Trimmed<Node>> = Api::all(self.client.clone());
        let pods: Api<Trimmed<Pod>> = Api::all(self.client.clone());
        watches
            .spawn(forward(watch(nodes), sender.clone(), |e| Input::Node(Box::new(untrimmed(e)))));
        watches.spawn(forward(watch(pods), sender.clone(), |e| Input::Pod(Box::new(untrimmed(e)))));
        let budgets: Api<PodDisruptionBudget> = Api::all(self.client.clone());
        watches.spawn(forward(watch(budgets), sender.clone(), |e| Input::Budget(Box::new(e))));
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        watches
            .spawn(forward(watch(namespaces), sender.clone(), |e| Input::Namespace(Box::new(e))));
        let services: Api<Service> = Api::all(self.client.clone());
        watches.spawn(forward(watch(services), sender.clone(), |e| {
            Input::Workload(Kind::Service, Box::new(workloads::event(e, Entry::of_service)))
        }));
        let controllers: Api<ReplicationController> = Api::all(self.client.clone());
        watches.spawn(forward(watch(controllers), sender.clone(), |e| {
            let e = workloads::event(e, Entry::of_replication_controller);
            Input::Workload(Kind::ReplicationController, Box::new(e))
        }));
        let sets: Api<ReplicaSet> = Api::all(self.client.clone());
        watches.spawn(forward(watch(sets), sender.clone(), |e| {
            Input::Workload(Kind::ReplicaSet, Box::new(workloads::event(e, Entry::of_replica_set)))
        }));
        let claims: Api<PersistentVolumeClaim> = Api::all(self.client.clone());
        watches.spawn(forward(watch(claims), sender.clone(), |e| Input::Claim(Box::new(e))));
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        watches.spawn(forward(watch(volumes), sender.clone(), |e| Input::Volume(Box::new(e))));
        let classes: Api<StorageClass> = Api::all(self.client.clone());
        watches.spawn(forward(watch(classes), sender.clone(), |e| Input::Class(Box::new(e))));
        let stateful: Api<StatefulSet> = Api::all(self.client.clone());
        watches.spawn(forward(watch(stateful), sender, |e| {
            let e = workloads::event(e, Entry::of_stateful_set);
            Input::Workload(Kind::StatefulSet, Box::new(e))
        }));
        let mut flush = tokio::time::interval(FLUSH_PERIOD);
        loop {
            while let Ok(input) = inputs.try_recv() {
                self.on_input(input);
            }
            while let Ok(outcome) = self.outcomes.1.try_recv() {
                self.on_outcome(outcome);
            }
            if self.nodes_synced
                && self.pods_synced
                && self.workloads.synced()
                && let Some(pod) = self.queue.pop(Instant::now())
            {
                self.schedule_one(pod);
                tokio::task::consume_budget().await;
                continue;
            }
            let wake = self.queue.next_backoff().unwrap_or_else(|| Instant::now() + FLUSH_PERIOD);
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => return,
                },
                Some(outcome) = self.outcomes.1.recv() => self.on_outcome(outcome),
                () = tokio::time::sleep_until(wake.into()) => {}
                _ = flush.tick() => self.queue.flush(Instant::now()),
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Node(event) => self.on_node(*event),
            Input::Pod(event) => self.on_pod(*event),
            Input::Budget(event) => self.on_budget(*event),
            Input::Namespace(event) => self.on_namespace(*event),
            Input::Workload(kind, event) => self.workloads.apply(kind, *event),
            Input::Claim(event) => self.on_volumes(
                *event,
                |v| &mut v.claims,
                |v, c| v.set_claim(c),
                Volumes::remove_claim,
            ),
            Input::Volume(event) => self.on_volumes(
                *event,
                |v| &mut v.volumes,
                |v, pv| v.set_volume(pv),
                Volumes::remove_volume,
            ),
            Input::Class(event) => self.on_volumes(
                *event,
                |v| &mut v.classes,
                |v, c| v.set_class(c),
                Volumes::remove_class,
            ),
        }
    }

    /// Keeps claims, volumes and classes for VolumeBinding (`part` is the kind's map in
    /// [`Volumes`]); a change may let a pod that waits for one fit.
    fn on_volumes<K, M: Default>(
        &mut self,
        event: watcher::Event<K>,
        part: fn(&mut Volumes) -> &mut M,
        set: fn(&mut Volumes, K),
        remove: fn(&mut Volumes, &K),
    ) {
        match event {
            watcher::Event::Init => *part(&mut self.volume_relist) = M::default(),
            watcher::Event::InitApply(object) => set(&mut self.volume_relist, object),
            watcher::Event::InitDone => {
                *part(&mut self.cache.volumes) = std::mem::take(part(&mut self.volume_relist));
                self.moved(ClusterEvent::VolumeChange);
            }
            watcher::Event::Apply(object) => {
                set(&mut self.cache.volumes, object);
                self.moved(ClusterEvent::VolumeChange);
            }
            watcher::Event::Delete(object) => remove(&mut self.cache.volumes, &object),
        }
    }

    fn on_budget(&mut self, event: watcher::Event<PodDisruptionBudget>) {
        let key = |pdb: &PodDisruptionBudget| {
            format!(
                "{}/{}",
                pdb.metadata.namespace.as_deref().unwrap_or_default(),
                pdb.metadata.name.as_deref().unwrap_or_default()
            )
        };
        match event {
            watcher::Event::Init => self.budget_relist = Some(HashMap::new()),
            watcher::Event::InitApply(pdb) => {
                if let (Some(next), Some(budget)) = (&mut self.budget_relist, Budget::of(&pdb)) {
                    next.insert(key(&pdb), budget);
                }
            }
            watcher::Event::InitDone => {
                self.budgets = self.budget_relist.take().unwrap_or_default();
            }
            watcher::Event::Apply(pdb) => match Budget::of(&pdb) {
                Some(budget) => {
                    self.budgets.insert(key(&pdb), budget);
                }
                None => {
                    self.budgets.remove(&key(&pdb));
                }
            },
            watcher::Event::Delete(pdb) => {
                self.budgets.remove(&key(&pdb));
            }
        }
    }

    /// Keeps each namespace's labels, for affinity terms' `namespaceSelector`.
    fn on_namespace(&mut self, event: watcher::Event<Namespace>) {
        let entry = |ns: Namespace| {
            (ns.metadata.name.unwrap_or_default(), ns.metadata.labels.unwrap_or_default())
        };
        match event {
            watcher::Event::Init => self.namespace_relist = Some(HashMap::new()),
            watcher::Event::InitApply(ns) => {
                if let Some(next) = &mut self.namespace_relist {
                    next.extend([entry(ns)]);
                }
            }
            watcher::Event::InitDone => {
                self.cache.set_namespaces(self.namespace_relist.take().unwrap_or_default());
            }
            watcher::Event::Apply(ns) => {
                let (name, labels) = entry(ns);
                self.cache.set_namespace(&name, labels);
            }
            watcher::Event::Delete(ns) => {
                self.cache.remove_namespace(ns.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    fn on_node(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init => self.node_relist = Some(HashSet::new()),
            watcher::Event::InitApply(node) => {
                if let (Some(seen), Some(name)) = (&mut self.node_relist, &node.metadata.name) {
                    seen.insert(name.clone());
                }
                self.node_changed(node);
            }
            watcher::Event::InitDone => {
                let seen = self.node_relist.take().unwrap_or_default();
                let gone: Vec<String> =
                    self.cache.node_names().filter(|n| !seen.contains(*n)).cloned().collect();
                for name in gone {
                    self.cache.remove_node(&name);
                }
                self.nodes_synced = true;
            }
            watcher::Event::Apply(node) => self.node_changed(node),
            watcher::Event::Delete(node) => {
                self.cache.remove_node(node.metadata.name.as_deref().unwrap_or_default());
                self.moved(ClusterEvent::NodeDelete);
            }
        }
    }

    fn node_changed(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let events = self.cache.set_node(node);
        let Some(info) = self.cache.node(&name) else { return };
        for event in events {
            wake(&mut self.queue, &self.plugins, event, Involved::Node(info));
        }
    }

    fn on_pod(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.pod_relist = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (&mut self.pod_relist, &pod.metadata.uid) {
                    seen.insert(uid.clone());
                }
                self.pod_changed(pod);
            }
            watcher::Event::InitDone => {
                let seen = self.pod_relist.take().unwrap_or_default();
                for uid in self.cache.nominated_uids() {
                    if !seen.contains(&uid) {
                        self.cache.nominate(&uid, None);
                    }
                }
                for uid in self.cache.pod_uids() {
                    if !seen.contains(&uid)
                        && let Some(gone) = self.cache.remove_pod(&uid)
                    {
                        self.pod_moved(ClusterEvent::AssignedPodDelete, &gone);
                    }
                }
                self.pods_synced = true;
            }
            watcher::Event::Apply(pod) => self.pod_changed(pod),
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.queue.remove(&uid);
                self.cache.nominate(&uid, None);
                if let Some(gone) = self.cache.remove_pod(&uid) {
                    self.pod_moved(ClusterEvent::AssignedPodDelete, &gone);
                }
            }
        }
    }

    fn pod_changed(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let bound =
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty() && !bound && !finished)
            .filter(|_| pod.metadata.deletion_timestamp.is_none());
        self.cache.nominate(&uid, nominated.map(|node| (node, &pod)));
        if bound {
            self.queue.remove(&uid);
            if finished {
                if let Some(gone) = self.cache.remove_pod(&uid) {
                    self.pod_moved(ClusterEvent::AssignedPodDelete, &gone);
                }
            } else if let Some((event, view)) = self.cache.add_pod(&pod) {
                self.pod_moved(event, &view);
            }
            return;
        }
        if finished || pod.metadata.deletion_timestamp.is_some() || !self.responsible(&pod) {
            self.queue.remove(&uid);
            return;
        }
        // A pod in flight or being bound keeps its place; its new version is kept.
        self.queue.upsert(Arc::new(pod), Instant::now());
    }

    /// Whether one of this scheduler's profiles schedules `pod`.
    fn responsible(&self, pod: &Pod) -> bool {
        let name = scheduler_name(pod);
        self.profiles.iter().any(|p| p.scheduler_name == name)
    }

    /// Moves the parked pods that `event`, of which nothing more is known, may help.
    fn moved(&mut self, event: ClusterEvent) {
        wake(&mut self.queue, &self.plugins, event, Involved::Unknown);
    }

    /// Moves the parked pods that `event`, which touched the placed pod `pod`, may help.
    fn pod_moved(&mut self, event: ClusterEvent, pod: &NodePod) {
        wake(&mut self.queue, &self.plugins, event, Involved::Pod(pod));
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Bound { uid } => self.queue.bound(&uid),
            Outcome::Failed(undo) => {
                let Undo { failure, scheduler, pod, node, mut state } = *undo;
                self.binding_failed(&scheduler, &pod, &node, &mut state, failure);
            }
        }
    }

    /// Undoes a pod's Reserve and assumption after its Reserve, Permit or binding cycle
    /// failed, and puts it back in the queue: to wait for a cluster change when a plugin
    /// refused it, after a back-off when something failed, not at all when it is gone.
    fn binding_failed(
        &mut self,
        scheduler: &str,
        pod: &PodInfo,
        node: &str,
        state: &mut CycleState,
        failure: binding::Failure,
    ) {
        let uid = pod.pod.metadata.uid.clone().unwrap_or_default();
        if let Some(profile) = self.profiles.iter().find(|p| p.scheduler_name == scheduler) {
            binding::unreserve(&profile.reserve, state, pod, node);
        }
        self.cache.forget(&uid);
        if failure.gone {
            self.queue.remove(&uid);
        } else {
            tracing::info!(pod = pod.key(), node, message = failure.message, "not bound");
            if failure.unschedulable {
                self.queue.unschedulable(&uid, [failure.plugin].into(), Instant::now());
                self.record_unschedulable(pod, scheduler, failure.message);
            } else {
                self.queue.failed(&uid, Instant::now());
                if let Some(events) = self.events.get(scheduler) {
                    let reference = reference(&pod.pod);
                    events.warning(reference, "FailedScheduling", "Scheduling", failure.message);
                }
            }
        }
        // What it held is free again.
        self.moved(ClusterEvent::AssignedPodDelete);
    }

    fn schedule_one(&mut self, mut pod: PodInfo) {
        let uid = pod.pod.metadata.uid.clone().unwrap_or_default();
        let name = scheduler_name(&pod.pod);
        let Some(profile) = self.profiles.iter().find(|p| p.scheduler_name == name) else {
            self.queue.remove(&uid);
            return;
        };
        pod.default_spread = self.workloads.default_selector(&pod.pod);
        let snapshot = self.cache.snapshot();
        let nodes = snapshot.nodes.len();
        match cycle::schedule(profile, &pod, &snapshot, self.next_start, &mut self.random) {
            Ok(Placement { node, evaluated, mut state, .. }) => {
                self.next_start = (self.next_start + evaluated) % nodes.max(1);
                self.cache.assume(&pod, &node);
                let permitted = binding::reserve(&profile.reserve, &mut state, &pod, &node)
                    .and_then(|()| {
                        binding::permit(&profile.permit, &self.waiting, &state, &pod, &node)
                    });
                match permitted {
                    Ok(permitted) => self.bind(pod, node, name, state, permitted),
                    Err(failure) => {
                        self.binding_failed(&name, &pod, &node, &mut state, failure);
                    }
                }
            }
            Err(mut diagnosis) => {
                let mut preemption = None;
                if profile.preemption && nodes > 0 {
                    let budgets: Vec<Budget> = self.budgets.values().cloned().collect();
                    match preemption::preempt(profile, &pod, &snapshot, &diagnosis, &budgets) {
                        Ok(found) => preemption = Some(found),
                        Err(message) => diagnosis.post_filter = Some(message),
                    }
                }
                let message = diagnosis.message();
                tracing::debug!(pod = pod.key(), message, "unschedulable");
                self.queue.unschedulable(&uid, diagnosis.plugins(), Instant::now());
                self.record_unschedulable(&pod, &name, message);
                if let Some(preemption) = preemption {
                    self.preempt(&pod, preemption, &name);
                }
            }
        }
    }

    /// Nominates the node for `pod` and deletes the victims; the pod is tried again once
    /// they are gone.
    fn preempt(&self, pod: &PodInfo, preemption: Preemption, scheduler: &str) {
        let client = self.client.clone();
        let events = self.events.get(scheduler).cloned();
        let preemptor = pod.key();
        let namespace = pod.namespace().to_string();
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let scheduler = scheduler.to_string();
        tracing::info!(
            pod = preemptor,
            node = preemption.node,
            victims = preemption.victims.len(),
            "preempting"
        );
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let nominate = serde_json::json!({"status": {"nominatedNodeName": preemption.node}});
            if let Err(e) =
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(nominate)).await
            {
                tracing::debug!(pod = preemptor, error = %e, "cannot nominate a node");
            }
            for victim in preemption.victims {
                let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
                let condition = PodCondition {
                    type_: "DisruptionTarget".to_string(),
                    status: "True".to_string(),
                    reason: Some("PreemptionByScheduler".to_string()),
                    message: Some(format!(
                        "{scheduler}: preempting to accommodate a higher priority pod"
                    )),
                    last_transition_time: Some(Time(Timestamp::now())),
                    ..PodCondition::default()
                };
                let patch = serde_json::json!({"status": {"conditions": [condition]}});
                let _ = api
                    .patch_status(&victim.name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await;
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(victim.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&victim.name, &params).await {
                    Ok(_) => {
                        if let Some(events) = &events {
                            let reference = ObjectReference {
                                api_version: Some("v1".to_string()),
                                kind: Some("Pod".to_string()),
                                name: Some(victim.name.clone()),
                                namespace: Some(victim.namespace.clone()),
                                uid: Some(victim.uid.clone()),
                                ..ObjectReference::default()
                            };
                            events.normal(
                                reference,
                                "Preempted",
                                "Preempting",
                                format!("Preempted by {preemptor} on node {}", preemption.node),
                            );
                        }
                    }
                    Err(e) => tracing::debug!(victim = victim.name, error = %e, "cannot preempt"),
                }
            }
        });
    }

    /// Runs `pod`'s binding cycle on `node` in the background (Permit's hold, PreBind, Bind);
    /// the outcome comes back to the loop.
    fn bind(
        &self,
        pod: PodInfo,
        node: String,
        scheduler: String,
        state: CycleState,
        permitted: Permitted,
    ) {
        let Some(profile) = self.profiles.iter().find(|p| p.scheduler_name == scheduler) else {
            return;
        };
        let (pre_bind, binders) = (profile.pre_bind.clone(), profile.bind.clone());
        let client = self.client.clone();
        let waiting = self.waiting.clone();
        let events = self.events.get(&scheduler).cloned();
        let outcomes = self.outcomes.0.clone();
        let slots = self.binding_slots.clone();
        tokio::spawn(async move {
            let result = match binding::wait(&waiting, permitted, &pod).await {
                Ok(()) => {
                    // A pod that Permit holds takes no slot while it waits.
                    let _slot = slots.acquire_owned().await;
                    binding::bind(&client, &pre_bind, &binders, &state, &pod, &node).await
                }
                Err(failure) => Err(failure),
            };
            let uid = pod.pod.metadata.uid.clone().unwrap_or_default();
            let outcome = match result {
                Ok(_) => {
                    if let Some(events) = &events {
                        let namespace = pod.namespace();
                        let name = pod.pod.metadata.name.as_deref().unwrap_or_default();
                        events.normal(
                            reference(&pod.pod),
                            "Scheduled",
                            "Binding",
                            format!("Successfully assigned {namespace}/{name} to {node}"),
                        );
                    }
                    Outcome::Bound { uid }
                }
                Err(failure) => {
                    Outcome::Failed(Box::new(Undo { failure, scheduler, pod, node, state }))
                }
            };
            let _ = outcomes.send(outcome);
        });
    }

    /// The `FailedScheduling` event, and `PodScheduled=False` with the same message unless
    /// the pod says so already.
    fn record_unschedulable(&self, pod: &PodInfo, scheduler: &str, message: String) {
        if let Some(events) = self.events.get(scheduler) {
            events.warning(reference(&pod.pod), "FailedScheduling", "Scheduling", message.clone());
        }
        let current = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let unchanged = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message.as_str())
        });
        if unchanged {
            return;
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or_else(|| Time(Timestamp::now()));
        let condition = PodCondition {
            type_: "PodScheduled".to_string(),
            status: "False".to_string(),
            reason: Some("Unschedulable".to_string()),
            message: Some(message),
            last_transition_time: Some(transition),
            ..PodCondition::default()
        };
        let patch = serde_json::json!({"status": {"conditions": [condition]}});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.namespace());
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) =
                api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await
            {
                tracing::debug!(pod = name, error = %e, "cannot write PodScheduled");
            }
        });
    }
}

/// A pod's `spec.schedulerName`, the default when absent.
fn scheduler_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_SCHEDULER.to_string())
}

/// The reference an event about `pod` carries.
fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Moves the parked pods that `event` may help: those refused by a plugin that listens for
/// it and whose queueing hint says so.
fn wake(
    queue: &mut Queue,
    plugins: &HashMap<&'static str, Arc<dyn Plugin>>,
    event: ClusterEvent,
    involved: Involved<'_>,
) {
    let helps = |name: &'static str, pod: &PodInfo| {
        plugins
            .get(name)
            .is_some_and(|p| p.events().contains(&event) && p.hint(pod, event, involved))
    };
    queue.on_event(&helps, Instant::now());
}

/// A watch of every object of a kind, re-listing with back-off after errors.
fn watch<K>(api: Api<K>) -> impl Stream<Item = watcher::Event<K>> + Send
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let kind = K::kind(&()).to_string();
    watcher(api, watcher::Config::default()).default_backoff().filter_map(move |event| {
        let kind = kind.clone();
        async move {
            match event {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; re-listing");
                    None
                }
            }
        }
    })
}

/// Hands every event of `stream` to the loop.
async fn forward<K>(
    stream: impl Stream<Item = watcher::Event<K>> + Send,
    sender: mpsc::Sender<Input>,
    wrap: fn(watcher::Event<K>) -> Input,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        if sender.send(wrap(event)).await.is_err() {
            return;
        }
    }
}
