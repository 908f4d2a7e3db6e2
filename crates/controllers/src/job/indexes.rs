//! Completion indexes of Indexed Jobs: a pod's index, and sets of indexes in upstream's
//! compressed interval form (`"1,3-5,7"`, as `completedIndexes` and `failedIndexes` hold them).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// The annotation (and label) carrying a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A pod's completion index, from its annotation (its label when the annotation is missing);
/// `None` when absent or not below `completions`.
pub fn of(pod: &Pod, completions: i32) -> Option<i32> {
    let meta = &pod.metadata;
    let text = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))?;
    text.parse::<i32>().ok().filter(|i| (0..completions).contains(i))
}

/// The indexes an interval string names (invalid parts are skipped, as upstream's parser
/// skips them), those below `completions`.
pub fn parse(text: Option<&str>, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (low.parse::<i32>(), high.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(low), Ok(high)) = (low, high) {
            set.extend((low.max(0)..=high.min(completions - 1)).filter(|i| *i >= low));
        }
    }
    set
}

/// The interval string of `set`; `None` when empty.
pub fn format(set: &BTreeSet<i32>) -> Option<String> {
    let mut parts = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in set {
        run = match run {
            Some((low, high)) if i == high + 1 => Some((low, i)),
            Some(done) => {
                parts.push(done);
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    parts.extend(run);
    let text: Vec<String> = parts
        .into_iter()
        .map(|(low, high)| if low == high { low.to_string() } else { format!("{low}-{high}") })
        .collect();
    (!text.is_empty()).then(|| text.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let set: BTreeSet<i32> = [1, 3, 4, 5, 7].into();
        assert_eq!(format(&set).as_deref(), Some("1,3-5,7"));
        assert_eq!(parse(Some("1,3-5,7"), 10), set);
        assert_eq!(parse(Some("1,3-5,7"), 5), [1, 3, 4].into());
        assert_eq!(format(&BTreeSet::new()), None);
        assert!(parse(None, 3).is_empty());
        assert_eq!(parse(Some("x,2"), 3), [2].into());
    }
}
