//! The encoder against bytes derived by hand from the proto definitions, against the
//! decoder (`decode(encode(x)) == x`), and against an independent implementation (`k8s-pb`'s
//! prost structs read the bytes and write them again, unchanged).

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Value, json};

use super::encode::{encode_as, parse_go_duration};
use super::special::go_duration;
use super::{
    ListEncoder, ProtobufError, decode, encode_envelope, encode_list, encode_message,
    encode_object, encode_watch_event, encoded_len, json, schema, watch_event_frame,
};

/// The message of `object`, checked three ways: [`encoded_len`] agrees with its length, the
/// whole body decodes to `object` again, and `M` (prost) writes the same bytes back.
fn roundtrip<M: Message + Default>(object: &Value) -> Vec<u8> {
    let (api_version, kind) = type_meta(object);
    let message = encode_message(api_version, kind, object).expect("the object encodes");
    assert_eq!(encoded_len(api_version, kind, object), Ok(message.len()), "encoded_len");
    let body = encode_object(object).expect("the object encodes");
    assert_eq!(decode(&body).expect("the body decodes"), *object, "decode(encode(x)) == x");
    assert_eq!(encode_envelope(api_version, kind, &message), Ok(body), "encode_envelope");
    let prost = M::decode(message.as_slice()).expect("prost reads the message");
    assert_eq!(prost.encode_to_vec(), message, "prost writes the same bytes");
    message
}

/// The object's `apiVersion` and `kind`.
fn type_meta(object: &Value) -> (&str, &str) {
    let text = |name: &str| object[name].as_str().expect("type meta");
    (text("apiVersion"), text("kind"))
}

/// A pod with most of what differs between JSON and protobuf.
fn rich_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "generateName": "web-",
            "namespace": "default",
            "uid": "6f1c-4a2e",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2024-05-06T07:08:09Z",
            "deletionTimestamp": "2024-05-06T08:00:00Z",
            "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web", "tier": "front", "a.b/c": "d"},
            "annotations": {"note": "x\ny",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "web",
                "uid": "1234",
                "controller": true,
                "blockOwnerDeletion": true,
            }],
            "finalizers": ["example.com/keep"],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "v1",
                "time": "2024-05-06T07:08:09Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {".": {}}},
            }],
        },
        "spec": {
            "volumes": [
                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "config", "configMap": {"name": "cm", "defaultMode": 420,
                    "items": [{"key": "a", "path": "a.txt"}]}},
                {"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"secret": {"name": "s", "optional": true}},
                ]}},
            ],
            "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "command": ["sh", "-c", ""],
                "args": ["--port=8080"],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"containerPort": 9090, "hostPort": 0, "protocol": "UDP"},
                ],
                "env": [
                    {"name": "PLAIN", "value": "v"},
                    {"name": "FROM_CM", "valueFrom": {
                        "configMapKeyRef": {"name": "cm", "key": "k", "optional": false}}},
                    {"name": "LIMIT", "valueFrom": {"resourceFieldRef": {
                        "resource": "limits.memory", "divisor": "1Mi"}}},
                ],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1G"},
                },
                "volumeMounts": [{"name": "data", "readOnly": false, "mountPath": "/data"}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                        "httpHeaders": [{"name": "X-A", "value": "b"}]},
                    "initialDelaySeconds": 0,
                    "periodSeconds": 10,
                },
                "readinessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
                "startupProbe": {"exec": {"command": ["cat", "/ready"]}},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                "securityContext": {
                    "runAsUser": 1000,
                    "runAsGroup": -1,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
                "stdin": false,
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "serviceAccountName": "default",
            "nodeName": "node-1",
            "hostNetwork": false,
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchExpressions": [
                        {"key": "app", "operator": "In", "values": ["web"]}]},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }]}},
            "tolerations": [{
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }],
            "priority": 0,
            "overhead": {"cpu": "250m"},
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-06T07:09:00Z",
                    "lastProbeTime": null},
            ],
            "hostIP": "10.0.0.1",
            "podIP": "10.1.0.5",
            "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
            "startTime": "2024-05-06T07:08:10Z",
            "containerStatuses": [{
                "name": "nginx",
                "state": {"running": {"startedAt": "2024-05-06T07:08:30Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "startedAt": "2024-05-06T07:08:11Z", "finishedAt": "2024-05-06T07:08:29Z"}},
                "ready": true,
                "restartCount": 1,
                "image": "nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:abc",
                "started": true,
            }],
            "qosClass": "Burstable",
        },
    })
}

