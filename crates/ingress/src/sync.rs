//! The watches and the loop. IngressClasses, Ingresses, Services, EndpointSlices and TLS
//! Secrets (`type=kubernetes.io/tls` only) are watched and kept reduced to what routing needs
//! (the `*View`s). Once every first list is in, each burst of events that touches what the
//! table is made of (a class, an Ingress, a Service or slice that a backend names) rebuilds the
//! table, swapped whole for the listeners; one that touches a Secret the table names, or a new
//! table, rebuilds the certificates. Changes to other Services, slices and Secrets cost nothing
//! more than their view.
//!
//! Status: each served Ingress's `status.loadBalancer.ingress` lists the proxy's addresses, and
//! one that stops being served (its class changed) has them removed; a task of its own writes
//! what differs, retrying failures every 10 s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use krust_client::{Trimmed, untrimmed};
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::class::{self, ClassView, IngressView};
use crate::proxy::Routes;
use crate::routes::{Backends, Key, ServiceView, SliceView, Table};
use crate::tls::{self, Certificates, Resolver, SecretView};

fn key_of<K: Resource>(object: &K) -> Key {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

/// What a change of one object touched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Touched {
    /// An IngressClass or an Ingress: which Ingresses are served and how.
    Ingresses,
    /// A Service or one of its slices.
    Service(Key),
    /// A TLS Secret.
    Secret(Key),
}

/// One kind of object reduced to views, with the bookkeeping of a relist.
trait Views {
    type Object: Resource;
    /// Keeps `object`'s view; what it touched, if its view changed.
    fn put(&mut self, key: Key, object: &Self::Object) -> Option<Touched>;
    /// Forgets `key`; what it touched, if it was there.
    fn delete(&mut self, key: &Key) -> Option<Touched>;
    /// Every key held.
    fn keys(&self) -> Vec<Key>;
}

/// The first list and relists of one watch.
#[derive(Default)]
struct Listing {
    pending: Option<HashSet<Key>>,
    done: bool,
}

/// Applies one watch event to `views`, pushing what it touched onto `touched`.
fn apply_event<V: Views>(
    views: &mut V,
    listing: &mut Listing,
    event: Event<V::Object>,
    touched: &mut Vec<Touched>,
) {
    match event {
        Event::Init => listing.pending = Some(HashSet::new()),
        Event::InitApply(object) => {
            let key = key_of(&object);
            listing.pending.get_or_insert_default().insert(key.clone());
            touched.extend(views.put(key, &object));
        }
        Event::InitDone => {
            let listed = listing.pending.take().unwrap_or_default();
            for key in views.keys().into_iter().filter(|k| !listed.contains(k)) {
                touched.extend(views.delete(&key));
            }
            listing.done = true;
        }
        Event::Apply(object) => touched.extend(views.put(key_of(&object), &object)),
        Event::Delete(object) => touched.extend(views.delete(&key_of(&object))),
    }
}

/// A map of views that touches `Ingresses` or the key itself.
struct Plain<K, V> {
    items: HashMap<Key, V>,
    view: fn(&K) -> V,
    touch: fn(Key) -> Touched,
}

impl<K: Resource, V: PartialEq> Views for Plain<K, V> {
    type Object = K;
    fn put(&mut self, key: Key, object: &K) -> Option<Touched> {
        let view = (self.view)(object);
        if self.items.get(&key) == Some(&view) {
            return None;
        }
        self.items.insert(key.clone(), view);
        Some((self.touch)(key))
    }
    fn delete(&mut self, key: &Key) -> Option<Touched> {
        self.items.remove(key).map(|_| (self.touch)(key.clone()))
    }
    fn keys(&self) -> Vec<Key> {
        self.items.keys().cloned().collect()
    }
}

/// Services and slices, kept as the table resolves backends: slices grouped by Service.
#[derive(Default)]
struct ServicesAndSlices {
    backends: Backends,
    /// Each slice's Service.
    slice_service: HashMap<Key, Key>,
}

