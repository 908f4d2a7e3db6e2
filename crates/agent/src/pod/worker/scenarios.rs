//! A pod's worker driven end to end without root: the kernel is a recording [`Host`], the
//! containers are [`RecordingContainers`], and the API is a small fake on loopback that
//! keeps the status patches, events and deletions the worker sends.
//!
//! [`Host`]: crate::host::Host

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::host::recording::Recording;
use crate::image::{Blobs, ImageStore};
use crate::runtime::recording::{Call, RecordingContainers};

const UID: &str = "7d3e2a10-0000-4000-8000-00000000000a";

/// What the fake API was sent.
#[derive(Default)]
struct Sent {
    /// The status patches, in order.
    statuses: Vec<Value>,
    /// The reasons of the events.
    events: Vec<String>,
    /// The pods deleted, by name.
    deleted: Vec<String>,
}

/// An API server that answers the worker's writes and keeps them.
async fn fake_api() -> (kube::Client, Arc<Mutex<Sent>>) {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("an address");
    let kept = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            let service = hyper::service::service_fn(move |request| answer(request, kept.clone()));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let url = format!("http://{address}").parse().expect("a URL");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("a client");
    (client, sent)
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    sent: Arc<Mutex<Sent>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop", "uid": UID}});
    let (status, reply) = {
        let mut sent = sent.lock().expect("not poisoned");
        match (method.as_str(), path.as_str()) {
            ("PATCH", p) if p.ends_with("/pods/web/status") => {
                sent.statuses.push(body["status"].clone());
                (StatusCode::OK, pod)
            }
            ("POST" | "PATCH" | "PUT", p) if p.contains("/events") => {
                sent.events.extend(body["reason"].as_str().map(str::to_string));
                (StatusCode::CREATED, body)
            }
            ("DELETE", p) if p.ends_with("/pods/web") => {
                sent.deleted.push("web".into());
                (StatusCode::OK, pod)
            }
            _ => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ),
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A node's agent over `data`, with `busybox` in its image store.
fn agent(
    data: &Path,
    client: kube::Client,
    containers: Arc<RecordingContainers>,
    host: Arc<Recording>,
) -> Arc<Agent> {
    let images = ImageStore::open(&data.join("images")).expect("an image store");
    let config = data.join("config.json");
    fs::write(&config, br#"{"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}}"#).expect("a config");
    let names = vec!["docker.io/library/busybox:latest".to_string()];
    images
        .add(&Blobs { names, repo_digest: None, config: &config, layers: vec![] })
        .expect("added");
    let exe = PathBuf::from("/proc/self/exe");
    Arc::new(Agent {
        client: client.clone(),
        options: crate::Options::example(data),
        runtime: runtime::Runtime {
            runtime: runtime::oci::OciRuntime::Embedded { exe: exe.clone() },
            root: data.join("runtime"),
            shim: exe,
        },
        containers,
        host,
        images,
        events: crate::events::Recorder::start(client, "n1".into()),
        registry: crate::image::registry::Client::new(Default::default())
            .expect("a registry client"),
        pull_locks: std::sync::Mutex::default(),
        pods_dir: data.join("pods"),
        logs_dir: data.join("logs"),
        seccomp_root: data.join("seccomp"),
        seccomp_host: runtime::seccomp::Host::current(),
        allocatable: (4000, 8 << 30),
        pods_share: resources::PodsShare { cpu_millis: 4000, memory_limit: 8 << 30 },
        lowest_oom_score_adj: -999,
        sandbox_setups: tokio::sync::Semaphore::new(4),
    })
}

/// Pod `shop/web`, bound to `n1`, with `spec` over one container `c` of busybox.
fn pod(spec: Value) -> Pod {
    let mut base = json!({
        "nodeName": "n1",
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent"}],
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "uid": UID},
        "spec": base,
    }))
    .expect("a pod")
}

/// A worker running for `pod`, and what it was made of.
struct Run {
    containers: Arc<RecordingContainers>,
    host: Arc<Recording>,
    sent: Arc<Mutex<Sent>>,
    updates: watch::Sender<Option<Arc<Pod>>>,
    worker: tokio::task::JoinHandle<()>,
    data: tempfile::TempDir,
}

impl Run {
    async fn start(pod: Pod) -> Run {
        let data = tempfile::tempdir().expect("tempdir");
        let (client, sent) = fake_api().await;
        let (containers, host) = (Arc::new(RecordingContainers::new()), Arc::new(Recording::new()));
        let agent = agent(data.path(), client, Arc::clone(&containers), Arc::clone(&host));
        let (updates, receiver) = watch::channel(Some(Arc::new(pod)));
        let worker = tokio::spawn(Worker::new(agent, UID.into()).run(receiver));
        Run { containers, host, sent, updates, worker, data }
    }

    fn bundle(&self, container: &str, attempt: u32) -> PathBuf {
        self.data
            .path()
            .join("pods")
            .join(UID)
            .join("containers")
            .join(container)
            .join(attempt.to_string())
    }

    /// Waits (up to 10 s) for a status patch that `wanted` accepts; returns it.
    async fn status(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let found = self
                .sent
                .lock()
                .expect("not poisoned")
                .statuses
                .iter()
                .rev()
                .find(|s| wanted(s))
                .cloned();
            if let Some(status) = found {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let statuses = self.sent.lock().expect("not poisoned").statuses.clone();
        panic!("no status with {what}; sent: {statuses:#?}")
    }

    fn events(&self) -> Vec<String> {
        self.sent.lock().expect("not poisoned").events.clone()
    }
}

fn container_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["containerStatuses"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_pod_runs_in_its_sandbox_and_says_so() {
    let run = Run::start(pod(json!({}))).await;
    let status = run.status("the container running", |s| s["phase"] == "Running").await;
    let c = container_status(&status, "c");
    assert!(c["state"]["running"]["startedAt"].is_string(), "{c:#}");
    assert_eq!((c["ready"].as_bool(), c["started"].as_bool()), (Some(true), Some(true)));
    assert_eq!(c["restartCount"], 0);
    assert_eq!(status["podIP"], "10.42.0.2");
    assert_eq!(status["qosClass"], "BestEffort");
    let conditions: BTreeMap<&str, &str> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["type"].as_str()?, c["status"].as_str()?)))
        .collect();
    assert_eq!(conditions.get("Ready"), Some(&"True"), "{conditions:?}");
    assert_eq!(conditions.get("PodReadyToStartContainers"), Some(&"True"));
    assert_eq!(run.containers.calls(), [Call::Start(format!("{}-c-0", &UID[..13]))]);
    // The sandbox: its namespaces, its link on the bridge, and the container's root.
    let left = run.host.left();
    assert_eq!(left.links.len(), 1, "{left:?}");
    assert_eq!(left.namespaces.len(), 1, "{left:?}");
    assert!(left.mounts.contains(&run.bundle("c", 0).join("rootfs")), "{left:?}");
    let spec: Value = serde_json::from_slice(
        &fs::read(run.bundle("c", 0).join("config.json")).expect("config.json"),
    )
    .expect("JSON");
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    // exec, attach and port-forward find it by its names, written once for the pod's life.
    let pods = run.data.path().join("pods");
    let found = crate::pod::locate::pod(&pods, "shop", "web").expect("the pod by its names");
    assert_eq!(found.uid, UID);
    let written = fs::metadata(pods.join(UID).join("pod.json")).and_then(|m| m.modified());
    run.status("a later sync", |s| s["phase"] == "Running").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let again = fs::metadata(pods.join(UID).join("pod.json")).and_then(|m| m.modified());
    assert_eq!(written.ok(), again.ok());
    run.worker.abort();
}