#[test]
fn a_config_map_is_written_byte_for_byte_as_its_proto_says() {
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "b"}, "data": {"k": "v"}, "immutable": true});
    // ConfigMap: metadata = 1 (ObjectMeta: name = 1, namespace = 3), data = 2 (map entries:
    // key = 1, value = 2), immutable = 4 (varint). Tag = number << 3 | wire type.
    let message = [
        0x0a, 6, 0x0a, 1, b'a', 0x1a, 1, b'b', // metadata
        0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v', // data {"k": "v"}
        0x20, 1, // immutable: true
    ];
    assert_eq!(encode_message("v1", "ConfigMap", &object), Ok(message.to_vec()));

    // k8s\0, then runtime.Unknown: typeMeta = 1 (apiVersion = 1, kind = 2), raw = 2,
    // contentEncoding = 3 and contentType = 4, empty, as Go writes them.
    let mut body = b"k8s\0".to_vec();
    body.extend([0x0a, 15, 0x0a, 2, b'v', b'1', 0x12, 9]);
    body.extend(b"ConfigMap");
    body.extend([0x12, 18]);
    body.extend(message);
    body.extend([0x1a, 0, 0x22, 0]);
    assert_eq!(encode_object(&object), Ok(body.clone()));

    // A watch frame: four bytes of big-endian length, then WatchEvent (type = 1, object = 2,
    // a RawExtension whose raw = 1 is the whole body), with no prefix of its own.
    let mut event = vec![0x0a, 5];
    event.extend(b"ADDED");
    event.extend([0x12, body.len() as u8 + 2, 0x0a, body.len() as u8]);
    event.extend(&body);
    let mut frame = (event.len() as u32).to_be_bytes().to_vec();
    frame.extend(event);
    assert_eq!(encode_watch_event("ADDED", &object), Ok(frame));
}

#[test]
fn times_int_or_strings_and_negative_numbers_are_written_as_go_writes_them() {
    let object = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"creationTimestamp": "1970-01-01T00:01:40Z"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": -1, "targetPort": "web"}]}});
    let message = [
        // metadata: creationTimestamp = 8, a Time: seconds = 1, nanos = 2 (written as 0).
        0x0a, 6, 0x42, 4, 0x08, 100, 0x10, 0, //
        // spec = 2: ports = 1, ServicePort: port = 3, targetPort = 4, an IntOrString with
        // all three of type = 1, intVal = 2 and strVal = 3; 8080 is the varint 0x90 0x3f.
        0x12, 37, //
        0x0a, 11, 0x18, 80, 0x22, 7, 0x08, 0, 0x10, 0x90, 0x3f, 0x1a, 0, //
        // port -1: an int32 is sign-extended to ten bytes.
        0x0a, 22, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, //
        0x22, 9, 0x08, 1, 0x10, 0, 0x1a, 3, b'w', b'e', b'b',
    ];
    assert_eq!(encode_message("v1", "Service", &object), Ok(message.to_vec()));
}

