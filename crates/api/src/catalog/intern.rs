//! Interned names: the `&'static str`s of catalog entries made at run time.
//!
//! Each distinct string is leaked once and reused for ever after, so the memory kept is
//! bounded by the distinct names (groups, kinds, plurals, short names, field paths) the
//! custom resource definitions of this process ever named, not by how often they change.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

fn table() -> &'static Mutex<HashSet<&'static str>> {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

/// The one `&'static str` equal to `s`.
pub fn intern(s: &str) -> &'static str {
    let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = table.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    table.insert(leaked);
    leaked
}

/// The one `&'static [&'static str]` equal to `items` (empty lists cost nothing).
pub fn intern_list(items: &[String]) -> &'static [&'static str] {
    static LISTS: OnceLock<Mutex<HashSet<&'static [&'static str]>>> = OnceLock::new();
    if items.is_empty() {
        return &[];
    }
    let names: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let mut lists = LISTS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = lists.get(names.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    lists.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern(&String::from("widgets"));
        let b = intern("widgets");
        assert!(std::ptr::eq(a, b));
        let l1 = intern_list(&["w".to_string(), "wd".to_string()]);
        let l2 = intern_list(&["w".to_string(), "wd".to_string()]);
        assert!(std::ptr::eq(l1, l2));
    }
}
