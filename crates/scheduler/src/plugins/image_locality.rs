//! ImageLocality: nodes that already hold a pod's images score higher, by the images' sizes,
//! scaled down for images that many nodes hold (so that pods do not all crowd onto the nodes
//! that pulled first).

use crate::framework::snapshot::ImageSpread;
use crate::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Points, Snapshot};

/// The plugin's name.
pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this (per container) an image is not worth scoring (upstream's `minThreshold`).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Above this per container, more bytes score no more.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Scores by images present.
pub struct ImageLocality;

/// Upstream's `normalizedImageName`: a name without a tag or digest means `:latest`.
pub fn normalized(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// What the cycle computed: every image the pod uses, with its spread, and the node count.
struct Images {
    images: Vec<(String, ImageSpread)>,
    total_nodes: usize,
    containers: i64,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::PRE_SCORE | Points::SCORE
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot<'_>,
    ) {
        let Some(spec) = &pod.pod.spec else { return };
        let containers: Vec<_> =
            spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
        let images = containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(normalized)
            .filter_map(|name| snapshot.images.get(&name).map(|spread| (name, *spread)))
            .collect();
        state.write(
            NAME,
            Images {
                images,
                total_nodes: snapshot.nodes.len(),
                containers: i64::try_from(containers.len()).unwrap_or(i64::MAX),
            },
        );
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(images) = state.read::<Images>(NAME) else { return 0 };
        if images.images.is_empty() || images.total_nodes == 0 {
            return 0;
        }
        let sum: i64 = images
            .images
            .iter()
            .filter(|(name, _)| node_images(node).any(|n| n == name))
            .map(|(_, spread)| {
                let share = spread.nodes as f64 / images.total_nodes as f64;
                (spread.size as f64 * share) as i64
            })
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * images.containers.max(1);
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

/// Every name of every image the node reports.
fn node_images(node: &NodeInfo) -> impl Iterator<Item = &str> {
    node.node
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|i| i.names.iter().flatten().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::plugins::fixtures::{info, node, pod};

    #[test]
    fn names_without_a_tag_mean_latest() {
        assert_eq!(normalized("nginx"), "nginx:latest");
        assert_eq!(normalized("registry:5000/app"), "registry:5000/app:latest");
        assert_eq!(normalized("nginx:1.27"), "nginx:1.27");
        assert_eq!(normalized("nginx@sha256:abc"), "nginx@sha256:abc");
    }

    #[test]
    fn nodes_with_the_image_score_higher() {
        let with = node(
            "a",
            serde_json::json!({"status": {"images": [
            {"names": ["big:1"], "sizeBytes": 500 * MB}]}}),
            &[],
        );
        let without = node("b", serde_json::json!({}), &[]);
        let images: HashMap<String, ImageSpread> =
            [("big:1".to_string(), ImageSpread { size: 500 * MB, nodes: 1 })].into();
        let snapshot = Snapshot::new(vec![&with, &without], &images);
        let pod = info(pod(serde_json::json!({"containers": [{"name": "c", "image": "big:1"}]})));
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, &pod, &[&with, &without], &snapshot);
        let (a, b) =
            (ImageLocality.score(&state, &pod, &with), ImageLocality.score(&state, &pod, &without));
        // 500 MB held by half the nodes: 250 MB of 1000.
        assert_eq!((a, b), (23, 0));
    }
}