#[test]
fn a_rich_pod_round_trips() {
    let pod = rich_pod();
    let message = roundtrip::<core::Pod>(&pod);

    // What prost reads is the pod: spot checks of the special types.
    let read = core::Pod::decode(message.as_slice()).expect("prost reads the pod");
    let metadata = read.metadata.expect("metadata");
    assert_eq!(metadata.creation_timestamp.and_then(|t| t.seconds), Some(1_714_979_289));
    assert_eq!(
        metadata.managed_fields[0].fields_v1.as_ref().and_then(|f| f.raw.clone()),
        Some(br#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{".":{}}}"#.to_vec())
    );
    let container = &read.spec.expect("spec").containers[0];
    let limits = &container.resources.as_ref().expect("resources").limits;
    assert_eq!(limits["memory"].string.as_deref(), Some("128Mi"));
    let probe = container.liveness_probe.as_ref().and_then(|p| p.handler.as_ref());
    let port = probe.and_then(|h| h.http_get.as_ref()).and_then(|g| g.port.as_ref());
    assert_eq!(port.and_then(|p| p.str_val.as_deref()), Some("http"));
    assert_eq!(port.and_then(|p| p.r#type), Some(1));
}

#[test]
fn a_node_with_status_round_trips() {
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"},
            "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24"],
            "providerID": "krust://node-1",
            "taints": [{"key": "k", "value": "v", "effect": "NoSchedule",
                "timeAdded": "2024-01-01T00:00:01Z"}]},
        "status": {
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "1900m", "memory": "7Gi", "pods": "110"},
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": "2024-01-01T00:05:00Z",
                "lastTransitionTime": "2024-01-01T00:00:10Z",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "Hostname", "address": "node-1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "u", "bootID": "b",
                "kernelVersion": "6.1", "osImage": "Debian",
                "containerRuntimeVersion": "containerd://2",
                "kubeletVersion": "v1.35.0", "kubeProxyVersion": "v1.35.0",
                "operatingSystem": "linux", "architecture": "amd64"},
            "images": [{"names": ["nginx:1.27"], "sizeBytes": 67_000_000_i64}],
            "volumesInUse": ["kubernetes.io/csi/x"],
        },
    });
    roundtrip::<core::Node>(&node);
}

#[test]
fn a_deployment_round_trips() {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 2,
            "creationTimestamp": null, "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx",
                    "resources": {"requests": {"cpu": "100m"}}}]},
            },
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 0,
            "conditions": [{"type": "Available", "status": "True",
                "lastUpdateTime": "2024-01-01T00:00:00Z",
                "lastTransitionTime": "2024-01-01T00:00:00Z",
                "reason": "MinimumReplicasAvailable"}],
        },
    });
    roundtrip::<apps::Deployment>(&deployment);
}

#[test]
fn config_map_binary_data_and_secret_data_are_raw_bytes() {
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "x"},
        "data": {"b": "2", "a": "x\ny"},
        "binaryData": {"bin": "AAEC/w==", "text": "aGk="}});
    let message = roundtrip::<core::ConfigMap>(&config_map);
    let read = core::ConfigMap::decode(message.as_slice()).expect("prost reads it");
    assert_eq!(read.binary_data["bin"], [0, 1, 2, 255]);
    assert_eq!(read.binary_data["text"], b"hi");

    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "x"}, "data": {"a": "Yg=="}, "type": "Opaque"});
    roundtrip::<core::Secret>(&secret);

    let broken = json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "not base64!"}});
    let error = encode_object(&broken).expect_err("invalid base64");
    assert!(error.to_string().starts_with("cannot encode Secret (v1) as protobuf: data.a: "));
}

#[test]
fn a_service_round_trips() {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": "x"},
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                    "nodePort": 30080},
                {"name": "web", "protocol": "TCP", "port": 443, "targetPort": "https"},
            ],
            "selector": {"app": "svc"},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "type": "NodePort",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    });
    roundtrip::<core::Service>(&service);
}

#[test]
fn raw_extensions_carry_their_json() {
    let revision = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "web-5d8f", "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "u", "controller": true}]},
        "data": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
            "$patch": "replace", "n": [1, 2.5, null, true]}},
        "revision": 3,
    });
    let message = roundtrip::<apps::ControllerRevision>(&revision);
    let read = apps::ControllerRevision::decode(message.as_slice()).expect("prost reads it");
    let raw = read.data.and_then(|d| d.raw).expect("data");
    assert_eq!(serde_json::from_slice::<Value>(&raw).ok().as_ref(), Some(&revision["data"]));

    // A null extension is an empty one, which reads as null again.
    let empty = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "r"}, "data": null, "revision": 1});
    roundtrip::<apps::ControllerRevision>(&empty);
}

