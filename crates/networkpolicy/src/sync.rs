//! The watches and the programming loop: NetworkPolicies, pods and namespaces kept as the
//! plan's views; once all three first lists are in, every burst of events that changes the
//! node's ruleset replaces the table in one transaction. A refused transaction is tried again
//! after a pause.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use krust_client::{Trimmed, untrimmed};
use krust_nftables::{Family, Netlink};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::Error;
use crate::plan::{self, Cluster, Key, Ruleset};
use crate::program;

/// How long a refused transaction waits before it is tried again.
const RETRY: Duration = Duration::from_secs(2);

enum Change {
    Policy(Box<Event<NetworkPolicy>>),
    Pod(Box<Event<Pod>>),
    Namespace(Box<Event<Namespace>>),
}

fn key_of(meta: &ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// One kind's first list: which keys it has seen, and whether it is done.
#[derive(Default)]
struct Listing {
    seen: Option<HashSet<Key>>,
    done: bool,
}

/// Applies a watch event of one kind to its map of views (`view` reduces an object; `None`
/// removes it).
fn apply<K, V: PartialEq>(
    event: Event<K>,
    map: &mut BTreeMap<Key, V>,
    listing: &mut Listing,
    view: impl Fn(&K) -> Option<V>,
) where
    K: Resource,
{
    let put = |object: &K, map: &mut BTreeMap<Key, V>| {
        let key = key_of(object.meta());
        match view(object) {
            Some(v) => {
                map.insert(key.clone(), v);
            }
            None => {
                map.remove(&key);
            }
        }
        key
    };
    match event {
        Event::Init => listing.seen = Some(HashSet::new()),
        Event::InitApply(object) => {
            let key = put(&object, map);
            listing.seen.get_or_insert_default().insert(key);
        }
        Event::InitDone => {
            let seen = listing.seen.take().unwrap_or_default();
            map.retain(|key, _| seen.contains(key));
            listing.done = true;
        }
        Event::Apply(object) => {
            put(&object, map);
        }
        Event::Delete(object) => {
            map.remove(&key_of(object.meta()));
        }
    }
}

/// Spawns a task that sends `api`'s watch events (objects decoded without their
/// `managedFields`), wrapped by `wrap`, to `tx`.
fn forward<K>(
    watches: &mut JoinSet<()>,
    api: Api<Trimmed<K>>,
    tx: mpsc::Sender<Change>,
    wrap: fn(Box<Event<K>>) -> Change,
    what: &str,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let what = what.to_string();
    watches.spawn(async move {
        let events = watcher::watcher(api, Default::default()).map_ok(untrimmed);
        let mut events = events.default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => {
                    if tx.send(wrap(Box::new(e))).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "network policy: {what} watch failed"),
            }
        }
    });
}

/// Runs the watches and the programming loop, for a table of each of `families`.
pub async fn run(
    client: kube::Client,
    table: String,
    node: String,
    families: Vec<Family>,
) -> Result<(), Error> {
    let mut netlink = Netlink::open()?;
    let (tx, mut rx) = mpsc::channel::<Change>(1024);
    // The watches end with this future (dropped when enforcement stops), not after it.
    let mut watches = JoinSet::new();
    let policy_api = Api::<Trimmed<NetworkPolicy>>::all(client.clone());
    forward(&mut watches, policy_api, tx.clone(), Change::Policy, "NetworkPolicy");
    let pod_api = Api::<Trimmed<Pod>>::all(client.clone());
    forward(&mut watches, pod_api, tx.clone(), Change::Pod, "Pod");
    let namespace_api = Api::<Trimmed<Namespace>>::all(client);
    forward(&mut watches, namespace_api, tx, Change::Namespace, "Namespace");

    let mut cluster = Cluster::default();
    let mut namespaces: BTreeMap<Key, plan::Labels> = BTreeMap::new();
    let (mut policies, mut pods, mut spaces) =
        (Listing::default(), Listing::default(), Listing::default());
    let mut programmed: BTreeMap<Family, Ruleset> = BTreeMap::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let change = match retry_at {
            Some(at) => tokio::select! {
                change = rx.recv() => change,
                () = tokio::time::sleep_until(at) => None,
            },
            None => match rx.recv().await {
                Some(change) => Some(change),
                None => return Ok(()),
            },
        };
        let mut pending: Vec<Change> = change.into_iter().collect();
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        for change in pending {
            match change {
                Change::Policy(e) => apply(*e, &mut cluster.policies, &mut policies, |p| {
                    Some(p.spec.clone().unwrap_or_default())
                }),
                Change::Pod(e) => apply(*e, &mut cluster.pods, &mut pods, plan::pod_view),
                Change::Namespace(e) => apply(*e, &mut namespaces, &mut spaces, |n| {
                    Some(n.metadata.labels.clone().unwrap_or_default())
                }),
            }
        }
        if !(policies.done && pods.done && spaces.done) {
            continue;
        }
        cluster.namespaces =
            namespaces.iter().map(|((_, name), labels)| (name.clone(), labels.clone())).collect();
        retry_at = None;
        for family in &families {
            let started = Instant::now();
            let ruleset = cluster.ruleset(&node, *family);
            if programmed.get(family) == Some(&ruleset) {
                continue;
            }
            let mut batch = netlink.batch(family.nfproto(), &table);
            program::replace(&mut batch, &ruleset);
            let messages = batch.len();
            match netlink.apply(batch) {
                Ok(()) => {
                    tracing::debug!(
                        ?family,
                        pods = ruleset.ingress.len().max(ruleset.egress.len()),
                        messages,
                        elapsed = ?started.elapsed(),
                        "network policy programmed"
                    );
                    programmed.insert(*family, ruleset);
                }
                Err(e) => {
                    tracing::error!(error = %e, ?family, "network policy: the table was refused; trying again");
                    programmed.remove(family);
                    retry_at = Some(tokio::time::Instant::now() + RETRY);
                }
            }
        }
    }
}
