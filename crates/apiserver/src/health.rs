//! Health checks: `/livez`, `/readyz` and `/healthz`, with upstream's meaning and output.
//!
//! - `/livez`: the process is alive and should not be restarted (ping, store).
//! - `/readyz`: the server can serve traffic now (ping, store reachable, store writable,
//!   caches synced, not shutting down).
//! - `/healthz`: the deprecated union, kept for old clients (ping, store).
//!
//! `?verbose` lists each check (`[+]name ok`, `[-]name failed: reason withheld`);
//! `?exclude=name` skips one; `/readyz/<name>` runs one. A failure answers 500 and always
//! lists the checks, as upstream's handler does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use krust_store::Store;

/// How long a check of the store may take before it counts as failed.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Which health endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/livez`.
    Live,
    /// `/readyz`.
    Ready,
    /// `/healthz`.
    Healthz,
}

impl Endpoint {
    /// The endpoint a path starts with, and the check named after it (`/readyz/etcd`).
    pub fn parse(path: &str) -> Option<(Self, Option<&str>)> {
        let path = path.trim_end_matches('/');
        let (endpoint, rest) =
            [("/livez", Self::Live), ("/readyz", Self::Ready), ("/healthz", Self::Healthz)]
                .into_iter()
                .find_map(|(prefix, endpoint)| {
                    path.strip_prefix(prefix).map(|rest| (endpoint, rest))
                })?;
        match rest {
            "" => Some((endpoint, None)),
            rest => rest.strip_prefix('/').map(|check| (endpoint, Some(check))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Live => "livez",
            Self::Ready => "readyz",
            Self::Healthz => "healthz",
        }
    }

    fn checks(self) -> &'static [Check] {
        match self {
            Self::Live | Self::Healthz => &[Check::Ping, Check::Etcd],
            Self::Ready => &[Check::Ping, Check::Etcd, Check::EtcdReadiness, Check::Shutdown],
        }
    }
}

/// One named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The server answers at all.
    Ping,
    /// The store answers a read (upstream's name, whatever the backend).
    Etcd,
    /// The store reads and its writes are not failing.
    EtcdReadiness,
    /// The server is not shutting down.
    Shutdown,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Etcd => "etcd",
            Self::EtcdReadiness => "etcd-readiness",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The state the checks read.
pub struct Health {
    store: Arc<dyn Store>,
    shutting_down: AtomicBool,
}

/// What a health endpoint answers: an HTTP code and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200 or 500 (404 for an unknown check).
    pub code: u16,
    /// The text.
    pub body: String,
}

impl Health {
    /// Checks over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, shutting_down: AtomicBool::new(false) }
    }

    /// Marks the server as shutting down: `/readyz` fails from now on.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    async fn run(&self, check: Check) -> Result<(), String> {
        match check {
            Check::Ping => Ok(()),
            Check::Etcd | Check::EtcdReadiness => {
                match tokio::time::timeout(STORE_CHECK_TIMEOUT, self.store.check()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {STORE_CHECK_TIMEOUT:?}")),
                }
            }
            Check::Shutdown if self.shutting_down.load(Ordering::SeqCst) => {
                Err("process is shutting down".into())
            }
            Check::Shutdown => Ok(()),
        }
    }

    /// Answers `endpoint` (or its one check `only`) with the query's `verbose` and `exclude`.
    pub async fn answer(
        &self,
        endpoint: Endpoint,
        only: Option<&str>,
        verbose: bool,
        exclude: &[String],
    ) -> Answer {
        if let Some(name) = only {
            let Some(check) = endpoint.checks().iter().find(|c| c.name() == name) else {
                return Answer { code: 404, body: "404 page not found\n".into() };
            };
            return match self.run(*check).await {
                Ok(()) => Answer { code: 200, body: "ok".into() },
                Err(e) => {
                    tracing::warn!(check = name, error = %e, "health check failed");
                    Answer { code: 500, body: format!("internal server error: {e}\n") }
                }
            };
        }
        let mut results = Vec::new();
        for check in endpoint.checks() {
            if exclude.iter().any(|e| e == check.name()) {
                continue;
            }
            let result = self.run(*check).await;
            if let Err(e) = &result {
                tracing::warn!(endpoint = endpoint.name(), check = check.name(), error = %e, "health check failed");
            }
            results.push((check.name(), result.is_ok()));
        }
        let unknown: Vec<&str> = exclude
            .iter()
            .map(String::as_str)
            .filter(|e| !endpoint.checks().iter().any(|c| c.name() == *e))
            .collect();
        report(endpoint.name(), &results, &unknown, verbose)
    }
}

/// Upstream's report of a health endpoint: `ok` when every check passed and no detail was
/// asked; otherwise one line per check and a final verdict. Failures are always detailed.
fn report(
    name: &str,
    results: &[(&str, bool)],
    unknown_excludes: &[&str],
    verbose: bool,
) -> Answer {
    let mut lines = String::new();
    for (check, ok) in results {
        if *ok {
            lines.push_str(&format!("[+]{check} ok\n"));
        } else {
            lines.push_str(&format!("[-]{check} failed: reason withheld\n"));
        }
    }
    if !unknown_excludes.is_empty() {
        let quoted: Vec<String> = unknown_excludes.iter().map(|e| format!("{e:?}")).collect();
        lines.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(",")
        ));
    }
    if results.iter().any(|(_, ok)| !ok) {
        return Answer { code: 500, body: format!("{lines}{name} check failed\n") };
    }
    if !verbose {
        return Answer { code: 200, body: "ok".into() };
    }
    Answer { code: 200, body: format!("{lines}{name} check passed\n") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoint_and_the_check() {
        assert_eq!(Endpoint::parse("/readyz"), Some((Endpoint::Ready, None)));
        assert_eq!(Endpoint::parse("/livez/"), Some((Endpoint::Live, None)));
        assert_eq!(Endpoint::parse("/readyz/etcd"), Some((Endpoint::Ready, Some("etcd"))));
        assert_eq!(Endpoint::parse("/healthzz"), None);
        assert_eq!(Endpoint::parse("/version"), None);
    }

    #[test]
    fn all_passing_without_verbose_says_ok() {
        let answer = report("readyz", &[("ping", true), ("etcd", true)], &[], false);
        assert_eq!(answer, Answer { code: 200, body: "ok".into() });
    }

    #[test]
    fn verbose_lists_every_check_and_the_verdict() {
        let answer = report("livez", &[("ping", true), ("etcd", true)], &[], true);
        assert_eq!(answer.body, "[+]ping ok\n[+]etcd ok\nlivez check passed\n");
    }

    #[test]
    fn a_failure_is_500_and_always_detailed() {
        let answer = report("readyz", &[("ping", true), ("etcd", false)], &[], false);
        assert_eq!(answer.code, 500);
        assert_eq!(
            answer.body,
            "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n"
        );
    }

    #[test]
    fn an_unknown_exclude_is_warned_about() {
        let answer = report("readyz", &[("ping", true)], &["nope"], true);
        assert!(answer.body.contains("no matches for \"nope\""), "{}", answer.body);
    }
}
