//! The proxy's state and loop: watch events update the views and mark their Service dirty;
//! once both first lists are in, every burst of events ends in one batch for the dirty
//! Services. A refused batch makes the next one rebuild the whole table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use krust_client::{Trimmed, untrimmed};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use crate::Error;
use crate::plan::{self, Key, PortKey, ServicePort, ServiceView, SliceView};
use crate::program::{self, Layout};
use krust_nftables::{Family, Netlink};

/// A batch is sent once it holds this many bytes (well under a netlink socket's send buffer).
const BATCH_BYTES: usize = 128 << 10;

enum Change {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

#[derive(Default)]
struct State {
    services: HashMap<Key, ServiceView>,
    slices: HashMap<Key, SliceView>,
    slices_of: HashMap<Key, BTreeSet<String>>,
    /// What each family's table holds, by Service.
    programmed: BTreeMap<Family, HashMap<Key, BTreeMap<PortKey, ServicePort>>>,
    /// Each family's table's hairpin endpoints.
    hairpin: BTreeMap<Family, program::Hairpin>,
    dirty: BTreeSet<Key>,
    listing_services: Option<HashSet<Key>>,
    listing_slices: Option<HashSet<Key>>,
    services_listed: bool,
    slices_listed: bool,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl State {
    fn put_service(&mut self, service: &Service) {
        let key = key_of(&service.metadata);
        match plan::service_view(service) {
            Some(view) => {
                if self.services.get(&key) != Some(&view) {
                    self.services.insert(key.clone(), view);
                    self.dirty.insert(key);
                }
            }
            None => self.delete_service(&key),
        }
    }

    fn delete_service(&mut self, key: &Key) {
        if self.services.remove(key).is_some() {
            self.dirty.insert(key.clone());
        }
    }

    fn put_slice(&mut self, slice: &EndpointSlice) {
        let key = key_of(&slice.metadata);
        let Some(view) = plan::slice_view(slice) else { return self.delete_slice(&key) };
        if self.slices.get(&key) == Some(&view) {
            return;
        }
        self.delete_slice(&key);
        self.slices_of.entry(view.service.clone()).or_default().insert(key.1.clone());
        self.dirty.insert(view.service.clone());
        self.slices.insert(key, view);
    }

    fn delete_slice(&mut self, key: &Key) {
        let Some(old) = self.slices.remove(key) else { return };
        if let Some(names) = self.slices_of.get_mut(&old.service) {
            names.remove(&key.1);
            if names.is_empty() {
                self.slices_of.remove(&old.service);
            }
        }
        self.dirty.insert(old.service);
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Service(event) => match *event {
                Event::Init => self.listing_services = Some(HashSet::new()),
                Event::InitApply(s) => {
                    self.listing_services.get_or_insert_default().insert(key_of(&s.metadata));
                    self.put_service(&s);
                }
                Event::InitDone => {
                    let listed = self.listing_services.take().unwrap_or_default();
                    let gone: Vec<Key> =
                        self.services.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                    gone.iter().for_each(|k| self.delete_service(k));
                    self.services_listed = true;
                }
                Event::Apply(s) => self.put_service(&s),
                Event::Delete(s) => self.delete_service(&key_of(&s.metadata)),
            },
            Change::Slice(event) => match *event {
                Event::Init => self.listing_slices = Some(HashSet::new()),
                Event::InitApply(s) => {
                    self.listing_slices.get_or_insert_default().insert(key_of(&s.metadata));
                    self.put_slice(&s);
                }
                Event::InitDone => {
                    let listed = self.listing_slices.take().unwrap_or_default();
                    let gone: Vec<Key> =
                        self.slices.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                    gone.iter().for_each(|k| self.delete_slice(k));
                    self.slices_listed = true;
                }
                Event::Apply(s) => self.put_slice(&s),
                Event::Delete(s) => self.delete_slice(&key_of(&s.metadata)),
            },
        }
    }

    /// What `key` should be programmed as in the table of `family`.
    fn desired(&self, key: &Key, node: &str, family: Family) -> BTreeMap<PortKey, ServicePort> {
        let Some(view) = self.services.get(key) else { return BTreeMap::new() };
        let slices: Vec<&SliceView> = self
            .slices_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|name| self.slices.get(&(key.0.clone(), name.clone())))
            .collect();
        plan::service_ports((&key.0, &key.1), view, slices.iter().copied(), node, family)
    }
}

