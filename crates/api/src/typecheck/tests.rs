use serde_json::{Value, json};

use super::*;

/// The message of the first type error of `obj`, or `None` when its types are right.
fn problem(api_version: &str, kind: &str, obj: Value) -> Option<(String, String)> {
    check(api_version, kind, &obj).err().map(|e| (e.path, e.message))
}

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

#[test]
fn bodies_with_wrong_types_are_refused_as_upstream_words_it() {
    let cases: &[(&str, &str, &str, Value, &str, &str)] = &[
        (
            "a number in a config map's data",
            "v1",
            "ConfigMap",
            config_map(json!({"a": "x", "b": 1})),
            "data.b",
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string",
        ),
        (
            "a string for a config map's data",
            "v1",
            "ConfigMap",
            config_map(json!("oops")),
            "data",
            "json: cannot unmarshal string into Go struct field ConfigMap.data of type map[string]string",
        ),
        (
            "replicas as a word",
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}}),
            "spec.replicas",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            "replicas beyond int32",
            "apps/v1",
            "Deployment",
            json!({"spec": {"replicas": 3_000_000_000u64}}),
            "spec.replicas",
            "json: cannot unmarshal number 3000000000 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            "replicas as a fraction",
            "apps/v1",
            "Deployment",
            json!({"spec": {"replicas": 1.5}}),
            "spec.replicas",
            "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            "a resourceVersion as a number",
            "v1",
            "ConfigMap",
            json!({"metadata": {"name": "c", "resourceVersion": 12}}),
            "metadata.resourceVersion",
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.resourceVersion of type string",
        ),
        (
            "an image as a number deep in a pod template, with the list index in the path only",
            "apps/v1",
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "nginx"},
                {"name": "b", "image": 7},
            ]}}}}),
            "spec.template.spec.containers[1].image",
            "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string",
        ),
        (
            "an object where a list belongs",
            "v1",
            "Pod",
            json!({"spec": {"containers": {"name": "a"}}}),
            "spec.containers",
            "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
        ),
        (
            "a string where a message belongs",
            "v1",
            "Pod",
            json!({"spec": "nothing"}),
            "spec",
            "json: cannot unmarshal string into Go struct field Pod.spec of type v1.PodSpec",
        ),
        (
            "secret data that is not base64",
            "v1",
            "Secret",
            json!({"data": {"good": "aGVsbG8=", "bad": "not base64!"}}),
            "data.bad",
            "illegal base64 data at input byte 3",
        ),
        (
            "a target port that is neither a number nor a string",
            "v1",
            "Service",
            json!({"spec": {"ports": [{"port": 80, "targetPort": true}]}}),
            "spec.ports[0].targetPort",
            "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32",
        ),
        (
            "a malformed quantity",
            "v1",
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "lots"}}}]}}),
            "spec.containers[0].resources.limits.cpu",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "a time that is not RFC 3339",
            "v1",
            "ConfigMap",
            json!({"metadata": {"creationTimestamp": "2024/01/02"}}),
            "metadata.creationTimestamp",
            "parsing time \"2024/01/02\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"/01/02\" as \"-\"",
        ),
        (
            "a time as a number",
            "v1",
            "ConfigMap",
            json!({"metadata": {"creationTimestamp": 5}}),
            "metadata.creationTimestamp",
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string",
        ),
        (
            "a kind that is not a string",
            "v1",
            "ConfigMap",
            json!({"kind": 1}),
            "kind",
            "json: cannot unmarshal number into Go struct field ConfigMap.kind of type string",
        ),
        (
            "a label value that is not a string",
            "v1",
            "ConfigMap",
            json!({"metadata": {"labels": {"a": false}}}),
            "metadata.labels.a",
            "json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.labels of type string",
        ),
        (
            "immutable as a string",
            "v1",
            "ConfigMap",
            json!({"immutable": "yes"}),
            "immutable",
            "json: cannot unmarshal string into Go struct field ConfigMap.immutable of type bool",
        ),
    ];
    for (case, api_version, kind, obj, path, message) in cases {
        let expected = Some((path.to_string(), message.to_string()));
        assert_eq!(problem(api_version, kind, obj.clone()), expected, "{case}");
    }
}

