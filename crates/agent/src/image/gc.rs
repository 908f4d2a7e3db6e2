//! Image garbage collection, as the kubelet's image manager: when the filesystem holding the
//! images is fuller than `--image-gc-high-threshold` percent, images no pod on this node uses
//! are removed, least recently used first, until it is down to `--image-gc-low-threshold`.
//! An image first seen less than `--minimum-image-ttl-duration` ago is kept (a pod may be
//! about to use it).
//!
//! The policy ([`Tracker`], [`victims`]) is pure; [`run`] feeds it: the images in the store,
//! the images of the pods bound to this node (from the API, whatever their phase: a stopped
//! container still holds its image) and of every container run kept on disk (static pods'
//! among them, whose mirror pods may be missing), and the filesystem's usage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::Image;
use crate::Agent;

/// The thresholds, as the kubelet's flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Disk usage (percent) at or above which images are collected; 100 turns collection off.
    pub high_percent: u8,
    /// Disk usage (percent) collection brings the filesystem down to.
    pub low_percent: u8,
    /// How long an image is kept after it was first seen, used or not.
    pub minimum_age: Duration,
}

impl Default for Policy {
    /// The kubelet's defaults: 85 %, 80 %, 2 minutes.
    fn default() -> Self {
        Policy { high_percent: 85, low_percent: 80, minimum_age: Duration::from_secs(120) }
    }
}

impl Policy {
    /// Checks the thresholds as the kubelet does.
    pub fn new(high: u8, low: u8, minimum_age: Duration) -> Result<Policy, String> {
        if high > 100 || low > 100 {
            return Err("image GC thresholds are percentages (0-100)".into());
        }
        if low > high {
            return Err(format!(
                "--image-gc-low-threshold ({low}) must not exceed --image-gc-high-threshold ({high})"
            ));
        }
        Ok(Policy { high_percent: high, low_percent: low, minimum_age })
    }

    /// Bytes to free on a filesystem of `capacity` bytes with `available` free: none below
    /// the high threshold, else enough to come down to the low one.
    pub fn bytes_to_free(&self, capacity: u64, available: u64) -> u64 {
        if capacity == 0 || self.high_percent >= 100 {
            return 0;
        }
        let used = capacity.saturating_sub(available);
        let usage_percent = used.saturating_mul(100) / capacity;
        if usage_percent < u64::from(self.high_percent) {
            return 0;
        }
        let allowed = capacity / 100 * u64::from(self.low_percent);
        used.saturating_sub(allowed)
    }
}

/// When each image was first seen and last seen in use.
#[derive(Debug, Default)]
pub struct Tracker {
    records: HashMap<String, Record>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    first_seen: Instant,
    last_used: Instant,
}

impl Tracker {
    /// Records what the store holds (`ids`) and which of them pods use, at `now`; forgets
    /// images that are gone.
    pub fn observe(&mut self, ids: &[&str], in_use: &HashSet<String>, now: Instant) {
        self.records.retain(|id, _| ids.contains(&id.as_str()));
        for id in ids {
            let record = self
                .records
                .entry((*id).to_string())
                .or_insert(Record { first_seen: now, last_used: now });
            if in_use.contains(*id) {
                record.last_used = now;
            }
        }
    }
}

/// The images to remove to free `need` bytes: unused ones past the minimum age, least
/// recently used first (then the oldest seen), until their sizes reach `need`.
pub fn victims<'a>(
    images: &'a [Image],
    in_use: &HashSet<String>,
    tracker: &Tracker,
    policy: &Policy,
    need: u64,
    now: Instant,
) -> Vec<&'a Image> {
    let mut candidates: Vec<(&Image, Record)> = images
        .iter()
        .filter(|i| !in_use.contains(&i.id))
        .filter_map(|i| tracker.records.get(&i.id).map(|r| (i, *r)))
        .filter(|(_, r)| now.duration_since(r.first_seen) >= policy.minimum_age)
        .collect();
    candidates.sort_by_key(|(i, r)| (r.last_used, r.first_seen, i.id.clone()));
    let mut freed = 0;
    let mut chosen = Vec::new();
    for (image, _) in candidates {
        if freed >= need {
            break;
        }
        freed += image.size;
        chosen.push(image);
    }
    chosen
}

