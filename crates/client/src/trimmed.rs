//! Objects decoded without their `metadata.managedFields`, for caches that never read them.
//!
//! Upstream's kube-scheduler drops them with an informer transform once decoded. Here they are
//! skipped while decoding: the entries' `fieldsV1` trees are the largest part of many objects
//! (a pod's is often a third of its JSON), and decoding them builds a `serde_json::Value` per
//! field only to drop it. Watch `Api<Trimmed<K>>` instead of `Api<K>` (and map its events with
//! [`untrimmed`]); everything else about the resource is `K`'s.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess};

/// `K` as decoded without `metadata.managedFields` (left empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Trimmed<K>(pub K);

impl<K> Trimmed<K> {
    /// The object.
    pub fn into_inner(self) -> K {
        self.0
    }
}

/// A watch event of trimmed objects as one of the objects themselves.
pub fn untrimmed<K>(event: watcher::Event<Trimmed<K>>) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(object.0),
        watcher::Event::Delete(object) => watcher::Event::Delete(object.0),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(object.0),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

impl<K: Resource> Resource for Trimmed<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn metadata_api() -> bool {
        K::metadata_api()
    }

    fn url_path(dt: &Self::DynamicType, namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

impl<'de, K: de::Deserialize<'de>> de::Deserialize<'de> for Trimmed<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Skipping { inner: deserializer, depth: Depth::Object }).map(Trimmed)
    }
}

/// Where a map being decoded sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// The object itself: its `metadata` member is filtered.
    Object,
    /// Its `metadata`: the `managedFields` member is skipped.
    Metadata,
}

/// A deserializer that hands maps at `depth` to their visitor through [`Filtered`]; all else
/// goes to `inner` unchanged.
struct Skipping<D> {
    inner: D,
    depth: Depth,
}

/// A visitor whose maps are filtered at `depth`.
struct Filtering<V> {
    visitor: V,
    depth: Depth,
}

/// A map without the member that `depth` skips, whose `metadata` (at the object's depth) is
/// filtered in turn.
struct Filtered<A> {
    map: A,
    depth: Depth,
    /// The member whose value comes next is the object's `metadata`.
    metadata_next: bool,
}

/// A seed whose value is decoded through [`Skipping`].
struct SkippingSeed<S> {
    seed: S,
    depth: Depth,
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$method(visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Skipping<D> {
    type Error = D::Error;

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Filtering { visitor, depth: self.depth })
    }

    fn deserialize_map<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(Filtering { visitor, depth: self.depth })
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, Filtering { visitor, depth: self.depth })
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(Filtering { visitor, depth: self.depth })
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_unit_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(name, variants, visitor)
    }

    forward!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_seq,
        deserialize_identifier,
        deserialize_ignored_any,
    );
}

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Filtering<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Filtered { map, depth: self.depth, metadata_next: false })
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Skipping { inner: deserializer, depth: self.depth })
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.visitor.visit_bool(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        self.visitor.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.visitor.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.visitor.visit_f64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.visitor.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.visitor.visit_string(v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.visitor.visit_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.visitor.visit_byte_buf(v)
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<V::Value, E> {
        self.visitor.visit_i128(v)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<V::Value, E> {
        self.visitor.visit_u128(v)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(d)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Filtered<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key_seed(Key)? else {
                return Ok(None);
            };
            if self.depth == Depth::Metadata && key == "managedFields" {
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.metadata_next = self.depth == Depth::Object && key == "metadata";
            let key: de::value::CowStrDeserializer<'de, A::Error> = key.into_deserializer();
            return seed.deserialize(key).map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.map.next_value_seed(SkippingSeed { seed, depth: Depth::Metadata })
        } else {
            self.map.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A member's name, borrowed from the input where it can be (serde's own `Cow` always copies).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for SkippingSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Skipping { inner: deserializer, depth: self.depth })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::serde_json::{self, json};
    use kube::core::{ObjectList, WatchEvent};

    use super::Trimmed;

    fn pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "labels": {"app": "web"},
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
                }],
                "resourceVersion": "7",
            },
            "spec": {"containers": [{"name": "web", "image": "nginx"}], "nodeName": "n1"},
            "status": {"phase": "Running"},
        })
    }

    #[test]
    fn an_object_decodes_as_itself_without_its_managed_fields() {
        let trimmed: Trimmed<Pod> = serde_json::from_value(pod()).unwrap();
        let mut whole: Pod = serde_json::from_value(pod()).unwrap();
        assert!(whole.metadata.managed_fields.take().is_some());
        assert_eq!(trimmed.0, whole);
        // From text too, as a client decodes it (keys borrowed, or copied when escaped).
        let text = serde_json::to_string(&pod()).unwrap().replace("\"spec\"", "\"\\u0073pec\"");
        let trimmed: Trimmed<Pod> = serde_json::from_str(&text).unwrap();
        assert_eq!(trimmed.0, whole);
    }

    #[test]
    fn only_the_metadata_member_is_trimmed() {
        // A member of that name elsewhere is the object's own.
        let mut node = json!({
            "metadata": {"name": "n1", "annotations": {"managedFields": "kept"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
        });
        node["metadata"]["managedFields"] = json!([{"manager": "m"}]);
        let trimmed: Trimmed<Node> = serde_json::from_value(node).unwrap();
        let meta = &trimmed.0.metadata;
        assert_eq!(meta.annotations.as_ref().unwrap()["managedFields"], "kept");
        assert_eq!(meta.managed_fields, None);
        assert_eq!(trimmed.0.spec.unwrap().pod_cidr.as_deref(), Some("10.0.0.0/24"));
    }

    #[test]
    fn lists_and_watch_events_decode_trimmed() {
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod()]});
        let list: ObjectList<Trimmed<Pod>> = serde_json::from_value(list).unwrap();
        assert_eq!(list.items[0].0.metadata.managed_fields, None);
        assert_eq!(list.items[0].0.metadata.name.as_deref(), Some("web-0"));
        let event = serde_json::to_vec(&json!({"type": "MODIFIED", "object": pod()})).unwrap();
        let WatchEvent::Modified(pod) =
            serde_json::from_slice::<WatchEvent<Trimmed<Pod>>>(&event).unwrap()
        else {
            panic!("a MODIFIED event");
        };
        assert_eq!(pod.0.metadata.managed_fields, None);
        assert_eq!(pod.0.spec.unwrap().node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(serde_json::from_value::<Trimmed<Pod>>(json!({"metadata": 5})).is_err());
        assert!(serde_json::from_value::<Trimmed<Pod>>(json!([1])).is_err());
        let bad = json!({"metadata": {"managedFields": 5, "name": 3}});
        assert!(serde_json::from_value::<Trimmed<Pod>>(bad).is_err());
    }
}