#[test]
fn bodies_with_right_types_pass() {
    let cases: &[(&str, &str, &str, Value)] = &[
        (
            "a deployment as kubectl sends it",
            "apps/v1",
            "Deployment",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": null,
                             "annotations": {"a": "b"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "web", "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {"limits": {"cpu": "500m", "memory": 128e6},
                                          "requests": {"cpu": 0.5, "memory": "64Mi"}},
                            "livenessProbe": {"httpGet": {"port": "http", "path": "/"}},
                        }], "terminationGracePeriodSeconds": 30},
                    },
                },
                "status": {"replicas": 2, "conditions": [
                    {"type": "Available", "status": "True",
                     "lastTransitionTime": "2024-02-29T10:00:00Z",
                     "lastUpdateTime": "2024-02-29T10:00:00.123456+02:00"},
                ]},
            }),
        ),
        (
            "a secret with base64 data across lines and string data",
            "v1",
            "Secret",
            json!({"data": {"a": "aGVs\nbG8=", "b": "", "c": null}, "stringData": {"d": "plain"}}),
        ),
        (
            "nulls anywhere",
            "v1",
            "ConfigMap",
            json!({"data": {"a": null}, "binaryData": null, "metadata": {"labels": null}}),
        ),
        (
            "unknown members, left to field validation",
            "v1",
            "ConfigMap",
            json!({"data": {}, "extra": 5, "metadata": {"bogus": [1]}}),
        ),
        (
            "managed fields and raw extensions holding anything",
            "v1",
            "ConfigMap",
            json!({"metadata": {"managedFields": [{"manager": "kubectl", "operation": "Apply",
                "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}}}}]}}),
        ),
        (
            "an event with a micro time and a count",
            "events.k8s.io/v1",
            "Event",
            json!({"eventTime": "2024-01-01T00:00:00.000001Z", "deprecatedCount": 3}),
        ),
        ("a kind without a schema", "example.com/v1", "Widget", json!({"spec": {"x": 1}})),
    ];
    for (case, api_version, kind, obj) in cases {
        assert_eq!(problem(api_version, kind, obj.clone()), None, "{case}");
    }
}

#[test]
fn base64_errors_are_at_the_offset_go_reports() {
    let cases: &[(&str, &str, Option<usize>)] = &[
        ("padded", "aGVsbG8=", None),
        ("two padding characters", "aGk=\n", None),
        ("empty", "", None),
        ("a bad character", "aGV$bG8=", Some(3)),
        ("missing padding", "aGVsbG8", Some(4)),
        ("one character of a quantum", "aGVsb", Some(4)),
        ("padding too early", "a===", Some(1)),
        ("a single padding where two are needed", "aG=", Some(3)),
        ("trailing garbage after padding", "aGk=aGk=", Some(4)),
        ("non-ASCII", "aGé=", Some(2)),
    ];
    for (case, data, expected) in cases {
        assert_eq!(base64_error(data.as_bytes()), *expected, "{case}");
    }
}

#[test]
fn quantities_follow_upstream_syntax() {
    let cases: &[(&str, Option<QuantityError>)] = &[
        ("1", None),
        ("500m", None),
        ("1.5Gi", None),
        ("-1", None),
        (".5", None),
        ("1e3", None),
        ("1E-3", None),
        ("", Some(QuantityError::Format)),
        ("lots", Some(QuantityError::Format)),
        ("1 Gi", Some(QuantityError::Format)),
        ("1Gb", Some(QuantityError::Format)),
        ("1Zi", Some(QuantityError::Format)),
        ("1iK", Some(QuantityError::Suffix)),
        ("1e", Some(QuantityError::Suffix)),
        (".", Some(QuantityError::Numeric)),
    ];
    for (text, expected) in cases {
        assert_eq!(quantity_error(text), *expected, "{text:?}");
    }
}

#[test]
fn times_and_durations_are_read_as_go_reads_them() {
    assert_eq!(time_error("2024-02-29T23:59:59Z", false), None);
    assert_eq!(time_error("2024-02-29T23:59:59.5-07:00", false), None);
    assert_eq!(
        time_error("2023-02-29T00:00:00Z", false).as_deref(),
        Some("parsing time \"2023-02-29T00:00:00Z\": day out of range")
    );
    assert_eq!(
        time_error("2024-13-01T00:00:00Z", false).as_deref(),
        Some("parsing time \"2024-13-01T00:00:00Z\": month out of range")
    );
    assert_eq!(
        time_error("2024-01-01T00:00:00", false).as_deref(),
        Some(
            "parsing time \"2024-01-01T00:00:00\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"\" as \"Z07:00\""
        )
    );
    assert_eq!(
        time_error("2024-01-01T00:00:00Zjunk", false).as_deref(),
        Some("parsing time \"2024-01-01T00:00:00Zjunk\": extra text: \"junk\"")
    );
    assert_eq!(duration_error("1h30m"), None);
    assert_eq!(duration_error("1.5s"), None);
    assert_eq!(duration_error("0"), None);
    assert_eq!(duration_error("abc").as_deref(), Some("time: invalid duration \"abc\""));
    assert_eq!(duration_error("5").as_deref(), Some("time: missing unit in duration \"5\""));
    assert_eq!(
        duration_error("5x").as_deref(),
        Some("time: unknown unit \"x\" in duration \"5x\"")
    );
}

#[test]
fn a_huge_invalid_value_is_quoted_only_in_part() {
    let huge = "9".repeat(3 * 1024 * 1024);
    let error = check("v1", "ConfigMap", &json!({"metadata": {"creationTimestamp": huge}}))
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(error.len() < 1024, "{} bytes", error.len());
    assert!(error.contains(crate::validation::TRUNCATED), "{error}");
}
