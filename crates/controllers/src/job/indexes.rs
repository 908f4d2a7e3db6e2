//! Completion indexes of Indexed Jobs: the compressed interval lists of `completedIndexes` and
//! `failedIndexes` (`"1,3-5"`), a pod's index, which indexes to start next and which pods hold
//! an index twice (upstream's `indexed_job_utils.go`).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// The annotation (and label) that carries a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The environment variable every container of an Indexed Job's pods gets.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// How long a generated name's prefix may be (upstream's `MaxGeneratedNameLength`).
const MAX_GENERATED_NAME: usize = 63 - 5;

/// Indexes as ordered, disjoint, non-adjacent inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Parses `"1,3-5"`, keeping only indexes below `completions`; malformed parts are
    /// skipped, as upstream's parser does.
    pub fn parse(text: &str, completions: i32) -> Self {
        let mut result: Vec<(i32, i32)> = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut limits = part.splitn(2, '-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else { continue };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i32>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match result.last_mut() {
                Some(prev) if prev.1 + 1 == first => prev.1 = last,
                _ => result.push((first, last)),
            }
        }
        Self(result)
    }

    /// These intervals with `other`'s merged in.
    pub fn merge(&self, other: &Intervals) -> Self {
        let mut all: Vec<(i32, i32)> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort_unstable();
        let mut result: Vec<(i32, i32)> = Vec::new();
        for (first, last) in all {
            match result.last_mut() {
                Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
                _ => result.push((first, last)),
            }
        }
        Self(result)
    }

    /// These intervals with the single `indexes` added.
    pub fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Self {
        self.merge(&Self(indexes.into_iter().map(|i| (i, i)).collect()))
    }

    /// How many indexes there are.
    pub fn total(&self) -> usize {
        self.0.iter().map(|(f, l)| usize::try_from(l - f + 1).unwrap_or(0)).sum()
    }

    /// Whether `index` is in.
    pub fn has(&self, index: i32) -> bool {
        self.0.iter().any(|(f, l)| *f <= index && index <= *l)
    }

    /// The intervals.
    pub fn intervals(&self) -> &[(i32, i32)] {
        &self.0
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Intervals {
    /// Upstream's form: `a` alone, two adjacent as `a,b`, longer runs as `a-b`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (first, last)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}")?;
            if last == &(first + 1) {
                write!(f, ",{last}")?;
            } else if last > first {
                write!(f, "-{last}")?;
            }
        }
        Ok(())
    }
}

/// A pod's completion index, from its annotation; `None` when absent or not a non-negative
/// number.
pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A pod's index when it is below `completions`.
pub fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    index_of(pod).filter(|i| *i < completions)
}

/// The indexes the pods hold.
pub fn indexes_of<'a>(pods: impl IntoIterator<Item = &'a Arc<Pod>>) -> BTreeSet<i32> {
    pods.into_iter().filter_map(|p| index_of(p)).collect()
}

