//! Zero-downtime deploys: the bundles served are a numbered revision, swapped atomically.
//!
//! A revision is built and checked before it is swapped in: one whose bundles have load
//! errors, or that does not build (colliding base paths, a policy that cannot run), is
//! refused with its errors and the running revision keeps serving. Every request takes the
//! revision current when it begins and finishes on it, however long it runs.
//!
//! Revisions come from three places: the PATHs at start, the PATHs read again on
//! `SIGHUP`, and bundle zips posted to the admin API (`POST /admin/deployments`), which
//! replace the bundle of the same name or add one. The latest deploy of a name wins: a
//! `SIGHUP` keeps the uploaded bundles whose names the PATHs do not hold. Uploads live in
//! the process; a restart serves the PATHs alone.
//! Tokens, codes, key value maps, caches and the store carry over from one revision to the
//! next ([`preflow::Gateway::redeploy`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use preflow::{Bundle, Gateway, LoadOptions, Loaded};

use super::health::Probes;
use super::upstream::{TargetTlsConfigs, Upstream};

/// How many revisions are kept for rollback (the active one included).
pub const KEPT_REVISIONS: usize = 10;

/// Where a revision came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The PATHs read at start.
    Startup,
    /// The PATHs read again on `SIGHUP`.
    Reload,
    /// A zip posted to the admin API, with the name it was given.
    Upload(String),
}

impl Origin {
    fn kind(&self) -> &'static str {
        match self {
            Origin::Startup => "startup",
            Origin::Reload => "reload",
            Origin::Upload(_) => "upload",
        }
    }

    fn describe(&self) -> String {
        match self {
            Origin::Startup => "startup".to_owned(),
            Origin::Reload => "reload".to_owned(),
            Origin::Upload(name) => format!("upload {name}"),
        }
    }
}

/// One revision: its bundles and the gateway compiled from them.
#[derive(Debug)]
pub struct Revision {
    /// 1 for the revision started with, then one more per deploy.
    pub number: u64,
    /// The compiled gateway requests run on.
    pub gateway: Gateway,
    /// Where it came from.
    pub origin: Origin,
    /// When it was built.
    pub deployed_at: SystemTime,
    /// The bundles read from the PATHs.
    from_paths: Vec<Bundle>,
    /// Uploaded bundles, each replacing a PATH bundle of the same name.
    uploads: Vec<Bundle>,
}

impl Revision {
    /// The bundles served: the PATHs' with the uploads in place of those they replace.
    fn bundles(&self) -> Vec<Bundle> {
        merge(&self.from_paths, &self.uploads)
    }
}

/// `base` with `over` in place of the bundles of the same name: the latest deploy of a
/// name wins.
fn merge(base: &[Bundle], over: &[Bundle]) -> Vec<Bundle> {
    let mut all = without(base, over);
    all.extend(over.iter().cloned());
    all
}

/// The bundles of `bundles` whose names `names` does not hold.
fn without(bundles: &[Bundle], names: &[Bundle]) -> Vec<Bundle> {
    bundles
        .iter()
        .filter(|b| !names.iter().any(|n| n.name == b.name))
        .cloned()
        .collect()
}

/// Why a deploy was refused; the running revision keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The bundles have load errors (each diagnostic, as `file:line:col: message`).
    #[error("the bundles have {} error(s); the running revision keeps serving", .0.len())]
    Invalid(Vec<String>),
    /// The bundles load but do not build into a gateway.
    #[error("the bundles do not build: {0}; the running revision keeps serving")]
    Build(String),
    /// No kept revision has that number.
    #[error("no kept revision {0}")]
    NoSuchRevision(u64),
    /// A deploy's lock was poisoned by an earlier panic.
    #[error("deployments are unavailable after an earlier failure")]
    Unavailable,
}

/// What a deploy did.
#[derive(Debug)]
pub struct Deployed {
    /// The revision now serving.
    pub revision: Arc<Revision>,
    /// Warnings of the new bundles (missing policies, unknown target servers…).
    pub warnings: Vec<String>,
}