#[test]
fn events_and_leases_keep_micro_times() {
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "x"},
        "involvedObject": {"kind": "Pod", "name": "p", "uid": "123",
            "fieldPath": "spec.containers{c}"},
        "reason": "Started",
        "message": "Started container c",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2023-11-14T22:13:20Z",
        "lastTimestamp": "2023-11-14T22:13:21Z",
        "count": 2,
        "type": "Normal",
        "eventTime": "2023-11-14T22:13:20.123456Z",
        "series": {"count": 2, "lastObservedTime": "2023-11-14T22:13:21.000001Z"},
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
    });
    roundtrip::<core::Event>(&event);

    let events_v1 = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e2", "namespace": "x"},
        "eventTime": "1970-01-01T00:00:00.000000Z",
        "series": {"count": 2, "lastObservedTime": null},
        "reportingController": "kubelet",
        "regarding": {"kind": "Node", "name": "node-1"},
        "note": "n",
    });
    roundtrip::<k8s_pb::api::events::v1::Event>(&events_v1);

    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1",
                "uid": "n"}]},
        "spec": {
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 40,
            "acquireTime": "2024-05-06T07:08:09.000000Z",
            "renewTime": "2024-05-06T07:18:09.654321Z",
            "leaseTransitions": 0,
        },
    });
    let message = roundtrip::<coordination::Lease>(&lease);
    let read = coordination::Lease::decode(message.as_slice()).expect("prost reads it");
    let renew = read.spec.and_then(|s| s.renew_time).expect("renewTime");
    assert_eq!((renew.seconds, renew.nanos), (Some(1_714_979_889), Some(654_321_000)));
}

#[test]
fn times_are_written_at_their_precision() {
    let lease = |renew: &str, created: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l", "creationTimestamp": created},
            "spec": {"renewTime": renew}})
    };
    // A Time keeps whole seconds and a MicroTime microseconds, as Go's ProtoTime; offsets
    // are read as the instant they stand for.
    let body = encode_object(&lease("2024-01-01T01:00:00.1234567+01:00", "2024-01-01T00:00:00.9Z"))
        .expect("the lease encodes");
    assert_eq!(decode(&body), Ok(lease("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00Z")));
    // Go's zero time is written as an empty message, which reads as null.
    let body = encode_object(&lease("0001-01-01T00:00:00.000000Z", "0001-01-01T00:00:00Z"))
        .expect("the lease encodes");
    let decoded = decode(&body).expect("the lease decodes");
    assert_eq!(decoded["metadata"]["creationTimestamp"], Value::Null);
    assert_eq!(decoded["spec"]["renewTime"], Value::Null);

    let error = encode_object(&lease("yesterday", "2024-01-01T00:00:00Z")).expect_err("bad time");
    assert!(error.to_string().contains("spec.renewTime: invalid time \"yesterday\""), "{error}");
}

#[test]
fn status_errors_round_trip_under_v1_and_meta() {
    let status = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1",
        "reason": "Invalid",
        "details": {"name": "web", "group": "apps", "kind": "Deployment",
            "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: -1",
                "field": "spec.replicas"}],
            "retryAfterSeconds": 1},
        "code": 422,
    });
    roundtrip::<meta::Status>(&status);
    let mut meta_status = status.clone();
    meta_status["apiVersion"] = json!("meta.k8s.io/v1");
    roundtrip::<meta::Status>(&meta_status);
    // Status is not a kind of the other groups.
    let mut apps_status = status;
    apps_status["apiVersion"] = json!("apps/v1");
    assert!(encode_object(&apps_status).is_err_and(|e| e.is_unsupported_kind()));
}

