//! The watches that keep the records: Services and EndpointSlices in every namespace,
//! applied as they come; a re-list drops what it no longer holds.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use krust_client::{Trimmed, untrimmed};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::records::{Key, Records, key_of, service_record, slice_record};

/// An object the records index.
trait Indexed: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static {
    fn apply(&self, records: &mut Records);
    fn remove(key: &Key, records: &mut Records);
    fn keys(records: &Records) -> Vec<Key>;
}

impl Indexed for Service {
    fn apply(&self, records: &mut Records) {
        records.put_service(key_of(&self.metadata), service_record(self));
    }
    fn remove(key: &Key, records: &mut Records) {
        records.delete_service(key);
    }
    fn keys(records: &Records) -> Vec<Key> {
        records.service_keys()
    }
}

impl Indexed for EndpointSlice {
    fn apply(&self, records: &mut Records) {
        let key = key_of(&self.metadata);
        match slice_record(self) {
            Some(record) => records.put_slice(key, record),
            None => records.delete_slice(&key),
        }
    }
    fn remove(key: &Key, records: &mut Records) {
        records.delete_slice(key);
    }
    fn keys(records: &Records) -> Vec<Key> {
        records.slice_keys()
    }
}

/// Starts both watches; the future ends when both have listed once.
pub fn follow(
    client: kube::Client,
    records: Arc<RwLock<Records>>,
) -> impl std::future::Future<Output = ()> {
    let (services_tx, services_rx) = tokio::sync::oneshot::channel();
    let (slices_tx, slices_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(keep::<Service>(Api::all(client.clone()), records.clone(), services_tx));
    tokio::spawn(keep::<EndpointSlice>(Api::all(client), records, slices_tx));
    async move {
        let _ = services_rx.await;
        let _ = slices_rx.await;
    }
}

async fn keep<K: Indexed>(
    api: Api<Trimmed<K>>,
    records: Arc<RwLock<Records>>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut listed: Option<HashSet<Key>> = None;
    let mut events = watcher(api).boxed();
    while let Some(event) = events.next().await {
        let mut records = records.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(object)) => {
                listed.get_or_insert_default().insert(key_of(object.meta()));
                object.apply(&mut records);
            }
            Ok(Event::InitDone) => {
                let listed = listed.take().unwrap_or_default();
                for key in K::keys(&records) {
                    if !listed.contains(&key) {
                        K::remove(&key, &mut records);
                    }
                }
                if let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
            }
            Ok(Event::Apply(object)) => object.apply(&mut records),
            Ok(Event::Delete(object)) => K::remove(&key_of(object.meta()), &mut records),
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "cluster DNS watch failed; retrying")
            }
        }
    }
}

/// `api`'s watch events, with objects decoded without their `managedFields`.
fn watcher<K: Indexed>(
    api: Api<Trimmed<K>>,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send {
    watcher::watcher(api, watcher::Config::default()).map_ok(untrimmed).default_backoff()
}