struct ServiceSide<'a>(&'a mut ServicesAndSlices);
struct SliceSide<'a>(&'a mut ServicesAndSlices);

impl Views for ServiceSide<'_> {
    type Object = Service;
    fn put(&mut self, key: Key, service: &Service) -> Option<Touched> {
        let view = ServiceView::of(service);
        let services = &mut self.0.backends.services;
        if services.get(&key) == Some(&view) {
            return None;
        }
        services.insert(key.clone(), view);
        Some(Touched::Service(key))
    }
    fn delete(&mut self, key: &Key) -> Option<Touched> {
        self.0.backends.services.remove(key).map(|_| Touched::Service(key.clone()))
    }
    fn keys(&self) -> Vec<Key> {
        self.0.backends.services.keys().cloned().collect()
    }
}

impl Views for SliceSide<'_> {
    type Object = EndpointSlice;
    fn put(&mut self, key: Key, slice: &EndpointSlice) -> Option<Touched> {
        let Some(view) = SliceView::of(slice) else { return self.delete(&key) };
        let service = view.service.clone();
        if self.0.backends.slices.get(&service).and_then(|s| s.get(&key.1)) == Some(&view) {
            return None;
        }
        // A slice that moved to another Service (it does not, but labels can change) leaves
        // the old one first.
        if self.0.slice_service.get(&key).is_some_and(|old| *old != service) {
            self.delete(&key);
        }
        self.0.slice_service.insert(key.clone(), service.clone());
        self.0.backends.slices.entry(service.clone()).or_default().insert(key.1, view);
        Some(Touched::Service(service))
    }
    fn delete(&mut self, key: &Key) -> Option<Touched> {
        let service = self.0.slice_service.remove(key)?;
        if let Some(slices) = self.0.backends.slices.get_mut(&service) {
            slices.remove(&key.1);
            if slices.is_empty() {
                self.0.backends.slices.remove(&service);
            }
        }
        Some(Touched::Service(service))
    }
    fn keys(&self) -> Vec<Key> {
        self.0.slice_service.keys().cloned().collect()
    }
}

/// TLS Secrets: the view is the parsed certificate.
struct Secrets {
    items: HashMap<Key, SecretView>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Views for Secrets {
    type Object = Secret;
    fn put(&mut self, key: Key, secret: &Secret) -> Option<Touched> {
        let view = secret_view(&self.provider, secret);
        let same = match (self.items.get(&key), &view) {
            (Some(Ok(a)), Ok(b)) => a.cert == b.cert,
            _ => false,
        };
        if same {
            return None;
        }
        self.items.insert(key.clone(), view);
        Some(Touched::Secret(key))
    }
    fn delete(&mut self, key: &Key) -> Option<Touched> {
        self.items.remove(key).map(|_| Touched::Secret(key.clone()))
    }
    fn keys(&self) -> Vec<Key> {
        self.items.keys().cloned().collect()
    }
}

/// A change from one of the watches.
enum Change {
    Class(Box<Event<IngressClass>>),
    Ingress(Box<Event<Ingress>>),
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
    Secret(Box<Event<Secret>>),
}

/// One status write: an Ingress and the addresses its status should list (none: cleared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusWrite {
    /// The Ingress.
    pub ingress: Key,
    /// The addresses.
    pub addresses: Vec<String>,
}

/// The status writes that bring Ingresses to what they should show (pure): each served
/// Ingress lists `addresses`; one served before (`ever_served`) but no longer, whose status
/// still lists exactly them, lists none.
pub fn status_writes<'a>(
    ingresses: impl IntoIterator<Item = (&'a Key, &'a IngressView)>,
    served: &HashSet<&Key>,
    ever_served: &HashSet<Key>,
    addresses: &[String],
) -> Vec<StatusWrite> {
    let mut writes: Vec<StatusWrite> = ingresses
        .into_iter()
        .filter_map(|(key, ingress)| {
            if served.contains(key) {
                (ingress.status != addresses)
                    .then(|| StatusWrite { ingress: key.clone(), addresses: addresses.to_vec() })
            } else {
                (ever_served.contains(key) && !addresses.is_empty() && ingress.status == addresses)
                    .then(|| StatusWrite { ingress: key.clone(), addresses: Vec::new() })
            }
        })
        .collect();
    writes.sort_by(|a, b| a.ingress.cmp(&b.ingress));
    writes
}