#[tokio::test]
async fn a_run_that_ends_is_reported_with_its_exit_and_not_restarted_under_never() {
    let run = Run::start(pod(json!({"restartPolicy": "Never"}))).await;
    run.status("the container running", |s| s["phase"] == "Running").await;
    run.containers.exit(&run.bundle("c", 0), 3);
    let status = run.status("the pod failed", |s| s["phase"] == "Failed").await;
    let terminated = &container_status(&status, "c")["state"]["terminated"];
    assert_eq!(
        (terminated["exitCode"].as_i64(), terminated["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(run.containers.calls().len(), 1, "started again: {:?}", run.containers.calls());
    run.worker.abort();
}

#[tokio::test]
async fn a_container_the_runtime_cannot_create_waits_with_the_runtimes_message() {
    let run = Run::start(pod(json!({}))).await;
    run.containers.refuse(Some("exec: \"sh\": executable file not found in $PATH"));
    let status = run
        .status("a waiting reason", |s| {
            container_status(s, "c")["state"]["waiting"]["reason"] == "CreateContainerError"
        })
        .await;
    let waiting = &container_status(&status, "c")["state"]["waiting"];
    assert!(
        waiting["message"].as_str().is_some_and(|m| m.contains("executable file not found")),
        "{waiting:#}"
    );
    assert_eq!(status["phase"], "Pending");
    // Once the runtime can, the container starts.
    run.containers.refuse(None);
    run.status("the container running", |s| s["phase"] == "Running").await;
    assert!(run.events().iter().any(|r| r == "Failed"), "{:?}", run.events());
    run.worker.abort();
}

#[tokio::test]
async fn a_deleted_pod_gets_its_stop_signal_then_sigkill_and_leaves_nothing() {
    let mut run = Run::start(pod(json!({}))).await;
    run.status("the container running", |s| s["phase"] == "Running").await;
    run.containers.ignore(Signal::SIGTERM);
    let mut deleted = pod(json!({}));
    deleted.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    deleted.metadata.deletion_grace_period_seconds = Some(1);
    let asked = Instant::now();
    run.updates.send(Some(Arc::new(deleted))).expect("the worker listens");
    let worker = &mut run.worker;
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker ended")
        .expect("no panic");
    let bundle = run.bundle("c", 0);
    let signals: Vec<Call> =
        run.containers.calls().into_iter().filter(|c| matches!(c, Call::Signal(..))).collect();
    assert_eq!(
        signals,
        [Call::Signal(bundle.clone(), Signal::SIGTERM), Call::Signal(bundle, Signal::SIGKILL)]
    );
    // SIGKILL came once the grace period was over, not before.
    assert!(asked.elapsed() >= Duration::from_secs(1));
    assert!(run.containers.running().is_empty());
    assert!(run.host.left().is_empty(), "{:?}", run.host.left());
    assert!(!run.data.path().join("pods").join(UID).exists());
    assert_eq!(run.sent.lock().expect("not poisoned").deleted, ["web"]);
    assert!(run.events().iter().any(|r| r == "Killing"), "{:?}", run.events());
}

#[tokio::test]
async fn a_crashing_container_restarts_then_backs_off_with_its_last_exit_kept() {
    let run = Run::start(pod(json!({}))).await;
    run.status("the container running", |s| s["phase"] == "Running").await;
    run.containers.exit(&run.bundle("c", 0), 2);
    // The first restart is at once, and the run before it is the last state.
    let status = run
        .status("a restart", |s| {
            let c = container_status(s, "c");
            c["restartCount"] == 1 && c["state"]["running"].is_object()
        })
        .await;
    let last = &container_status(&status, "c")["lastState"]["terminated"];
    assert_eq!((last["exitCode"].as_i64(), last["reason"].as_str()), (Some(2), Some("Error")));
    // The second waits: CrashLoopBackOff, with upstream's message.
    run.containers.exit(&run.bundle("c", 1), 2);
    let status = run
        .status("a back-off", |s| {
            container_status(s, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    let c = container_status(&status, "c");
    let message = c["state"]["waiting"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("back-off 10s restarting failed container=c pod=web_shop("),
        "{message}"
    );
    assert_eq!((c["restartCount"].as_i64(), c["ready"].as_bool()), (Some(1), Some(false)));
    assert_eq!(run.containers.calls().len(), 2);
    run.worker.abort();
}
