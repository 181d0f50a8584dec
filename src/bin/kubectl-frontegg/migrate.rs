//! `kubectl frontegg migrate`: once the chart stores a new version (`crds.storageVersion`),
//! rewrites every stored object in it and trims the CRDs' `status.storedVersions` to it, as
//! cert-manager's `cmctl upgrade migrate-api-version` does. A version can be dropped from a
//! CRD only once no object is stored in it; until this runs, etcd may hold both.
//!
//! Where the cluster serves `storagemigration.k8s.io` (beta in Kubernetes 1.35, off by
//! default), Kubernetes' own StorageVersionMigration rewrites the objects instead. The report
//! says which path each CRD took.

use std::time::Duration;

use frontegg_token_operator::api::all_crds;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use serde::Serialize;
use serde_json::json;

const MIGRATION_GROUP: &str = "storagemigration.k8s.io";
/// Rewrites of one object that may meet a concurrent write (the operator's) before one lands.
const ATTEMPTS: usize = 5;
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migrated {
    pub crd: String,
    pub storage_version: String,
    pub stored_before: Vec<String>,
    pub stored_after: Vec<String>,
    /// `none` (nothing to do), `rewrite` (each object written back by this command) or
    /// `storage-version-migration` (Kubernetes' StorageVersionMigration).
    pub path: String,
    /// The rewrite was asked for (`--rewrite`) though the cluster serves the migration API.
    pub forced: bool,
    pub objects: usize,
}

/// Migrates every CRD of this operator. StorageVersionMigrations are all started before any is
/// waited for: Kubernetes' controller takes a minute or so for each, and they run side by side.
pub async fn all(client: &kube::Client, force_rewrite: bool) -> Result<Vec<Migrated>, String> {
    let svm = match force_rewrite {
        true => None,
        false => migration_api(client).await,
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut planned = Vec::new();
    for ours in all_crds() {
        let name = ours.metadata.name.unwrap_or_default();
        let crd = crds
            .get(&name)
            .await
            .map_err(|e| format!("read CRD {name}: {e}"))?;
        planned.push(plan(crd, svm.is_some(), force_rewrite)?);
    }
    let mut started = Vec::new();
    for (crd, report) in &mut planned {
        let migration = match (report.path.as_str(), svm.as_ref()) {
            ("storage-version-migration", Some(svm)) => {
                report.objects = count(client, &resource_of(crd, &report.storage_version)).await?;
                Some(start_migration(client, svm, crd).await?)
            }
            _ => None,
        };
        started.push(migration);
    }
    let mut out = Vec::new();
    for ((crd, mut report), migration) in planned.into_iter().zip(started) {
        if let (Some(name), Some(svm)) = (migration, svm.as_ref()) {
            wait_for_migration(client, svm, &name).await?;
        } else if report.path == "rewrite" {
            report.objects = rewrite(client, &resource_of(&crd, &report.storage_version)).await?;
        }
        if report.path != "none" {
            trim(&crds, &mut report).await?;
        }
        out.push(report);
    }
    Ok(out)
}

/// What one CRD needs: nothing when it stores its storage version alone.
fn plan(
    crd: CustomResourceDefinition,
    svm: bool,
    forced: bool,
) -> Result<(CustomResourceDefinition, Migrated), String> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let storage = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map(|v| v.name.clone())
        .ok_or_else(|| format!("CRD {name} has no storage version"))?;
    let before = crd
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    let path = match (before == [storage.clone()], svm) {
        (true, _) => "none",
        (false, true) => "storage-version-migration",
        (false, false) => "rewrite",
    };
    let report = Migrated {
        crd: name,
        storage_version: storage,
        stored_after: before.clone(),
        stored_before: before,
        path: path.to_string(),
        forced,
        objects: 0,
    };
    Ok((crd, report))
}

/// Only once every object is stored as the storage version may the others leave the list.
async fn trim(crds: &Api<CustomResourceDefinition>, report: &mut Migrated) -> Result<(), String> {
    let trimmed = json!({"status": {"storedVersions": [report.storage_version]}});
    crds.patch_status(
        &report.crd,
        &PatchParams::default(),
        &Patch::Merge(&trimmed),
    )
    .await
    .map_err(|e| format!("trim storedVersions of {}: {e}", report.crd))?;
    report.stored_after = vec![report.storage_version.clone()];
    Ok(())
}

/// How many objects the CRD holds (their metadata, a page at a time).
async fn count(client: &kube::Client, resource: &ApiResource) -> Result<usize, String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(500);
    let mut seen = 0usize;
    loop {
        let page = api
            .list_metadata(&params)
            .await
            .map_err(|e| format!("list {}: {e}", resource.plural))?;
        seen = seen.saturating_add(page.items.len());
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(seen),
        }
    }
}