/// What the loop writes to.
pub struct Targets {
    /// The listeners' routing table.
    pub routes: Arc<Routes>,
    /// The HTTPS listener's certificates.
    pub resolver: Arc<Resolver>,
    /// The addresses written into served Ingresses' status.
    pub addresses: Vec<String>,
    /// The controller name of this controller's IngressClasses.
    pub controller: String,
    /// How TLS Secrets are read.
    pub provider: Arc<rustls::crypto::CryptoProvider>,
}

#[derive(Default)]
struct Listings {
    classes: Listing,
    ingresses: Listing,
    services: Listing,
    slices: Listing,
    secrets: Listing,
}

impl Listings {
    fn done(&self) -> bool {
        [&self.classes, &self.ingresses, &self.services, &self.slices, &self.secrets]
            .iter()
            .all(|l| l.done)
    }
}

/// Spawns a task that sends `api`'s watch events (objects decoded without their
/// `managedFields`), wrapped by `wrap`, to `tx`.
fn spawn_watch<K>(
    watches: &mut JoinSet<()>,
    api: Api<Trimmed<K>>,
    config: watcher::Config,
    tx: mpsc::Sender<Change>,
    wrap: fn(Box<Event<K>>) -> Change,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watches.spawn(async move {
        let events = watcher::watcher(api, config).map_ok(untrimmed);
        let mut events = events.default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => {
                    if tx.send(wrap(Box::new(e))).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(
                    kind = %K::kind(&Default::default()),
                    error = %e,
                    "ingress: a watch failed"
                ),
            }
        }
    });
}