/// The first `count` indexes below `completions` that are in none of `taken`.
pub fn first_pending(taken: &Intervals, count: usize, completions: i32) -> Vec<i32> {
    let mut result = Vec::with_capacity(count);
    let mut candidate = 0;
    for (first, last) in taken.intervals() {
        while candidate < completions && result.len() < count && candidate < *first {
            result.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(last + 1);
    }
    while candidate < completions && result.len() < count {
        result.push(candidate);
        candidate += 1;
    }
    result
}

/// The active pods an Indexed Job removes whatever its counts: those without an index or
/// with one out of range, and all but one of each repeated index (the least valuable of them,
/// by `order`, which sorts the first to delete first). Answers `(remove, keep)`.
pub fn duplicated_for_removal(
    pods: &[Arc<Pod>],
    completions: i32,
    order: impl Fn(&[Arc<Pod>]) -> Vec<Arc<Pod>>,
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let (mut remove, mut keep) = (Vec::new(), Vec::new());
    let mut by_index: std::collections::BTreeMap<i32, Vec<Arc<Pod>>> = Default::default();
    for pod in pods {
        match valid_index(pod, completions) {
            Some(i) => by_index.entry(i).or_default().push(Arc::clone(pod)),
            None => remove.push(Arc::clone(pod)),
        }
    }
    for (_, same) in by_index {
        let mut ordered = order(&same);
        if let Some(last) = ordered.pop() {
            keep.push(last);
        }
        remove.extend(ordered);
    }
    (remove, keep)
}

/// The generateName of an index's pods: `<job>-<index>-`, the job's name cut short so that
/// the prefix fits a generated name.
pub fn generate_name(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let mut prefix = format!("{job}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME {
        let mut keep = MAX_GENERATED_NAME.saturating_sub(suffix.len());
        while !job.is_char_boundary(keep) {
            keep -= 1;
        }
        prefix = format!("{}{suffix}", &job[..keep]);
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, index: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: index
                    .map(|i| [(COMPLETION_INDEX.to_string(), i.to_string())].into_iter().collect()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn completed_indexes_print_as_upstream_compresses_them() {
        let cases: &[(&[i32], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[1, 2], "1,2"),
            (&[1, 3, 4, 5], "1,3-5"),
            (&[0, 1, 2, 5, 7, 8], "0-2,5,7,8"),
        ];
        for (indexes, text) in cases {
            let intervals = Intervals::default().with(indexes.iter().copied());
            assert_eq!(intervals.to_string(), *text, "{indexes:?}");
            assert_eq!(intervals.total(), indexes.len());
            assert_eq!(Intervals::parse(text, 100), intervals, "{text}");
        }
    }

    #[test]
    fn parsing_drops_what_is_out_of_range_or_malformed() {
        assert_eq!(Intervals::parse("0-2,4,x,6-9,12", 8).to_string(), "0-2,4,6,7");
        assert_eq!(Intervals::parse("1,2,3", 10).intervals(), &[(1, 3)]);
        assert!(Intervals::parse("5", 5).is_empty());
    }

    #[test]
    fn merging_joins_adjacent_and_overlapping_intervals() {
        let a = Intervals::parse("0-2,8", 20);
        let b = Intervals::parse("3,5-9", 20);
        assert_eq!(a.merge(&b).to_string(), "0-3,5-9");
        assert!(a.has(1) && !a.has(3) && a.has(8));
    }

    #[test]
    fn pending_indexes_skip_the_taken_ones() {
        let taken = Intervals::parse("0,2-3,6", 10);
        assert_eq!(first_pending(&taken, 3, 10), [1, 4, 5]);
        assert_eq!(first_pending(&taken, 10, 8), [1, 4, 5, 7]);
        assert_eq!(first_pending(&Intervals::default(), 2, 5), [0, 1]);
        assert!(first_pending(&Intervals::parse("0-4", 5), 2, 5).is_empty());
    }

    #[test]
    fn repeated_missing_and_out_of_range_indexes_are_removed() {
        let pods = [
            pod("a", Some("0")),
            pod("b", Some("0")),
            pod("c", None),
            pod("d", Some("7")),
            pod("e", Some("1")),
        ];
        let (remove, keep) = duplicated_for_removal(&pods, 5, |p| p.to_vec());
        let names = |v: &[Arc<Pod>]| {
            let mut n: Vec<String> =
                v.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&remove), ["a", "c", "d"]);
        assert_eq!(names(&keep), ["b", "e"]);
    }

    #[test]
    fn index_names_keep_the_index_when_the_job_name_is_long() {
        assert_eq!(generate_name("pi", 3), "pi-3-");
        let long = "a".repeat(70);
        let name = generate_name(&long, 12);
        assert_eq!(name.len(), MAX_GENERATED_NAME);
        assert!(name.ends_with("-12-"));
    }
}