fn resource_of(crd: &CustomResourceDefinition, version: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk(&crd.spec.group, version, &crd.spec.names.kind);
    let mut resource = ApiResource::from_gvk(&gvk);
    resource.plural = crd.spec.names.plural.clone();
    resource
}

/// Writes every object back unchanged, in the storage version: the API server stores what it
/// writes in that version. Returns how many were written.
async fn rewrite(client: &kube::Client, resource: &ApiResource) -> Result<usize, String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(100);
    let mut written = 0usize;
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| format!("list {}: {e}", resource.plural))?;
        for obj in &page.items {
            if write_back(client, resource, obj).await? {
                written = written.saturating_add(1);
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(written),
        }
    }
}

/// One object written back as read; a conflict reads it again. False when it is gone.
async fn write_back(
    client: &kube::Client,
    resource: &ApiResource,
    obj: &DynamicObject,
) -> Result<bool, String> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = match &obj.metadata.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let mut current = obj.clone();
    for _ in 0..ATTEMPTS {
        match api.replace(&name, &PostParams::default(), &current).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
            Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&name).await {
                Ok(Some(fresh)) => current = fresh,
                Ok(None) => return Ok(false),
                Err(e) => return Err(format!("read {name}: {e}")),
            },
            Err(e) => return Err(format!("rewrite {name}: {e}")),
        }
    }
    Err(format!(
        "rewrite {name}: it kept changing; run migrate again"
    ))
}

/// The StorageVersionMigration API, when the cluster serves it.
async fn migration_api(client: &kube::Client) -> Option<ApiResource> {
    let groups = client.list_api_groups().await.ok()?;
    let group = groups
        .groups
        .into_iter()
        .find(|g| g.name == MIGRATION_GROUP)?;
    let version = group.preferred_version?.version;
    let gvk = GroupVersionKind::gvk(MIGRATION_GROUP, &version, "StorageVersionMigration");
    Some(ApiResource::from_gvk(&gvk))
}

/// Asks Kubernetes to migrate the CRD's objects; returns the migration's name.
async fn start_migration(
    client: &kube::Client,
    svm: &ApiResource,
    crd: &CustomResourceDefinition,
) -> Result<String, String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), svm);
    let mut request = DynamicObject::new("", svm);
    request.metadata.name = None;
    request.metadata.generate_name = Some("frontegg-token-operator-".into());
    request.data = json!({"spec": {"resource": {
        "group": crd.spec.group, "resource": crd.spec.names.plural}}});
    let created = api
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| format!("create a StorageVersionMigration: {e}"))?;
    Ok(created.metadata.name.unwrap_or_default())
}

async fn wait_for_migration(
    client: &kube::Client,
    svm: &ApiResource,
    name: &str,
) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), svm);
    let waited = tokio::time::timeout(MIGRATION_TIMEOUT, async {
        loop {
            let obj = api.get(name).await.map_err(|e| e.to_string())?;
            match migration_outcome(&obj.data) {
                Some(Ok(())) => {
                    // Done with; a failed one stays for `kubectl describe`.
                    let _ = api.delete(name, &DeleteParams::default()).await;
                    return Ok(());
                }
                Some(Err(message)) => {
                    return Err(format!("StorageVersionMigration {name} failed: {message}"));
                }
                None => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        Err(format!(
            "StorageVersionMigration {name} did not finish in 5 minutes: is kube-controller-manager running its storage-version-migrator-controller (feature gate StorageVersionMigrator)? Without it, run `kubectl frontegg migrate --rewrite`"
        ))
    })
}

/// Succeeded, failed (with its message), or still running.
fn migration_outcome(data: &serde_json::Value) -> Option<Result<(), String>> {
    let conditions = data.pointer("/status/conditions")?.as_array()?;
    conditions.iter().find_map(|c| {
        let field = |f: &str| c.get(f).and_then(|v| v.as_str()).unwrap_or_default();
        match (field("type"), field("status")) {
            ("Succeeded", "True") => Some(Ok(())),
            ("Failed", "True") => Some(Err(field("message").to_string())),
            _ => None,
        }
    })
}

pub fn describe(done: &[Migrated]) -> String {
    let mut out = String::new();
    for m in done {
        let line = match m.path.as_str() {
            "none" => format!(
                "{}: stored as {} only; nothing to do\n",
                m.crd, m.storage_version
            ),
            "rewrite" => format!(
                "{}: {} object(s) rewritten as {}; storedVersions {:?} -> {:?} ({}: rewritten by this command)\n",
                m.crd,
                m.objects,
                m.storage_version,
                m.stored_before,
                m.stored_after,
                if m.forced {
                    "--rewrite"
                } else {
                    "no storagemigration.k8s.io API"
                }
            ),
            _ => format!(
                "{}: {} object(s) migrated to {} by a StorageVersionMigration; storedVersions {:?} -> {:?}\n",
                m.crd, m.objects, m.storage_version, m.stored_before, m.stored_after
            ),
        };
        out.push_str(&line);
    }
    out
}