/// Runs the watches, the loop and the status writer until the process ends.
pub async fn run(client: kube::Client, targets: Targets) {
    let (tx, mut rx) = mpsc::channel::<Change>(1024);
    let all = watcher::Config::default();
    // The watches and the status writer end with this future, not after it.
    let mut tasks = JoinSet::new();
    spawn_watch(
        &mut tasks,
        Api::<Trimmed<IngressClass>>::all(client.clone()),
        all.clone(),
        tx.clone(),
        Change::Class,
    );
    spawn_watch(
        &mut tasks,
        Api::<Trimmed<Ingress>>::all(client.clone()),
        all.clone(),
        tx.clone(),
        Change::Ingress,
    );
    spawn_watch(
        &mut tasks,
        Api::<Trimmed<Service>>::all(client.clone()),
        all.clone(),
        tx.clone(),
        Change::Service,
    );
    spawn_watch(
        &mut tasks,
        Api::<Trimmed<EndpointSlice>>::all(client.clone()),
        all,
        tx.clone(),
        Change::Slice,
    );
    let tls_only = watcher::Config::default().fields("type=kubernetes.io/tls");
    let secrets = Api::<Trimmed<Secret>>::all(client.clone());
    spawn_watch(&mut tasks, secrets, tls_only, tx, Change::Secret);
    let (status_tx, status_rx) = watch::channel(Vec::new());
    tasks.spawn(write_status(client, status_rx));

    let mut classes = Plain::<IngressClass, ClassView> {
        items: HashMap::new(),
        view: ClassView::of,
        touch: |_| Touched::Ingresses,
    };
    let mut ingresses = Plain::<Ingress, IngressView> {
        items: HashMap::new(),
        view: IngressView::of,
        touch: |_| Touched::Ingresses,
    };
    let mut backends = ServicesAndSlices::default();
    let mut secrets = Secrets { items: HashMap::new(), provider: targets.provider.clone() };
    let mut listings = Listings::default();
    let mut table = Arc::new(Table::default());
    let mut ever_served: HashSet<Key> = HashSet::new();
    let mut reported: HashSet<Key> = HashSet::new();
    let mut first = true;
    while let Some(change) = rx.recv().await {
        let mut touched = Vec::new();
        let mut next = Some(change);
        while let Some(change) = next {
            match change {
                Change::Class(e) => {
                    apply_event(&mut classes, &mut listings.classes, *e, &mut touched)
                }
                Change::Ingress(e) => {
                    apply_event(&mut ingresses, &mut listings.ingresses, *e, &mut touched)
                }
                Change::Service(e) => apply_event(
                    &mut ServiceSide(&mut backends),
                    &mut listings.services,
                    *e,
                    &mut touched,
                ),
                Change::Slice(e) => apply_event(
                    &mut SliceSide(&mut backends),
                    &mut listings.slices,
                    *e,
                    &mut touched,
                ),
                Change::Secret(e) => {
                    apply_event(&mut secrets, &mut listings.secrets, *e, &mut touched)
                }
            }
            next = rx.try_recv().ok();
        }
        if !listings.done() {
            continue;
        }
        let routes = first
            || touched.iter().any(|t| match t {
                Touched::Ingresses => true,
                Touched::Service(key) => table.names_service(key),
                Touched::Secret(_) => false,
            });
        let certificates = routes
            || touched.iter().any(
                |t| matches!(t, Touched::Secret(key) if table.tls().values().any(|k| k == key)),
            );
        let class_views: Vec<&ClassView> = classes.items.values().collect();
        let served = class::served(ingresses.items.iter(), &class_views, &targets.controller);
        if routes {
            table = Arc::new(Table::build(
                served.iter().map(|(k, i)| (*k, &i.spec)),
                &backends.backends,
            ));
            // The listeners hold their own reference; this one tells what the table names.
            targets.routes.swap(table.clone());
            tracing::debug!(ingresses = served.len(), "ingress: routes rebuilt");
        }
        if certificates {
            let (certs, unusable) = Certificates::new(table.tls(), &secrets.items);
            let now: HashSet<Key> = unusable.iter().map(|(k, _)| (*k).clone()).collect();
            for (key, e) in &unusable {
                if !reported.contains(*key) {
                    tracing::warn!(secret = %format!("{}/{}", key.0, key.1), error = %e, "ingress: unusable TLS Secret; its hosts get the default certificate");
                }
            }
            reported = now;
            *targets.resolver.certificates.write().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(certs);
        }
        if first || touched.contains(&Touched::Ingresses) {
            let served_keys: HashSet<&Key> = served.iter().map(|(k, _)| *k).collect();
            let writes = status_writes(
                ingresses.items.iter(),
                &served_keys,
                &ever_served,
                &targets.addresses,
            );
            ever_served.extend(served_keys.into_iter().cloned());
            ever_served.retain(|k| ingresses.items.contains_key(k));
            status_tx.send_if_modified(|current| {
                let changed = *current != writes;
                *current = writes;
                changed
            });
        }
        first = false;
    }
}

/// A TLS Secret's certificate and key, parsed.
fn secret_view(provider: &rustls::crypto::CryptoProvider, secret: &Secret) -> SecretView {
    let data = secret.data.as_ref();
    let field = |name: &str| data.and_then(|d| d.get(name)).map(|b| b.0.as_slice()).unwrap_or(&[]);
    tls::certified_key(provider, field("tls.crt"), field("tls.key")).map(Arc::new).map_err(Arc::new)
}