/// Runs the watches and the programming loop, for a table of each of `layouts`.
pub async fn run(client: kube::Client, layouts: Vec<Layout>) -> Result<(), Error> {
    let mut netlink = Netlink::open()?;
    let (tx, mut rx) = mpsc::channel::<Change>(1024);
    // Decoded without their `managedFields`, which the proxy never reads.
    let services = Api::<Trimmed<Service>>::all(client.clone());
    let services = watcher::watcher(services, Default::default()).map_ok(untrimmed);
    let slices = Api::<Trimmed<EndpointSlice>>::all(client);
    let slices = watcher::watcher(slices, Default::default()).map_ok(untrimmed);
    let tx_services = tx.clone();
    // The watches end with this future (dropped when the proxy stops), not after it.
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(async move {
        let mut events = services.default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => {
                    if tx_services.send(Change::Service(Box::new(e))).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "service proxy: Service watch failed"),
            }
        }
    });
    watches.spawn(async move {
        let mut events = slices.default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => {
                    if tx.send(Change::Slice(Box::new(e))).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "service proxy: EndpointSlice watch failed"),
            }
        }
    });
    let mut state = State::default();
    let mut rebuild = true;
    while let Some(change) = rx.recv().await {
        state.apply(change);
        while let Ok(more) = rx.try_recv() {
            state.apply(more);
        }
        if !(state.services_listed && state.slices_listed) {
            continue;
        }
        if rebuild {
            state.programmed.clear();
            state.hairpin.clear();
            let all: Vec<Key> = state.services.keys().cloned().collect();
            state.dirty.extend(all);
        }
        match program_dirty(&mut state, &mut netlink, &layouts, rebuild) {
            Ok(()) => rebuild = false,
            Err(e) => {
                tracing::error!(error = %e, "service proxy: a batch was refused; rebuilding the table");
                rebuild = true;
            }
        }
    }
    Ok(())
}

/// Programs every dirty Service into each family's table, in batches of at most
/// `BATCH_BYTES`.
fn program_dirty(
    state: &mut State,
    netlink: &mut Netlink,
    layouts: &[Layout],
    rebuild: bool,
) -> Result<(), Error> {
    let started = Instant::now();
    let dirty: Vec<Key> = std::mem::take(&mut state.dirty).into_iter().collect();
    let mut messages = 0;
    for layout in layouts {
        messages += program_family(state, netlink, layout, &dirty, rebuild)?;
    }
    if messages > 0 {
        tracing::debug!(
            services = dirty.len(),
            messages,
            elapsed = ?started.elapsed(),
            "service proxy programmed"
        );
    }
    Ok(())
}

/// Programs `dirty` into the table of `layout`; answers the number of messages sent.
fn program_family(
    state: &mut State,
    netlink: &mut Netlink,
    layout: &Layout,
    dirty: &[Key],
    rebuild: bool,
) -> Result<usize, Error> {
    let family = layout.family;
    let mut batch = netlink.batch(family.nfproto(), &layout.table);
    if rebuild {
        program::skeleton(&mut batch, layout);
    }
    let mut messages = 0;
    for key in dirty {
        let desired = state.desired(key, &layout.node, family);
        let programmed = state.programmed.entry(family).or_default();
        let hairpin = state.hairpin.entry(family).or_default();
        let old = programmed.remove(key).unwrap_or_default();
        let ports: BTreeSet<&PortKey> = old.keys().chain(desired.keys()).collect();
        for port in ports {
            program::change(&mut batch, port, old.get(port), desired.get(port), hairpin);
        }
        if !desired.is_empty() {
            programmed.insert(key.clone(), desired);
        }
        if batch.size() >= BATCH_BYTES {
            messages += batch.len();
            netlink.apply(batch)?;
            batch = netlink.batch(family.nfproto(), &layout.table);
        }
    }
    messages += batch.len();
    if !batch.is_empty() {
        netlink.apply(batch)?;
    }
    Ok(messages)
}
