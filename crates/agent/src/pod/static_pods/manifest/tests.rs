use std::path::Path;

use super::*;

const WEB: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: server
    image: busybox:1
    command: [httpd, -f]
";

fn decoded(text: &str) -> Result<Pod, ManifestError> {
    decode(text.as_bytes(), Path::new("/etc/krust/manifests/web.yaml"), "Node-1")
}

#[test]
fn a_file_pod_gets_upstreams_defaults() {
    let pod = decoded(WEB).expect("decodes");
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("web-node-1"), "the name ends in the node's, lower case");
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let uid = meta.uid.clone().expect("a uid");
    assert_eq!(uid.len(), 32);
    assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()));
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(annotations[CONFIG_HASH], uid, "the hash is the uid");
    assert_eq!(annotations[CONFIG_SOURCE], "file");
    assert!(!annotations.contains_key(CONFIG_SEEN), "the folder sets when it saw the pod");
    let spec = pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some("Node-1"));
    let tolerations = spec.tolerations.unwrap_or_default();
    assert_eq!(tolerations.len(), 1);
    assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
    assert_eq!(tolerations[0].effect.as_deref(), Some("NoExecute"));
    assert_eq!(tolerations[0].key, None);
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    assert_eq!(meta.labels.clone().unwrap_or_default()["app"], "web");
}

#[test]
fn json_decodes_as_yaml_does() {
    let json = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "server", "image": "busybox:1", "command": ["httpd", "-f"]}]}}"#;
    assert_eq!(decoded(json), decoded(WEB));
}

#[test]
fn the_uid_follows_the_content_the_node_and_the_file() {
    let base = decoded(WEB).expect("decodes").metadata.uid;
    assert_eq!(decoded(WEB).expect("decodes").metadata.uid, base, "stable");
    let edited = decoded(&WEB.replace("busybox:1", "busybox:2")).expect("decodes").metadata.uid;
    assert_ne!(edited, base);
    let other_node = decode(WEB.as_bytes(), Path::new("/etc/krust/manifests/web.yaml"), "node-2")
        .expect("decodes")
        .metadata
        .uid;
    assert_ne!(other_node, base);
    let other_file = decode(WEB.as_bytes(), Path::new("/etc/krust/manifests/web2.yaml"), "Node-1")
        .expect("decodes")
        .metadata
        .uid;
    assert_ne!(other_file, base);
    let named = decoded(&WEB.replace("  name: web\n", "  name: web\n  uid: my-own-uid\n"))
        .expect("decodes");
    assert_eq!(named.metadata.uid.as_deref(), Some("my-own-uid"), "a uid in the file stays");
    assert_eq!(named.metadata.annotations.unwrap_or_default()[CONFIG_HASH], "my-own-uid");
}

#[test]
fn fnv_1a_128_matches_its_reference_values() {
    let hex = |data: &[u8]| {
        let mut h = Fnv128a::new();
        h.write(data);
        format!("{:032x}", h.0)
    };
    assert_eq!(hex(b""), "6c62272e07bb014262b821756295c58d");
    assert_eq!(hex(b"a"), "d228cb696f1a8caf78912b704e4a8964");
}

#[test]
fn a_matching_toleration_is_replaced_not_repeated() {
    let text = WEB.replace(
        "spec:\n",
        "spec:\n  tolerations:\n  - operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 5\n  - key: k\n    operator: Exists\n",
    );
    let tolerations = decoded(&text).expect("decodes").spec.unwrap_or_default().tolerations;
    let tolerations = tolerations.unwrap_or_default();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[0].toleration_seconds, None);
    assert_eq!(tolerations[1].key.as_deref(), Some("k"));
}

#[test]
fn files_that_are_no_usable_pod_say_why() {
    let cases: &[(&str, String, &str)] = &[
        ("not yaml", "kind: [".into(), "couldn't parse as pod"),
        ("no kind", "apiVersion: v1\nmetadata: {name: x}\n".into(), "Object 'Kind' is missing"),
        ("empty", String::new(), "Object 'Kind' is missing"),
        (
            "another kind",
            WEB.replace("kind: Pod", "kind: ConfigMap"),
            "the object is a ConfigMap of v1, not a v1 Pod",
        ),
        ("no name", WEB.replace("  name: web\n", ""), "invalid pod: name is needed for the pod"),
        (
            "a bad name",
            WEB.replace("name: web", "name: Web_1"),
            "invalid pod: metadata.name: Invalid value: \"Web_1-node-1\": a lowercase RFC 1123 subdomain",
        ),
        ("no containers", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n".into(), "invalid pod: spec.containers: Required value"),
        (
            "no image",
            WEB.replace("    image: busybox:1\n", ""),
            "invalid pod: spec.containers[0].image: Required value",
        ),
        (
            "a field of the wrong type",
            WEB.replace("command: [httpd, -f]", "command: httpd"),
            "couldn't parse as pod (invalid type",
        ),
        (
            "a service account",
            WEB.replace("spec:\n", "spec:\n  serviceAccountName: robot\n"),
            "static pods may not reference serviceaccounts",
        ),
        (
            "a secret volume",
            WEB.replace("spec:\n", "spec:\n  volumes:\n  - name: s\n    secret: {secretName: s}\n"),
            "static pods may not reference secrets",
        ),
        (
            "a config map in the environment",
            WEB.replace(
                "    command: [httpd, -f]\n",
                "    envFrom:\n    - configMapRef: {name: settings}\n",
            ),
            "static pods may not reference configmaps",
        ),
        (
            "a claim",
            WEB.replace(
                "spec:\n",
                "spec:\n  volumes:\n  - name: d\n    persistentVolumeClaim: {claimName: d}\n",
            ),
            "static pods may not reference persistentvolumeclaims",
        ),
        (
            "a projected token",
            WEB.replace(
                "spec:\n",
                "spec:\n  volumes:\n  - name: t\n    projected:\n      sources:\n      - serviceAccountToken: {path: token}\n",
            ),
            "static pods may not reference serviceaccounts (via projected volumes)",
        ),
    ];
    for (name, text, why) in cases {
        match decoded(text) {
            Ok(_) => panic!("{name}: decoded"),
            Err(e) => assert!(e.to_string().contains(why), "{name}: {e}"),
        }
    }
    let big = vec![b' '; (MAX_MANIFEST + 1) as usize];
    assert_eq!(decode(&big, Path::new("big"), "n"), Err(ManifestError::TooLarge));
}

#[test]
fn volumes_that_need_no_api_object_are_fine() {
    let text = WEB.replace(
        "spec:\n",
        "spec:\n  volumes:\n  - name: e\n    emptyDir: {}\n  - name: h\n    hostPath: {path: /tmp}\n  - name: d\n    projected:\n      sources:\n      - downwardAPI:\n          items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]\n",
    );
    assert!(decoded(&text).is_ok());
}