#[test]
fn inlined_and_renamed_fields_and_string_lists() {
    let webhooks = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "w"},
        "webhooks": [{
            "name": "w.example.com",
            "clientConfig": {"service": {"namespace": "x", "name": "svc", "port": 443},
                "caBundle": "Y2E="},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "scope": "*"}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "matchConditions": [{"name": "n", "expression": "true"}],
        }],
    });
    roundtrip::<k8s_pb::api::admissionregistration::v1::ValidatingWebhookConfiguration>(&webhooks);

    use k8s_pb::api::authentication::v1 as authn;
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": "t", "audiences": ["api"]},
        "status": {"authenticated": true, "user": {"username": "u", "uid": "1",
            "groups": ["system:authenticated"], "extra": {"scopes": ["a", "b"], "none": []}},
            "audiences": ["api"]},
    });
    // An empty string list is an empty message, read back as an empty list.
    let body = encode_object(&review).expect("the review encodes");
    assert_eq!(decode(&body).as_ref(), Ok(&review));
    let message = encode_message("authentication.k8s.io/v1", "TokenReview", &review)
        .expect("the review encodes");
    let read = authn::TokenReview::decode(message.as_slice()).expect("prost reads it");
    let user = read.status.and_then(|s| s.user).expect("user");
    assert_eq!(user.extra["scopes"].items, ["a", "b"]);
}

#[test]
fn durations_are_nanoseconds() {
    let pool = schema::pool().expect("schemas");
    let descriptor = pool
        .get_message_by_name("metrics.pkg.apis.metrics.v1beta1.PodMetrics")
        .expect("PodMetrics");
    for text in ["0s", "1.5s", "1m30s", "1h0m0s", "250ms", "-1m0s", "1.5µs", "1h1m1.000000001s"] {
        let object = json!({"timestamp": "2024-01-01T00:00:00Z", "window": text,
            "containers": [{"name": "c", "usage": {"cpu": "1m", "memory": "2Ki"}}]});
        let Value::Object(members) = &object else { unreachable!() };
        let message = encode_as(&descriptor, members).expect("the metrics encode");
        let decoded = json::decode_message(&descriptor, &message).expect("they decode");
        assert_eq!(Value::Object(decoded), object, "{text}");
    }
    let cases: [(&str, i64); 10] = [
        ("0", 0),
        ("+5s", 5_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("2h45m", 9_900_000_000_000),
        (".5ms", 500_000),
        ("1us", 1_000),
        ("1μs", 1_000),
        ("3ns", 3),
        ("-1.25s", -1_250_000_000),
        ("2562047h47m16.854775807s", i64::MAX),
    ];
    for (text, nanos) in cases {
        assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        assert_eq!(parse_go_duration(&go_duration(nanos)), Ok(nanos), "{text}");
    }
    for bad in ["", "1", "s", "1x", "-", ".s", "2562047h47m16.854775808s"] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn members_without_a_field_are_dropped() {
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "futureField": {"x": 1}}, "data": {"a": "b"}, "extra": true});
    let body = encode_object(&object).expect("the object encodes");
    assert_eq!(
        decode(&body),
        Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "b"}}))
    );
}

#[test]
fn values_of_the_wrong_type_and_unknown_kinds_are_errors() {
    let wrong = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [
        {"name": "a"}, {"name": "b", "ports": [{"containerPort": "80"}]}]}});
    assert_eq!(
        encode_object(&wrong).map_err(|e| e.to_string()),
        Err("cannot encode Pod (v1) as protobuf: spec.containers[1].ports[0].containerPort: \
            expected an integer, found a string"
            .into())
    );
    let too_big = json!({"apiVersion": "v1", "kind": "Service",
        "spec": {"ports": [{"port": 4_294_967_296_i64}]}});
    assert!(encode_object(&too_big).is_err_and(|e| e.to_string().ends_with("is out of range")));

    let table = json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table", "rows": []});
    assert!(encode_object(&table).is_err_and(|e| e.is_unsupported_kind()));
    let custom = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
    assert_eq!(
        encode_object(&custom),
        Err(ProtobufError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    let untyped = json!({"metadata": {"name": "x"}});
    assert!(matches!(encode_object(&untyped), Err(ProtobufError::Encode { .. })));
    assert!(encode_message("v1", "ConfigMap", &json!([1])).is_err());
}

/// Config maps of a list, as the server serves them.
fn config_maps() -> Vec<Value> {
    (0..3)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("c{i}"), "namespace": "x",
                    "resourceVersion": format!("{}", 10 + i),
                    "creationTimestamp": "2024-01-01T00:00:00Z"},
                "data": {"key": "v".repeat(i * 100)}})
        })
        .collect()
}