/// Writes the Ingresses' status as `writes` says, again whenever it changes; failures are
/// retried every 10 s.
async fn write_status(client: kube::Client, mut writes: watch::Receiver<Vec<StatusWrite>>) {
    loop {
        let current = writes.borrow_and_update().clone();
        let mut failed = false;
        for write in &current {
            let api: Api<Ingress> = Api::namespaced(client.clone(), &write.ingress.0);
            let entries: Vec<serde_json::Value> = write
                .addresses
                .iter()
                .map(|a| match a.parse::<std::net::IpAddr>() {
                    Ok(_) => serde_json::json!({"ip": a}),
                    Err(_) => serde_json::json!({"hostname": a}),
                })
                .collect();
            let entries = if entries.is_empty() { serde_json::Value::Null } else { entries.into() };
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": entries}}});
            match api
                .patch_status(&write.ingress.1, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    failed = true;
                    tracing::warn!(ingress = %format!("{}/{}", write.ingress.0, write.ingress.1), error = %e, "ingress: cannot write the status");
                }
            }
        }
        if failed {
            tokio::select! {
                changed = writes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        } else if writes.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn view(status: &[&str]) -> IngressView {
        IngressView {
            created: None,
            class: None,
            spec: Default::default(),
            status: status.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn status_lists_the_addresses_on_served_ingresses_and_leaves_those_that_went() {
        let ours = vec!["10.0.0.1".to_string()];
        let (a, b, c, d, e) = (key("a"), key("b"), key("c"), key("d"), key("e"));
        let (fresh, done, left, theirs, elsewhere) = (
            view(&[]),
            view(&["10.0.0.1"]),
            view(&["10.0.0.1"]),
            view(&["10.9.9.9"]),
            view(&["10.0.0.1"]),
        );
        let all = [(&a, &fresh), (&b, &done), (&c, &left), (&d, &theirs), (&e, &elsewhere)];
        let served: HashSet<&Key> = HashSet::from([&a, &b]);
        let ever = HashSet::from([a.clone(), b.clone(), c.clone(), d.clone()]);
        let writes = status_writes(all, &served, &ever, &ours);
        assert_eq!(
            writes,
            vec![
                StatusWrite { ingress: a.clone(), addresses: ours.clone() },
                // Served before, no longer: cleared. `d` shows someone else's address; `e`
                // was never served here.
                StatusWrite { ingress: c.clone(), addresses: vec![] },
            ]
        );
    }

    fn slice(name: &str, service: &str, ip: &str) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080}],
            "endpoints": [{"addresses": [ip]}]
        }))
        .unwrap()
    }

    #[test]
    fn slices_are_grouped_by_service_and_a_relist_drops_what_went() {
        let mut state = ServicesAndSlices::default();
        let mut listing = Listing::default();
        let mut touched = Vec::new();
        let events = [
            Event::Init,
            Event::InitApply(slice("a-1", "a", "10.0.0.1")),
            Event::InitApply(slice("a-2", "a", "10.0.0.2")),
            Event::InitApply(slice("b-1", "b", "10.0.0.3")),
            Event::InitDone,
        ];
        for e in events {
            apply_event(&mut SliceSide(&mut state), &mut listing, e, &mut touched);
        }
        assert!(listing.done);
        assert_eq!(state.backends.slices[&key("a")].len(), 2);
        // The same object again changes nothing.
        touched.clear();
        apply_event(
            &mut SliceSide(&mut state),
            &mut listing,
            Event::Apply(slice("a-1", "a", "10.0.0.1")),
            &mut touched,
        );
        assert!(touched.is_empty());
        // A relist without a-2 and b-1 drops them.
        for e in [Event::Init, Event::InitApply(slice("a-1", "a", "10.0.0.1")), Event::InitDone] {
            apply_event(&mut SliceSide(&mut state), &mut listing, e, &mut touched);
        }
        assert_eq!(state.backends.slices[&key("a")].len(), 1);
        assert!(!state.backends.slices.contains_key(&key("b")));
        assert!(
            touched.contains(&Touched::Service(key("a")))
                && touched.contains(&Touched::Service(key("b")))
        );
    }
}
