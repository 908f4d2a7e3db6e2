//! The etcd v3 backend.
//!
//! [`EtcdStore`] maps the [`Store`] trait onto an etcd v3 cluster the way upstream Kubernetes'
//! `storage/etcd3` does: etcd's own revisions are the store's, conditional writes are single
//! transactions comparing a key's create or modify revision, lists are ranges with a limit at a
//! fixed revision, and watches are etcd watches from `after + 1` with previous values.
//!
//! The module is split by job: `keys` turns prefixes into etcd key ranges, `convert`
//! translates etcd's values and errors, `watch` runs watch streams.
//!
//! Watches also ask etcd for progress every second (see
//! [`EtcdStore::with_progress_interval`]) so that a watcher learns promptly that the store's
//! revision moved without a change under its prefix.

mod convert;
mod keys;
mod watch;

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    KvClient, MaintenanceClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
};

use self::convert::{
    RevisionError, backend, header_revision, key_value, malformed, revision_error,
};
use crate::{KeyValue, Page, Result, Revision, Store, StoreError, WatchStream};

/// The largest gRPC message the client accepts: large lists come back as one range response,
/// and tonic's default of 4 MiB is far below what etcd sends (it caps at `i32::MAX`).
const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// How long [`Store::check`] waits for etcd.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a watch asks etcd for a progress notification by default.
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A [`Store`] backed by an etcd v3 cluster.
///
/// Cloning is cheap; clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    maintenance: MaintenanceClient,
    endpoints: Vec<String>,
    progress_interval: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("progress_interval", &self.progress_interval)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (URLs such as `http://127.0.0.1:2379`) and
    /// checks that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            // Like Kubernetes' watches: fail instead of hanging while the cluster has no leader.
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| backend(format_args!("connect to {endpoints:?}"), e))?;
        let store = EtcdStore {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE_SIZE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE_SIZE),
            maintenance: client.maintenance_client(),
            endpoints: endpoints.to_vec(),
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        };
        // The channel connects lazily: make a bad endpoint fail here, not on first use.
        store.current_revision().await?;
        Ok(store)
    }

    /// Sets how often watches ask etcd for progress (default: every second).
    ///
    /// Progress reaches the watcher a quarter of this interval after etcd reports it: older
    /// etcd releases may answer a progress request ahead of events still queued for the
    /// watcher (etcd-io/etcd#15220), so the answer is held back until those had time to arrive.
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// The endpoints this store was connected to.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// Runs `txn` for operation `op` on `key`: whether its compares held, the revision after it
    /// and the response of its first (only) operation.
    async fn txn(&self, op: &str, key: &str, txn: Txn) -> Result<(bool, Revision, TxnOpResponse)> {
        let response: TxnResponse =
            self.kv().txn(txn).await.map_err(|e| backend(format_args!("{op} {key}"), e))?;
        let revision = header_revision(response.header(), "txn")?;
        let first =
            response.op_responses().into_iter().next().ok_or_else(|| {
                malformed(format_args!("{op} {key}: txn without operation response"))
            })?;
        Ok((response.succeeded(), revision, first))
    }

    /// Turns a failed read at `requested` into the store's error, asking etcd for what the
    /// error needs (the compacted or the current revision).
    async fn read_error(
        &self,
        what: String,
        error: etcd_client::Error,
        requested: Revision,
    ) -> StoreError {
        match revision_error(&error) {
            Some(RevisionError::Compacted) => StoreError::Compacted {
                requested,
                compacted: watch::compacted_revision(self.watch.clone(), requested)
                    .await
                    .unwrap_or(requested + 1),
            },
            Some(RevisionError::Future) => match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(e) => e,
            },
            None => backend(what, error),
        }
    }

    /// The key's current state, read in a failed transaction's else branch.
    fn current_of(op: TxnOpResponse, key: &str) -> Result<Option<KeyValue>> {
        match op {
            TxnOpResponse::Get(mut get) => {
                get.take_kvs().into_iter().next().map(key_value).transpose()
            }
            _ => Err(malformed(format_args!("txn on {key}: else branch did not read"))),
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut response =
            self.kv().get(key, None).await.map_err(|e| backend(format_args!("get {key}"), e))?;
        response.take_kvs().into_iter().next().map(key_value).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page> {
        let (from, end) = keys::page_range(prefix, start_after);
        // etcd reads at the current revision for 0 (and below).
        let at = revision.unwrap_or(0);
        if keys::is_empty_range(&from, &end) {
            // Nothing can match, but the revision must still be checked and reported: read
            // the (empty) count of the range end key alone.
            let options = GetOptions::new().with_count_only().with_revision(at);
            let response = match self.kv().get(end, Some(options)).await {
                Ok(response) => response,
                Err(e) => return Err(self.read_error(format!("list {prefix:?}"), e, at).await),
            };
            let current = header_revision(response.header(), "range")?;
            let revision = if at > 0 { at } else { current };
            return Ok(Page { items: Vec::new(), more: false, remaining: Some(0), revision });
        }
        let options = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .with_revision(at);
        let mut response = match self.kv().get(from, Some(options)).await {
            Ok(response) => response,
            Err(e) => return Err(self.read_error(format!("list {prefix:?}"), e, at).await),
        };
        let current = header_revision(response.header(), "range")?;
        let (more, count) = (response.more(), response.count());
        let items = response.take_kvs().into_iter().map(key_value).collect::<Result<Vec<_>>>()?;
        // etcd counts the whole range, whatever the limit.
        let remaining = usize::try_from(count).unwrap_or(0).saturating_sub(items.len());
        let revision = if at > 0 { at } else { current };
        Ok(Page { items, more, remaining: Some(remaining), revision })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let (succeeded, revision, _) = self.txn("create", key, txn).await?;
        if !succeeded {
            return Err(StoreError::AlreadyExists { key: key.to_owned() });
        }
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([
                // A missing key has modify revision 0: the first compare keeps `expected == 0`
                // from recreating it.
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(key, value.clone(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let (succeeded, revision, op) = self.txn("update", key, txn).await?;
        if !succeeded {
            return Err(match Self::current_of(op, key)? {
                None => StoreError::NotFound { key: key.to_owned() },
                Some(current) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: current.mod_revision,
                },
            });
        }
        let create_revision = match op {
            TxnOpResponse::Put(put) => put.prev_key().map(|prev| prev.create_revision()),
            _ => None,
        }
        .ok_or_else(|| malformed(format_args!("update {key}: put without previous value")))?;
        Ok(KeyValue { key: key.to_owned(), value, create_revision, mod_revision: revision })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let (succeeded, revision, op) = self.txn("delete", key, txn).await?;
        if !succeeded {
            return Err(match (Self::current_of(op, key)?, expected) {
                (Some(current), Some(expected)) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: current.mod_revision,
                },
                _ => StoreError::NotFound { key: key.to_owned() },
            });
        }
        let prev = match op {
            TxnOpResponse::Delete(mut delete) => delete.take_prev_kvs().into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| malformed(format_args!("delete {key}: delete without previous value")))?;
        Ok(KeyValue { mod_revision: revision, ..key_value(prev)? })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::start(self.watch.clone(), self.kv(), prefix, after, self.progress_interval).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .kv()
            .get(keys::PROBE_KEY, Some(options))
            .await
            .map_err(|e| backend("read current revision", e))?;
        header_revision(response.header(), "range")
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.kv().compact(revision, None).await {
            Ok(_) => Ok(()),
            Err(e) => match revision_error(&e) {
                // History before `revision` is gone already.
                Some(RevisionError::Compacted) => Ok(()),
                Some(RevisionError::Future) => Err(StoreError::FutureRevision {
                    requested: revision,
                    current: self.current_revision().await?,
                }),
                None => Err(backend(format_args!("compact at {revision}"), e)),
            },
        }
    }

    async fn check(&self) -> Result<()> {
        let probe = async {
            // A linearizable read needs a leader and a quorum; writes also stop on an alarm
            // (`NOSPACE`, `CORRUPT`), which reads do not show.
            self.current_revision().await?;
            let alarms = self
                .maintenance
                .clone()
                .alarm(AlarmAction::Get, AlarmType::None, None)
                .await
                .map_err(|e| backend("list alarms", e))?;
            match alarms.alarms().first() {
                Some(member) => Err(StoreError::Backend {
                    message: format!(
                        "etcd member {} raised alarm {:?}",
                        member.member_id(),
                        member.alarm()
                    ),
                    source: None,
                }),
                None => Ok(()),
            }
        };
        tokio::time::timeout(CHECK_TIMEOUT, probe).await.unwrap_or_else(|_| {
            Err(StoreError::Backend {
                message: format!("etcd did not answer within {CHECK_TIMEOUT:?}"),
                source: None,
            })
        })
    }
}
