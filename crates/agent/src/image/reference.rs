//! Image references normalised as upstream's (the docker reference grammar): `busybox` is
//! `docker.io/library/busybox:latest`.

/// A normalised image reference: `registry/repository` with a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host (`docker.io` when none is named).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    /// The digest (`sha256:...`).
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `raw`; `None` when it is not an image reference.
    pub fn parse(raw: &str) -> Option<Reference> {
        let raw = raw.trim();
        if raw.is_empty() || raw.chars().any(char::is_whitespace) {
            return None;
        }
        let (name, digest) = match raw.split_once('@') {
            Some((name, digest)) => {
                let (algorithm, hex) = digest.split_once(':')?;
                if algorithm.is_empty()
                    || hex.len() < 32
                    || !hex.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return None;
                }
                (name, Some(digest.to_string()))
            }
            None => (raw, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(name[last_slash + i + 1..].to_string())),
            None => (name, None),
        };
        if let Some(tag) = &tag
            && (tag.is_empty()
                || tag.len() > 128
                || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid_path = repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
        if !valid_path {
            return None;
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Some(Reference { registry, repository, tag, digest })
    }

    /// The repository with its registry: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Reference;

    fn norm(raw: &str) -> String {
        Reference::parse(raw).map(|r| r.to_string()).unwrap_or_else(|| "invalid".into())
    }

    #[test]
    fn short_names_are_docker_hub_library_images() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
    }

    #[test]
    fn registries_ports_and_digests() {
        assert_eq!(norm("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(norm("127.0.0.1:5000/team/app"), "127.0.0.1:5000/team/app:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{digest}")),
            format!("docker.io/library/busybox:1@{digest}")
        );
    }

    #[test]
    fn rejects_what_is_not_a_reference() {
        for bad in ["", "Busybox", "busy box", "a:", "a@sha256:xyz", "a//b"] {
            assert_eq!(norm(bad), "invalid", "{bad}");
        }
    }
}