/// How often the filesystem is checked.
const CHECK: Duration = Duration::from_secs(30);
/// How often images in use are noted even when there is room (the kubelet's image detection
/// period), so that "least recently used" means something when space runs out.
const DETECT: Duration = Duration::from_secs(300);

/// Collects images for ever.
pub async fn run(agent: Arc<Agent>) {
    let policy = agent.options.image_gc;
    if policy.high_percent >= 100 {
        return;
    }
    let mut tracker = Tracker::default();
    let mut detected: Option<Instant> = None;
    loop {
        let (capacity, available) = filesystem(&agent);
        let need = policy.bytes_to_free(capacity, available);
        if need > 0 || detected.is_none_or(|at| at.elapsed() >= DETECT) {
            match collect(&agent, &policy, &mut tracker, need).await {
                Ok(()) => detected = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
            }
        }
        tokio::time::sleep(CHECK).await;
    }
}

/// The images' filesystem: its size and free bytes.
fn filesystem(agent: &Agent) -> (u64, u64) {
    let readings = crate::node::machine::read(&agent.options.data_dir);
    (readings.disk_total, readings.disk_available)
}

/// Notes what is in use and removes what `need` calls for.
async fn collect(
    agent: &Agent,
    policy: &Policy,
    tracker: &mut Tracker,
    need: u64,
) -> Result<(), String> {
    // The store first: an image pulled after this listing is not a candidate this round.
    let images = agent.images.list().map_err(|e| e.to_string())?;
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let params =
        ListParams::default().fields(&format!("spec.nodeName={}", agent.options.node_name));
    let pods = pods.list(&params).await.map_err(|e| format!("cannot list pods: {e}"))?;
    let mut in_use = images_in_use(&images, pods.items.iter());
    in_use.extend(images_on_disk(agent, &images));
    let now = Instant::now();
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    tracker.observe(&ids, &in_use, now);
    if need == 0 {
        return Ok(());
    }
    let mut freed = 0;
    let mut failures = Vec::new();
    for image in victims(&images, &in_use, tracker, policy, need, now) {
        match agent.images.remove(&image.id) {
            Ok(removed) => {
                freed += removed.size;
                tracing::info!(image = %removed.id, names = %removed.names.join(","), size = removed.size, "removed an unused image");
            }
            Err(e) => {
                tracing::warn!(image = %image.id, error = %e, "cannot remove an unused image");
                failures.push(format!("image {}: {e}", image.id));
            }
        }
    }
    shortfall(need, freed, &failures)
}

/// Upstream's two ways to say that less was freed than wanted: because removals failed, or
/// because no more was eligible.
fn shortfall(need: u64, freed: u64, failures: &[String]) -> Result<(), String> {
    if freed >= need {
        return Ok(());
    }
    if !failures.is_empty() {
        return Err(format!(
            "wanted to free {need} bytes, but freed {freed} bytes space with errors in image deletion: {}",
            failures.join("; ")
        ));
    }
    Err(format!(
        "Failed to garbage collect required amount of images. Attempted to free {need} bytes, but only found {freed} bytes eligible to free."
    ))
}

/// The ids of the images the containers of `pods` name (those the store holds).
fn images_in_use<'a>(images: &[Image], pods: impl Iterator<Item = &'a Pod>) -> HashSet<String> {
    let mut names = HashSet::new();
    for spec in pods.filter_map(|p| p.spec.as_ref()) {
        let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
        names.extend(containers.filter_map(|c| c.image.clone()));
        let ephemeral = spec.ephemeral_containers.iter().flatten();
        names.extend(ephemeral.filter_map(|c| c.image.clone()));
    }
    names.iter().filter_map(|name| super::find(images, name)).map(|i| i.id.clone()).collect()
}