#[test]
fn a_list_streams_from_its_items_messages() {
    let items = config_maps();
    let metadata = json!({"resourceVersion": "12", "continue": "abc", "remainingItemCount": 5});
    let lengths: Vec<usize> =
        items.iter().map(|item| encoded_len("v1", "ConfigMap", item).expect("a length")).collect();
    let mut list =
        ListEncoder::new("v1", "ConfigMapList", &metadata, lengths.iter().copied()).expect("list");
    let mut body = list.head().to_vec();
    for item in &items {
        let message = encode_message("v1", "ConfigMap", item).expect("the item encodes");
        body.extend(list.item_header(message.len()).expect("the declared length"));
        body.extend(message);
    }
    let expected_len = list.encoded_len();
    body.extend(list.finish().expect("every item written"));
    assert_eq!(body.len(), expected_len);

    // The same bytes as the whole list encoded at once (items' apiVersion and kind are not
    // fields, as upstream's protobuf lists carry none).
    let whole = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": metadata,
        "items": items});
    assert_eq!(encode_object(&whole).as_ref(), Ok(&body));
    let messages: Vec<Vec<u8>> = items
        .iter()
        .map(|item| encode_message("v1", "ConfigMap", item).expect("the item encodes"))
        .collect();
    assert_eq!(encode_list("v1", "ConfigMapList", &metadata, &messages).as_ref(), Ok(&body));

    // The reflection decoder reads it, items without their type meta.
    let mut expected = whole.clone();
    for item in expected["items"].as_array_mut().into_iter().flatten() {
        if let Some(item) = item.as_object_mut() {
            item.retain(|k, _| k != "apiVersion" && k != "kind");
        }
    }
    assert_eq!(decode(&body), Ok(expected));

    // So does prost, from the envelope on.
    let unknown = Unknown::decode(&body[4..]).expect("the envelope");
    assert_eq!(unknown.content_type.as_deref(), Some(""));
    let list = core::ConfigMapList::decode(unknown.raw.as_deref().unwrap_or_default())
        .expect("prost reads the list");
    assert_eq!(list.items.len(), 3);
    assert_eq!(list.metadata.and_then(|m| m.remaining_item_count), Some(5));
}

#[test]
fn a_list_checks_its_items_against_the_declared_lengths() {
    let empty = encode_list::<Vec<u8>>("v1", "PodList", &Value::Null, &[]).expect("empty list");
    assert_eq!(decode(&empty), Ok(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}})));

    let mut list = ListEncoder::new("v1", "ConfigMapList", &json!({}), [3, 200]).expect("list");
    assert!(list.item_header(4).is_err(), "not the declared length");
    assert!(list.item_header(3).is_ok());
    let early = list.clone().finish();
    assert!(early.is_err_and(|e| e.to_string().contains("2 items were declared, 1 written")));
    assert_eq!(list.item_header(200).map(|h| h.len()), Ok(3), "tag and a two-byte length");
    assert!(list.item_header(1).is_err(), "more items than declared");
    assert!(list.finish().is_ok());

    assert!(ListEncoder::new("v1", "ConfigMap", &json!({}), []).is_err(), "not a list kind");
    assert!(
        ListEncoder::new("v1", "WidgetList", &json!({}), [])
            .is_err_and(|e| e.is_unsupported_kind())
    );
}

