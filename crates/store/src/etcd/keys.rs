//! Key ranges: how a prefix and a continuation key become etcd's `[key, range_end)`.

/// A key read or watched only for the response around it (the header revision, a compaction
/// report); whether it exists does not matter.
pub(super) const PROBE_KEY: &[u8] = b"\0";

/// The end of the range holding every key that starts with `prefix`: the prefix with its last
/// byte below 0xff incremented and what follows dropped. `None` when no such byte exists (empty
/// or all-0xff prefix): the range then runs to the end of the key space.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// The etcd range `[key, range_end)` holding every key that starts with `prefix`.
///
/// etcd spells "to the end of the key space" as a `range_end` of `"\0"`, and rejects an empty
/// `key`, so the empty prefix becomes `["\0", "\0")`: every key.
pub(super) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let key = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
    let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
    (key, end)
}

/// The etcd range of a page of a list: keys under `prefix` strictly after `start_after`.
///
/// The smallest key after `k` is `k + "\0"`. A `start_after` before the prefix does not widen
/// the range beyond the prefix.
pub(super) fn page_range(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let (key, end) = prefix_range(prefix);
    let key = match start_after {
        Some(after) => {
            let mut from = after.as_bytes().to_vec();
            from.push(0);
            from.max(key)
        }
        None => key,
    };
    (key, end)
}

/// Whether the range `[key, end)` holds no key (etcd's `"\0"` end means "no end").
pub(super) fn is_empty_range(key: &[u8], end: &[u8]) -> bool {
    end != [0] && key >= end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
        assert_eq!(prefix_range("/p/"), (b"/p/".to_vec(), b"/p0".to_vec()));
        assert_eq!(page_range("/p/", Some("/p/a")), (b"/p/a\0".to_vec(), b"/p0".to_vec()));
        assert_eq!(page_range("/p/", Some("/a")), (b"/p/".to_vec(), b"/p0".to_vec()));
        assert!(is_empty_range(b"/p0\0", b"/p0"));
        assert!(!is_empty_range(b"/p/", b"/p0"));
        assert!(!is_empty_range(b"zzz", &[0]));
    }
}