/// The ids of the images of the container runs on disk (`pods/UID/containers/NAME/RUN/image`).
fn images_on_disk(agent: &Agent, images: &[Image]) -> HashSet<String> {
    let dirs = |path: &std::path::Path| {
        std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| e.path())
    };
    let named: HashSet<String> = dirs(&agent.pods_dir)
        .flat_map(|pod| dirs(&pod.join("containers")).collect::<Vec<_>>())
        .flat_map(|container| dirs(&container).collect::<Vec<_>>())
        .filter_map(|run| std::fs::read_to_string(run.join("image")).ok())
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .collect();
    named.iter().filter_map(|id| super::find(images, id)).map(|i| i.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortfall_says_whether_removals_failed_or_nothing_more_was_eligible() {
        assert_eq!(shortfall(100, 100, &[]), Ok(()));
        assert_eq!(
            shortfall(100, 40, &[]),
            Err("Failed to garbage collect required amount of images. Attempted to free 100 \
                 bytes, but only found 40 bytes eligible to free."
                .into())
        );
        assert_eq!(
            shortfall(100, 40, &["image sha256:ab: busy".into()]),
            Err("wanted to free 100 bytes, but freed 40 bytes space with errors in image \
                 deletion: image sha256:ab: busy"
                .into())
        );
    }

    fn image(id: &str, size: u64) -> Image {
        Image {
            id: id.into(),
            names: vec![format!("example.com/{id}:1")],
            layers: vec![],
            config: Default::default(),
            size,
            repo_digests: vec![],
        }
    }

    #[test]
    fn nothing_is_freed_below_the_high_threshold() {
        let policy = Policy::default();
        // 84 % used.
        assert_eq!(policy.bytes_to_free(1000, 160), 0);
        // 90 % used: down to 80 %.
        assert_eq!(policy.bytes_to_free(1000, 100), 100);
        let off = Policy { high_percent: 100, ..policy };
        assert_eq!(off.bytes_to_free(1000, 0), 0);
        let always = Policy::new(0, 0, Duration::ZERO).expect("valid");
        assert_eq!(always.bytes_to_free(1000, 900), 100);
        assert!(Policy::new(50, 60, Duration::ZERO).is_err());
        assert!(Policy::new(101, 60, Duration::ZERO).is_err());
    }

    #[test]
    fn unused_images_go_least_recently_used_first_and_only_as_many_as_needed() {
        let policy = Policy { minimum_age: Duration::from_secs(60), ..Policy::default() };
        let start = Instant::now();
        let images = vec![image("a", 10), image("b", 20), image("c", 30), image("young", 40)];
        let mut tracker = Tracker::default();
        let ids = ["a", "b", "c"];
        // a and b were used until later than c; b until last.
        tracker.observe(&ids, &HashSet::from(["a".into(), "b".into()]), start);
        tracker.observe(&ids, &HashSet::from(["b".into()]), start + Duration::from_secs(10));
        let later = start + Duration::from_secs(120);
        tracker.observe(&["a", "b", "c", "young"], &HashSet::new(), later);
        let in_use = HashSet::from(["c".to_string()]);
        let names = |chosen: Vec<&Image>| chosen.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        // c is in use; young is too young; a was last used before b.
        assert_eq!(names(victims(&images, &in_use, &tracker, &policy, 5, later)), ["a"]);
        assert_eq!(names(victims(&images, &in_use, &tracker, &policy, 15, later)), ["a", "b"]);
        assert_eq!(names(victims(&images, &in_use, &tracker, &policy, 1000, later)), ["a", "b"]);
        assert!(victims(&images, &in_use, &tracker, &policy, 0, later).is_empty());
        // Forgotten once gone from the store.
        tracker.observe(&["c"], &HashSet::new(), later);
        assert!(
            victims(&images, &HashSet::new(), &tracker, &policy, 1000, later)
                .iter()
                .all(|i| i.id == "c")
        );
    }
}
