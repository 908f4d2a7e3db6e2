//! Resource lists as quota computes with them: upstream's `quota/v1` helpers (`Add`,
//! `SubtractWithNonNegativeResult`, `Mask`, `RemoveZeros`, `LessThanOrEqual`, `Equals`) and the
//! way its messages print a list. Keys are kept sorted, as upstream's messages print them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::Amount;

/// Amounts by resource name (`requests.cpu`, `pods`, `count/configmaps`, ...).
pub type ResourceList = BTreeMap<String, Amount>;

/// A list of quantities as read from an object; quantities that do not parse are left out
/// (the registry validated them before they were stored).
pub fn parse(list: Option<&BTreeMap<String, Quantity>>) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Amount::of(v).ok().map(|a| (k.clone(), a)))
        .collect()
}

/// The list as quantities, each in its canonical form.
pub fn to_quantities(list: &ResourceList) -> BTreeMap<String, Quantity> {
    list.iter().map(|(k, v)| (k.clone(), v.to_quantity())).collect()
}

/// `a + b` for each name of either.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut result = a.clone();
    for (k, v) in b {
        let entry = result.entry(k.clone()).or_insert(Amount::ZERO);
        *entry = *entry + *v;
    }
    result
}

/// `a - b` for each name of either, never below zero (upstream's
/// `SubtractWithNonNegativeResult`).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut result = ResourceList::new();
    for (k, v) in a {
        let difference = b.get(k).map_or(*v, |other| *v - *other);
        result.insert(k.clone(), if difference.is_negative() { Amount::ZERO } else { difference });
    }
    for k in b.keys() {
        result.entry(k.clone()).or_insert(Amount::ZERO);
    }
    result
}

/// The entries of `list` whose names are in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names.into_iter().filter_map(|k| list.get(k).map(|v| (k.clone(), *v))).collect()
}

/// The entries that are not zero.
pub fn remove_zeros(list: &ResourceList) -> ResourceList {
    list.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (k.clone(), *v)).collect()
}

/// The names whose amount is below zero.
pub fn negative(list: &ResourceList) -> Vec<String> {
    list.iter().filter(|(_, v)| v.is_negative()).map(|(k, _)| k.clone()).collect()
}

/// The names of `hard` that `used` holds more of (upstream's `LessThanOrEqual`, its second
/// result): empty when `used` fits.
pub fn exceeded(used: &ResourceList, hard: &ResourceList) -> BTreeSet<String> {
    hard.iter()
        .filter(|(k, limit)| used.get(*k).is_some_and(|u| u > *limit))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Whether both lists name the same resources with equal amounts.
pub fn equals(a: &ResourceList, b: &ResourceList) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k) == Some(v))
}

/// Upstream's `prettyPrint`: `name=amount` pairs in name order, comma-separated.
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| (k.to_string(), Amount::parse(v).unwrap())).collect()
    }

    #[test]
    fn lists_add_subtract_and_compare_as_upstream() {
        let a = list(&[("cpu", "500m"), ("pods", "1")]);
        let b = list(&[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(pretty(&add(&a, &b)), "cpu=1500m,memory=1Gi,pods=1");
        assert_eq!(pretty(&subtract_non_negative(&a, &b)), "cpu=0,memory=0,pods=1");
        assert_eq!(pretty(&remove_zeros(&subtract_non_negative(&a, &b))), "pods=1");
        let hard = list(&[("cpu", "1"), ("pods", "1"), ("secrets", "0")]);
        let used = list(&[("cpu", "1500m"), ("pods", "1")]);
        assert_eq!(exceeded(&used, &hard).into_iter().collect::<Vec<_>>(), ["cpu"]);
        assert!(equals(&list(&[("cpu", "1000m")]), &list(&[("cpu", "1")])));
        assert!(!equals(&list(&[("cpu", "1")]), &list(&[("cpu", "1"), ("pods", "0")])));
        let names = ["pods".to_string()];
        assert_eq!(pretty(&mask(&used, &names)), "pods=1");
        assert_eq!(negative(&list(&[("cpu", "-1"), ("pods", "1")])), ["cpu"]);
    }
}