/// The revisions of a gateway.
#[derive(Debug)]
pub struct Deployments {
    current: ArcSwap<Revision>,
    /// The kept revisions, oldest first; deploys are serialised on this lock.
    kept: Mutex<VecDeque<Arc<Revision>>>,
    paths: Vec<PathBuf>,
    /// Health probes of the active revision's load balancers, restarted on each swap.
    probes: Mutex<Option<(TargetTlsConfigs, Probes)>>,
}

impl Deployments {
    /// Deployments starting with revision 1: `gateway`, built from `loaded` (the PATHs).
    pub fn new(gateway: Gateway, loaded: &Loaded, paths: Vec<PathBuf>) -> Self {
        let first = Arc::new(Revision {
            number: 1,
            gateway,
            origin: Origin::Startup,
            deployed_at: SystemTime::now(),
            from_paths: loaded.bundles.clone(),
            uploads: Vec::new(),
        });
        Self {
            current: ArcSwap::new(Arc::clone(&first)),
            kept: Mutex::new(VecDeque::from([first])),
            paths,
            probes: Mutex::new(None),
        }
    }

    /// Probes the active revision's health monitors now and after every swap, calling
    /// HTTP probes with `tls`. Needs a tokio runtime.
    pub fn start_probes(&self, tls: TargetTlsConfigs) {
        let probes = spawn_probes(&self.current().gateway, &tls);
        if let Ok(mut slot) = self.probes.lock() {
            *slot = Some((tls, probes));
        }
    }

    /// The revision serving now. A request holds it until it is answered.
    pub fn current(&self) -> Arc<Revision> {
        self.current.load_full()
    }

    /// The kept revisions, oldest first.
    pub fn revisions(&self) -> Vec<Arc<Revision>> {
        self.kept
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Reads the PATHs again (`SIGHUP`) and deploys them, keeping the uploaded bundles
    /// whose names they do not hold.
    ///
    /// # Errors
    /// [`DeployError`]: the running revision keeps serving.
    pub fn reload(&self) -> Result<Deployed, DeployError> {
        let loaded = preflow::load_paths(&self.paths, &LoadOptions::default());
        self.deploy(loaded, Origin::Reload, |current, loaded| {
            (
                loaded.bundles.clone(),
                without(&current.uploads, &loaded.bundles),
            )
        })
    }

    /// Deploys the bundles of zip `bytes` (named `name` in messages) over the running
    /// revision: each replaces the bundle of the same name or is added.
    ///
    /// # Errors
    /// [`DeployError`]: the running revision keeps serving.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<Deployed, DeployError> {
        let loaded = preflow::load_zip(name, std::io::Cursor::new(bytes), &LoadOptions::default());
        if loaded.bundles.is_empty() && !loaded.has_errors() {
            return Err(DeployError::Invalid(vec![format!(
                "{name}: no bundle in the zip (expected apiproxy/ or sharedflowbundle/ at its top)"
            )]));
        }
        self.deploy(
            loaded,
            Origin::Upload(name.to_owned()),
            |current, loaded| {
                (
                    current.from_paths.clone(),
                    merge(&current.uploads, &loaded.bundles),
                )
            },
        )
    }

    /// Makes kept revision `number` the active one again.
    ///
    /// # Errors
    /// [`DeployError::NoSuchRevision`] when it is no longer kept.
    pub fn activate(&self, number: u64) -> Result<Arc<Revision>, DeployError> {
        let kept = self.kept.lock().map_err(|_| DeployError::Unavailable)?;
        let found = kept
            .iter()
            .find(|r| r.number == number)
            .cloned()
            .ok_or(DeployError::NoSuchRevision(number))?;
        self.swap(Arc::clone(&found));
        drop(kept);
        if let Some(m) = super::metrics::get() {
            m.deployed("activate", true, number);
        }
        tracing::info!(revision = number, "revision activated");
        Ok(found)
    }

    /// Activates the newest kept revision older than the active one.
    ///
    /// # Errors
    /// [`DeployError::NoSuchRevision`] when there is none.
    pub fn rollback(&self) -> Result<Arc<Revision>, DeployError> {
        let active = self.current().number;
        let previous = self
            .revisions()
            .iter()
            .map(|r| r.number)
            .filter(|n| *n < active)
            .max()
            .ok_or(DeployError::NoSuchRevision(active.saturating_sub(1)))?;
        self.activate(previous)
    }

