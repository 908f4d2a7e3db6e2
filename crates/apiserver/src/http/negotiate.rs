//! Which form of an answer a client asked for, from its `Accept` header: JSON, a Table (JSON
//! with `as=Table`), or Kubernetes protobuf (`application/vnd.kubernetes.protobuf`, which
//! client-go asks for built-in kinds).
//!
//! `as=PartialObjectMetadata` (and `as=PartialObjectMetadataList`, what metadata-only
//! informers ask) answers objects with their metadata alone, in JSON.
//!
//! The first clause the server can serve wins, as upstream's negotiation takes the client's
//! order. A protobuf clause with `as=Table` is skipped, as upstream allows the Table transform
//! only in JSON (and YAML). A header naming nothing the server serves is answered in JSON,
//! which every client reads.

use krust_api::protobuf::MEDIA_TYPE;

/// The form of an object, list or watch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// JSON.
    Json,
    /// A `meta.k8s.io` Table, in JSON.
    Table,
    /// Kubernetes protobuf; kinds without a protobuf message are answered in JSON.
    Protobuf,
    /// `meta.k8s.io/v1` `PartialObjectMetadata`: each object's metadata alone, in JSON.
    Metadata,
}

/// The form `accept` asks for first.
pub fn wire(accept: &str) -> Wire {
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<&str> = parts.collect();
        let table = params.iter().any(|p| p.replace(' ', "").eq_ignore_ascii_case("as=Table"));
        let metadata = params.iter().any(|p| {
            let p = p.replace(' ', "");
            p.eq_ignore_ascii_case("as=PartialObjectMetadata")
                || p.eq_ignore_ascii_case("as=PartialObjectMetadataList")
        });
        let other_as = params.iter().any(|p| p.to_ascii_lowercase().starts_with("as="));
        match media.as_str() {
            "application/json" if table => return Wire::Table,
            "application/json" if metadata => return Wire::Metadata,
            "application/json" | "*/*" | "application/*" if !other_as => return Wire::Json,
            m if m == MEDIA_TYPE && !other_as => return Wire::Protobuf,
            _ => {}
        }
    }
    Wire::Json
}

/// Whether `accept` takes JSON in some clause (`application/json`, `*/*`, `application/*`):
/// what a client asking for protobuf first falls back to for kinds without protobuf.
pub fn takes_json(accept: &str) -> bool {
    accept.split(',').any(|clause| {
        let media = clause.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        matches!(media.as_str(), "application/json" | "*/*" | "application/*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_alone_does_not_take_json() {
        assert!(!takes_json("application/vnd.kubernetes.protobuf"));
        assert!(takes_json("application/vnd.kubernetes.protobuf, application/json"));
        assert!(takes_json("application/vnd.kubernetes.protobuf;q=1,*/*;q=0.1"));
    }

    #[test]
    fn the_first_form_served_wins() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(wire(kubectl_get), Wire::Table);
        assert_eq!(wire("application/vnd.kubernetes.protobuf, */*"), Wire::Protobuf);
        assert_eq!(wire("application/vnd.kubernetes.protobuf,application/json"), Wire::Protobuf);
        assert_eq!(wire("application/json, application/vnd.kubernetes.protobuf"), Wire::Json);
        assert_eq!(
            wire(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
            ),
            Wire::Json
        );
        assert_eq!(wire(""), Wire::Json);
        let informer = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(wire(informer), Wire::Metadata);
        assert_eq!(
            wire("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
            Wire::Metadata
        );
        assert_eq!(wire("text/html"), Wire::Json);
    }
}