#[test]
fn watch_events_frame_a_whole_body() {
    let pod = rich_pod();
    let frame = encode_watch_event("MODIFIED", &pod).expect("the event encodes");
    let length = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(length, frame.len() - 4);
    // The event itself is a bare WatchEvent message: no prefix, no envelope.
    let event = meta::WatchEvent::decode(&frame[4..]).expect("a WatchEvent");
    assert_eq!(event.r#type.as_deref(), Some("MODIFIED"));
    let raw = event.object.and_then(|o| o.raw).expect("the object");
    assert!(raw.starts_with(b"k8s\0"));
    assert_eq!(decode(&raw), Ok(pod.clone()));
    assert_eq!(watch_event_frame("MODIFIED", &raw), Ok(frame));

    // Errors are Status objects, as upstream sends them.
    let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "message": "too old resource version: 1 (5)", "reason": "Expired",
        "code": 410});
    let frame = encode_watch_event("ERROR", &status).expect("the event encodes");
    let event = meta::WatchEvent::decode(&frame[4..]).expect("a WatchEvent");
    assert_eq!(decode(&event.object.and_then(|o| o.raw).unwrap_or_default()), Ok(status));

    // The reflection decoder reads the event too, its object decoded from the embedded body.
    let event = encode_message(
        "meta.k8s.io/v1",
        "WatchEvent",
        &json!({"type": "ADDED", "object": {"a": 1}}),
    )
    .expect("a WatchEvent message");
    let descriptor = schema::message("v1", "WatchEvent").expect("WatchEvent");
    assert_eq!(
        json::decode_message(&descriptor, &event).map(Value::Object),
        Ok(json!({"type": "ADDED", "object": {"a": 1}}))
    );
}

/// `value` with the members of every object in reverse order, but for raw JSON (`fieldsV1`),
/// whose text protobuf carries as it is.
fn reversed(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .rev()
                .map(|(k, v)| (k.clone(), if k == "fieldsV1" { v.clone() } else { reversed(v) }))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

#[test]
fn members_in_any_order_are_written_in_field_order() {
    // Every object of the rich pod reversed: out-of-order fields at each depth, maps with
    // keys in descending order, and members of inlined messages (a probe's handler, a
    // volume's source) mixed with their parent's.
    let pod = rich_pod();
    let (api_version, kind) = type_meta(&pod);
    let message = roundtrip::<core::Pod>(&pod);
    assert_eq!(encode_message(api_version, kind, &reversed(&pod)), Ok(message));
    // Through the encoder lists use, from text with escapes in names and values.
    let encoder = super::MessageEncoder::new("v1", "ConfigMap").expect("an encoder");
    let text = br#"{"data":{"b":"2","\u0061":"1"},"metadata":{"name":"c\u006d","namespace":"ns"},"kind":"ConfigMap","apiVersion":"v1"}"#;
    let expected = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "ns"}, "data": {"a": "1", "b": "2"}});
    assert_eq!(encoder.encode(text), encode_message("v1", "ConfigMap", &expected));
    // Map entries of 128 bytes or more (their length takes two bytes), out of order.
    let long = "v".repeat(300);
    let text = format!(
        r#"{{"metadata":{{"name":"cm","annotations":{{"z":"{long}","b":"{long}","a":"x"}}}}}}"#
    );
    let expected = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "annotations": {"a": "x", "b": long, "z": long}}});
    assert_eq!(encoder.encode(text.as_bytes()), encode_message("v1", "ConfigMap", &expected));
    let read =
        core::ConfigMap::decode(encoder.encode(text.as_bytes()).expect("encodes").as_slice())
            .expect("prost reads it");
    assert_eq!(
        prost::Message::encode_to_vec(&read),
        encoder.encode(text.as_bytes()).expect("encodes")
    );
    assert!(encoder.encode(b"{\"data\": ").is_err_and(|e| e.to_string().contains("invalid JSON")));
    assert!(encoder.encode(b"[]").is_err_and(|e| e.to_string().contains("not a JSON object")));
}
