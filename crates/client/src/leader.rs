//! Leader election on a `coordination.k8s.io` Lease, as upstream's `leaderelection` package:
//! only the instance that holds the lease acts (the controllers, the scheduler), so that several
//! servers (or a server and a `krust controllers`) never act twice.
//!
//! A candidate takes the lease when it is absent, already its own, or has not been renewed
//! for a whole lease duration *as this candidate observed it* (its own clock, never the
//! holder's timestamps, so clock skew between hosts cannot hand the lease over early). The
//! holder renews every retry period and gives up when it could not renew for the renew
//! deadline, before any other candidate may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::Error;

/// Upstream's default timing: 15 s leases, renewed every 2 s, given up after 10 s without a
/// renewal.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it stops acting.
    pub renew_deadline: Duration,
    /// How often candidates try and the holder renews.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the lease it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// There is no lease: create it, held by this candidate.
    Create(LeaseSpec),
    /// Write this spec over the lease (a renewal, or a takeover of an expired lease).
    Update(LeaseSpec),
    /// Another candidate holds a live lease.
    HeldByOther(String),
}

/// Decides a candidate's claim on a lease. `unchanged_for` is how long the lease's spec has
/// been the same as this candidate saw it.
pub fn claim(
    current: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    timing: &Timing,
    now: Timestamp,
) -> Claim {
    let duration = i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(current) = current else {
        return Claim::Create(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..Default::default()
        });
    };
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    let held_for = current
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(timing.lease_duration, Duration::from_secs);
    if !holder.is_empty() && holder != identity && unchanged_for < held_for {
        return Claim::HeldByOther(holder.to_string());
    }
    let mut next = current.clone();
    next.lease_duration_seconds = Some(duration);
    next.renew_time = Some(MicroTime(now));
    if holder != identity {
        next.holder_identity = Some(identity.to_string());
        next.acquire_time = Some(MicroTime(now));
        next.lease_transitions = Some(current.lease_transitions.unwrap_or(0) + 1);
    }
    Claim::Update(next)
}

/// The spec of a lease its holder gives up: no holder, a one-second duration, the transitions
/// kept.
fn released(held: &LeaseSpec) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        lease_duration_seconds: Some(1),
        renew_time: Some(now.clone()),
        acquire_time: Some(now),
        lease_transitions: held.lease_transitions,
        ..Default::default()
    }
}

/// One candidate for one lease.
pub struct LeaderElection {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The spec last read and when it was first seen so.
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElection {
    /// A candidate named `identity` for the lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        timing: Timing,
    ) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity,
            timing,
            observed: None,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            let attempt =
                tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew());
            match attempt.await {
                Ok(Ok(true)) => return,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot take the lease yet"),
                Err(_) => tracing::warn!("the lease did not answer in time"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the lease until it is lost: another candidate took it, or no renewal
    /// succeeded within the renew deadline. Returns then; the caller stops acting.
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            // An attempt may not outlast the renew deadline: a hung request must not keep this
            // candidate acting after its lease could have passed to another.
            let left = self.timing.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the lease"),
                Err(_) => tracing::warn!("renewing the lease did not answer in time"),
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                return;
            }
        }
    }

    /// Gives the lease up, if this candidate holds it, as upstream's `ReleaseOnCancel`: no
    /// holder and a one-second duration, so that another candidate takes it at once instead
    /// of waiting out the lease. Bounded by one retry period; a failure only means the next
    /// leader waits for the lease to run out.
    pub async fn release(&mut self) {
        let attempt = async {
            let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            *spec = released(spec);
            self.leases.replace(&self.name, &PostParams::default(), &lease).await.map(|_| true)
        };
        match tokio::time::timeout(self.timing.retry_period, attempt).await {
            Ok(Ok(true)) => tracing::info!("lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the lease"),
            Err(_) => tracing::warn!("releasing the lease did not answer in time"),
        }
    }

    /// One attempt; answers whether this candidate holds the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let err = |source| Error::LeaderElection {
            lease: format!("{}/{}", self.leases.namespace().unwrap_or_default(), self.name),
            source,
        };
        let current = self.leases.get_opt(&self.name).await.map_err(err)?;
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let unchanged_for = match (&self.observed, &spec) {
            (Some((seen, at)), Some(spec)) if seen == spec => at.elapsed(),
            _ => {
                self.observed = spec.clone().map(|s| (s, Instant::now()));
                Duration::ZERO
            }
        };
        let decision =
            claim(spec.as_ref(), &self.identity, unchanged_for, &self.timing, Timestamp::now());
        let written = match decision {
            Claim::HeldByOther(_) => return Ok(false),
            Claim::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await
            }
            Claim::Update(spec) => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                // The read resourceVersion guards the write: a concurrent claim conflicts.
                self.leases.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                self.observed = lease.spec.map(|s| (s, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(false)
            }
            Err(source) => Err(err(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(transitions),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            ..Default::default()
        }
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let free = released(&held("a", 3));
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_transitions, Some(3));
        let claim = claim(Some(&free), "b", Duration::ZERO, &Timing::default(), Timestamp::now());
        let Claim::Update(next) = claim else { panic!("not taken: {claim:?}") };
        assert_eq!(next.holder_identity.as_deref(), Some("b"));
        assert_eq!(next.lease_transitions, Some(4));
    }

    #[test]
    fn an_absent_lease_is_created() {
        let now = Timestamp::now();
        let Claim::Create(spec) = claim(None, "a", Duration::ZERO, &Timing::default(), now) else {
            panic!("expected a create");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn a_live_lease_of_another_is_left_alone() {
        let t = Timing::default();
        let c = claim(Some(&held("b", 3)), "a", Duration::from_secs(14), &t, Timestamp::now());
        assert_eq!(c, Claim::HeldByOther("b".into()));
    }

    #[test]
    fn an_expired_lease_is_taken_over_with_a_transition() {
        let t = Timing::default();
        let now = Timestamp::now();
        let Claim::Update(spec) = claim(Some(&held("b", 3)), "a", Duration::from_secs(15), &t, now)
        else {
            panic!("expected a takeover");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let t = Timing::default();
        let now = Timestamp::now();
        let Claim::Update(spec) = claim(Some(&held("a", 3)), "a", Duration::ZERO, &t, now) else {
            panic!("expected a renewal");
        };
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
    }
}