    /// Builds a revision from what `pick` takes of the current one and `loaded`, and
    /// swaps it in when it builds.
    fn deploy(
        &self,
        loaded: Loaded,
        origin: Origin,
        pick: impl FnOnce(&Revision, &Loaded) -> (Vec<Bundle>, Vec<Bundle>),
    ) -> Result<Deployed, DeployError> {
        let kind = origin.kind();
        let done = self.build_and_swap(loaded, origin, pick);
        if let Some(m) = super::metrics::get() {
            m.deployed(kind, done.is_ok(), self.current().number);
        }
        done
    }

    fn build_and_swap(
        &self,
        loaded: Loaded,
        origin: Origin,
        pick: impl FnOnce(&Revision, &Loaded) -> (Vec<Bundle>, Vec<Bundle>),
    ) -> Result<Deployed, DeployError> {
        let mut kept = self.kept.lock().map_err(|_| DeployError::Unavailable)?;
        if loaded.has_errors() {
            let errors: Vec<String> = loaded.errors().map(|e| e.to_string()).collect();
            tracing::error!(
                origin = origin.describe(),
                errors = errors.len(),
                "deploy refused: the bundles have errors; the running revision keeps serving"
            );
            for e in &errors {
                tracing::error!("{e}");
            }
            return Err(DeployError::Invalid(errors));
        }
        let current = self.current();
        let (from_paths, uploads) = pick(&current, &loaded);
        let all = Loaded {
            bundles: merge(&from_paths, &uploads),
            diagnostics: loaded.diagnostics,
            ..Loaded::default()
        };
        let gateway = current.gateway.redeploy(&all).map_err(|e| {
            tracing::error!(origin = origin.describe(), error = %e, "deploy refused; the running revision keeps serving");
            DeployError::Build(e.to_string())
        })?;
        let mut warnings: Vec<String> = all.warnings().map(|w| w.to_string()).collect();
        warnings.extend(
            preflow::lint_environment(&all.bundles, gateway.environment())
                .iter()
                .map(ToString::to_string),
        );
        let number = kept.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        let revision = Arc::new(Revision {
            number,
            gateway,
            origin,
            deployed_at: SystemTime::now(),
            from_paths,
            uploads,
        });
        kept.push_back(Arc::clone(&revision));
        while kept.len() > KEPT_REVISIONS {
            // Never the active one: it is the newest.
            kept.pop_front();
        }
        self.swap(Arc::clone(&revision));
        drop(kept);
        tracing::info!(
            revision = number,
            origin = revision.origin.describe(),
            bundles = all.bundles.len(),
            "revision deployed"
        );
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(Deployed { revision, warnings })
    }

    fn swap(&self, revision: Arc<Revision>) {
        if let Ok(mut slot) = self.probes.lock()
            && let Some((tls, probes)) = slot.as_mut()
        {
            *probes = spawn_probes(&revision.gateway, tls);
        }
        self.current.store(revision);
    }
}

fn spawn_probes(gateway: &Gateway, tls: &TargetTlsConfigs) -> Probes {
    super::health::spawn(gateway.clone(), Upstream::new(64 * 1024, tls.clone()))
}

/// A revision as the admin API lists it.
pub fn describe(revision: &Revision, active: bool) -> serde_json::Value {
    let deployed_at = revision
        .deployed_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bundles = revision.bundles();
    serde_json::json!({
        "revision": revision.number,
        "active": active,
        "origin": revision.origin.describe(),
        "deployed_at": deployed_at,
        "bundles": bundles.iter().map(|b| serde_json::json!({
            "name": b.name,
            "revision": b.revision,
            "base_paths": b.base_paths().collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Re-reads the PATHs on every `SIGHUP` until the process ends.
#[cfg(unix)]
pub fn reload_on_hangup(
    deployments: Arc<Deployments>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reading the bundles again");
            let d = Arc::clone(&deployments);
            // Loading and compiling is CPU work: off the async workers.
            let _ = tokio::task::spawn_blocking(move || d.reload()).await;
        }
    }))
}
