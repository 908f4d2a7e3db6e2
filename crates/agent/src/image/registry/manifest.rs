//! Manifests and indexes as registries serve them (OCI image spec and Docker's schema 2),
//! and the choice of this node's platform in a multi-platform index.

use serde::Deserialize;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header of a manifest request: every kind this agent can pull.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest read (containerd's limit).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A content descriptor: what a manifest says of a blob or of another manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    #[serde(default)]
    pub media_type: String,
    /// Its digest (`sha256:...`).
    pub digest: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// The platform of a manifest in an index.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An image's platform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, `windows`, ...
    pub os: String,
    /// `v8`, `v7`, ... (ARM).
    #[serde(default)]
    pub variant: Option<String>,
}

/// What a manifest request answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// One image: its config and its layers, bottom first.
    Image {
        /// The config blob.
        config: Descriptor,
        /// The layer blobs.
        layers: Vec<Descriptor>,
    },
    /// A multi-platform index.
    Index(Vec<Descriptor>),
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    /// Not JSON of a known shape.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// A kind this agent does not pull (Docker schema 1, artifacts, ...).
    #[error("unsupported manifest media type {0:?}")]
    Unsupported(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Reads a manifest or index; `content_type` is the response's, used when the body does
/// not name its own media type (OCI makes `mediaType` optional).
pub fn parse(body: &[u8], content_type: &str) -> Result<Fetched, ManifestError> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let content_type = content_type.split(';').next().unwrap_or_default().trim();
    let media_type = raw.media_type.clone().unwrap_or_else(|| content_type.to_string());
    if raw.schema_version == Some(1)
        || media_type.contains("manifest.v1+") && !media_type.contains("oci")
    {
        return Err(ManifestError::Unsupported(
            "application/vnd.docker.distribution.manifest.v1+json (schema 1)".into(),
        ));
    }
    // Digests name files in the store: only well-formed sha256 ones are taken.
    let descriptors =
        raw.config.iter().chain(raw.layers.iter().flatten()).chain(raw.manifests.iter().flatten());
    if let Some(bad) = descriptors.map(|d| &d.digest).find(|d| !crate::image::is_sha256(d)) {
        return Err(ManifestError::Invalid(format!(
            "unsupported digest {bad:?} (want sha256:<64 hex digits>)"
        )));
    }
    match (media_type.as_str(), raw.manifests, raw.config, raw.layers) {
        (OCI_INDEX | DOCKER_LIST, Some(manifests), _, _) => Ok(Fetched::Index(manifests)),
        ("" | "application/json", Some(manifests), None, _) => Ok(Fetched::Index(manifests)),
        (
            OCI_MANIFEST | DOCKER_MANIFEST | "" | "application/json",
            _,
            Some(config),
            Some(layers),
        ) => Ok(Fetched::Image { config, layers }),
        (OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST, ..) => {
            Err(ManifestError::Invalid(format!("a {media_type} without its members")))
        }
        _ => Err(ManifestError::Unsupported(media_type)),
    }
}

/// This node's platform, as image indexes name it.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    let variant = (architecture == "arm64").then(|| "v8".to_string());
    Platform { architecture: architecture.into(), os: "linux".into(), variant }
}

/// The index entry for `platform`: the first whose os and architecture match, preferring an
/// exact variant; `None` when the index has none for it.
pub fn choose<'a>(entries: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    let matching = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    };
    let exact = entries.iter().filter(matching).find(|d| {
        d.platform.as_ref().and_then(|p| p.variant.as_deref()) == platform.variant.as_deref()
    });
    exact.or_else(|| entries.iter().find(matching))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        Platform { architecture: "amd64".into(), os: "linux".into(), variant: None }
    }

    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const L: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const M: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    #[test]
    fn reads_oci_and_docker_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{C}","size":2}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{L}","size":3}}]}}"#
        );
        let Ok(Fetched::Image { config, layers }) = parse(body.as_bytes(), "") else {
            panic!("an image")
        };
        assert_eq!(config.digest, C);
        assert_eq!(layers[0].size, 3);
        // OCI leaves mediaType out: the response's type decides.
        let body = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{C}"}},"layers":[]}}"#);
        assert!(matches!(parse(body.as_bytes(), OCI_MANIFEST), Ok(Fetched::Image { .. })));
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{M}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        assert!(
            matches!(parse(body.as_bytes(), "application/vnd.oci.image.index.v1+json; charset=utf-8"), Ok(Fetched::Index(m)) if m.len() == 1)
        );
    }

    #[test]
    fn refuses_digests_that_are_not_sha256() {
        let good = format!("sha256:{}", "a".repeat(64));
        for bad in
            ["sha256:/etc", "sha256:../../..", "sha512:abc", &format!("sha256:{}", "A".repeat(64))]
        {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{good}"}},"layers":[{{"digest":"{bad}"}}]}}"#
            );
            assert!(matches!(parse(body.as_bytes(), ""), Err(ManifestError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn refuses_schema_one_and_garbage() {
        let body = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(parse(body, ""), Err(ManifestError::Unsupported(_))));
        assert!(matches!(parse(b"not json", OCI_MANIFEST), Err(ManifestError::Invalid(_))));
        let body =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        assert!(matches!(parse(body, ""), Err(ManifestError::Invalid(_))));
    }

    #[test]
    fn chooses_this_platform_from_an_index() {
        let entry = |digest: &str, arch: &str, variant: Option<&str>| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
        };
        let entries = vec![
            entry("sha256:arm", "arm64", Some("v8")),
            entry("sha256:amd", "amd64", None),
            entry("sha256:arm7", "arm", Some("v7")),
        ];
        assert_eq!(choose(&entries, &amd64()).map(|d| d.digest.as_str()), Some("sha256:amd"));
        let arm = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(choose(&entries, &arm).map(|d| d.digest.as_str()), Some("sha256:arm"));
        let s390 = Platform { architecture: "s390x".into(), os: "linux".into(), variant: None };
        assert_eq!(choose(&entries, &s390), None);
    }
}
