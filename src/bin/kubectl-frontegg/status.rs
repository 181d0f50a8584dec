//! `kubectl frontegg status`: one row per token resource, or the story of one.

use frontegg_token_operator::api::{
    ClusterFronteggEnvironment, FronteggEnvironment, JOURNAL_ANNOTATION,
};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde::Serialize;
use serde_json::Value;

use crate::kinds::{self, Kind};

/// What `status` shows of one resource. Nothing in it is secret: token ids are not.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `True`, `False` or `Unknown` (no status yet).
    pub ready: String,
    pub reason: String,
    pub message: String,
    pub token_id: Option<String>,
    pub expires_at: Option<String>,
    pub next_renewal: Option<String>,
    pub pending_revocations: Vec<Pending>,
    /// `Kind/name` of the environment that issued the current token, or the one named in
    /// the spec; `(default)` when neither says.
    pub environment: String,
    pub secret: Option<String>,
    /// The `Rotating` condition's message: a replacement waiting for its time.
    pub rotating: Option<String>,
    /// Failed issuances in a row, and when the next one may be tried.
    pub backoff: Option<Backoff>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub failures: u64,
    pub next_attempt_at: String,
    pub last_failure: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub id: String,
    pub not_before: Option<String>,
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut at = v;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().map(str::to_string)
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn environment(data: &Value) -> String {
    let recorded = data.pointer("/status/current/connection");
    let named = data.pointer("/spec/environmentRef");
    match recorded.or(named) {
        Some(r) => {
            let kind = text(r, &["environmentKind"])
                .or_else(|| text(r, &["kind"]))
                .unwrap_or_else(|| "ClusterFronteggEnvironment".into());
            let name = text(r, &["environmentName"])
                .or_else(|| text(r, &["name"]))
                .unwrap_or_default();
            format!("{kind}/{name}")
        }
        None => "(default)".into(),
    }
}

pub fn row(kind: &Kind, obj: &DynamicObject) -> Row {
    let data = &obj.data;
    let status = data.get("status").cloned().unwrap_or(Value::Null);
    let ready = condition(&status, "Ready");
    let field = |key: &str| ready.and_then(|c| text(c, &[key]));
    let pending = status
        .get("pendingRevocations")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .map(|p| Pending {
                    id: text(p, &["id"]).unwrap_or_default(),
                    not_before: text(p, &["notBefore"]),
                })
                .collect()
        })
        .unwrap_or_default();
    Row {
        kind: kind.name.to_string(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        ready: field("status").unwrap_or_else(|| "Unknown".into()),
        reason: field("reason").unwrap_or_default(),
        message: field("message").unwrap_or_default(),
        token_id: text(&status, &["current", "id"]),
        expires_at: text(&status, &["current", "expiresAt"]),
        next_renewal: text(&status, &["nextRenewal"]),
        pending_revocations: pending,
        environment: environment(data),
        secret: text(&status, &["current", "secretName"])
            .or_else(|| text(data, &["spec", "secret", "name"])),
        rotating: condition(&status, "Rotating").and_then(|c| text(c, &["message"])),
        backoff: status.get("issuanceBackoff").and_then(|b| {
            Some(Backoff {
                failures: b.get("failures")?.as_u64()?,
                next_attempt_at: text(b, &["nextAttemptAt"])?,
                last_failure: text(b, &["lastFailure"]).unwrap_or_default(),
            })
        }),
    }
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// The table, with columns as wide as their widest cell.
pub fn table(rows: &[Row], all_namespaces: bool) -> String {
    let mut header: Vec<String> = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE".into());
    }
    header.extend(
        [
            "RESOURCE",
            "READY",
            "REASON",
            "TOKEN",
            "EXPIRES",
            "RENEWS",
            "PENDING",
            "ENVIRONMENT",
            "SECRET",
        ]
        .map(str::to_string),
    );
    let mut cells = vec![header];
    cells.extend(rows.iter().map(|r| cells_of(r, all_namespaces)));
    align(&cells)
}

/// A timestamp to the second, for the table (JSON keeps what the status holds).
fn seconds(t: &str) -> String {
    match t.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => t.to_string(),
    }
}

fn cells_of(r: &Row, all_namespaces: bool) -> Vec<String> {
    let dash = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), seconds);
    let first = r
        .pending_revocations
        .iter()
        .filter_map(|p| p.not_before.clone())
        .min();
    let pending = match first {
        Some(first) => format!("{} (next {})", r.pending_revocations.len(), seconds(&first)),
        None => r.pending_revocations.len().to_string(),
    };
    let mut line = Vec::new();
    if all_namespaces {
        line.push(r.namespace.clone());
    }
    line.extend([
        format!("{}/{}", r.kind, r.name),
        r.ready.clone(),
        r.reason.clone(),
        r.token_id.as_deref().map_or_else(|| "-".into(), short),
        dash(&r.expires_at),
        dash(&r.next_renewal),
        pending,
        r.environment.clone(),
        dash(&r.secret),
    ]);
    line
}

fn align(cells: &[Vec<String>]) -> String {
    let columns = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells
                .iter()
                .filter_map(|l| l.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in cells {
        let padded: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The story of one resource: its row, conditions, recent Events, an open journal, its
/// environment's readiness, and what happens next.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    #[serde(flatten)]
    pub row: Row,
    pub conditions: Vec<Value>,
    pub events: Vec<String>,
    pub open_journal: Option<Value>,
    pub environment_ready: Option<String>,
    pub next: Vec<String>,
}

pub async fn detail(client: &kube::Client, kind: &Kind, obj: &DynamicObject) -> Detail {
    let row = row(kind, obj);
    let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let conditions = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = next_steps(&row);
    Detail {
        events: events(client, &row).await,
        open_journal: open_journal(obj, &status),
        environment_ready: environment_ready(client, &row).await,
        conditions,
        next,
        row,
    }
}

fn open_journal(obj: &DynamicObject, status: &Value) -> Option<Value> {
    let raw = obj.metadata.annotations.as_ref()?.get(JOURNAL_ANNOTATION)?;
    let journal: Value = serde_json::from_str(raw).ok()?;
    let attempt = text(&journal, &["attemptId"])?;
    let settled = text(status, &["settledAttempt"]).as_deref() == Some(attempt.as_str())
        || text(status, &["current", "attemptId"]).as_deref() == Some(attempt.as_str());
    (!settled).then_some(journal)
}

pub fn next_steps(row: &Row) -> Vec<String> {
    let mut next = Vec::new();
    if row.ready != "True" {
        next.push(format!("not ready: {} ({})", row.reason, row.message));
    }
    if let Some(b) = &row.backoff {
        next.push(format!(
            "{} failed issuance(s) in a row (last: {}); the next is tried at {}, or at once after a spec change or a rotate request",
            b.failures,
            b.last_failure,
            seconds(&b.next_attempt_at)
        ));
    }
    if let Some(waiting) = &row.rotating {
        next.push(waiting.clone());
    } else if let Some(at) = &row.next_renewal {
        next.push(format!("renews at {}", seconds(at)));
    }
    for p in &row.pending_revocations {
        match &p.not_before {
            Some(at) => next.push(format!(
                "token {} is revoked at {}, after its grace period",
                p.id,
                seconds(at)
            )),
            None => next.push(format!("token {} is revoked at the next pass", p.id)),
        }
    }
    next
}

async fn events(client: &kube::Client, row: &Row) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), &row.namespace);
    let selector = format!(
        "involvedObject.name={},involvedObject.kind={}",
        row.name, row.kind
    );
    let Ok(list) = api.list(&ListParams::default().fields(&selector)).await else {
        return Vec::new();
    };
    let mut events: Vec<(String, String)> = list
        .items
        .into_iter()
        .map(|e| {
            let at = e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.map(|t| t.0.to_string()))
                .unwrap_or_default();
            let line = format!(
                "{at} {} {}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
            (at, line)
        })
        .collect();
    events.sort();
    events
        .into_iter()
        .rev()
        .take(10)
        .rev()
        .map(|(_, l)| l)
        .collect()
}

async fn environment_ready(client: &kube::Client, row: &Row) -> Option<String> {
    let (kind, name) = row.environment.split_once('/')?;
    let resource = match kind {
        "FronteggEnvironment" => ApiResource::erase::<FronteggEnvironment>(&()),
        "ClusterFronteggEnvironment" => ApiResource::erase::<ClusterFronteggEnvironment>(&()),
        _ => return None,
    };
    let api: Api<DynamicObject> = if kind == "FronteggEnvironment" {
        Api::namespaced_with(client.clone(), &row.namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let env = match api.get_opt(name).await {
        Ok(Some(env)) => env,
        Ok(None) => return Some(format!("{} not found", row.environment)),
        Err(e) => return Some(format!("cannot read {}: {e}", row.environment)),
    };
    let status = env.data.get("status").cloned().unwrap_or(Value::Null);
    let ready = condition(&status, "Ready")?;
    Some(format!(
        "{}: Ready={} {} ({})",
        row.environment,
        text(ready, &["status"]).unwrap_or_default(),
        text(ready, &["reason"]).unwrap_or_default(),
        text(ready, &["message"]).unwrap_or_default()
    ))
}

/// The rows of every kind in scope, sorted.
pub async fn rows(
    client: &kube::Client,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<Row>, kube::Error> {
    let mut rows = Vec::new();
    for kind in kinds::all() {
        for obj in kinds::list(client, &kind, namespace, selector).await? {
            rows.push(row(&kind, &obj));
        }
    }
    rows.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    Ok(rows)
}

/// The human form of `detail`.
pub fn describe(d: &Detail) -> String {
    let r = &d.row;
    let mut out = format!("{} {}/{}\n", r.kind, r.namespace, r.name);
    out.push_str(&format!("  Ready:        {} {}\n", r.ready, r.reason));
    if !r.message.is_empty() {
        out.push_str(&format!("  Message:      {}\n", r.message));
    }
    out.push_str(&format!(
        "  Token:        {}\n",
        r.token_id.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  Expires:      {}\n",
        r.expires_at.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  Secret:       {}\n",
        r.secret.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  Environment:  {}\n",
        d.environment_ready.as_deref().unwrap_or(&r.environment)
    ));
    if let Some(journal) = &d.open_journal {
        out.push_str(&format!(
            "  Open issuance journal: {journal} (settled by the next pass)\n"
        ));
    }
    out.push_str("  Conditions:\n");
    for c in &d.conditions {
        out.push_str(&format!(
            "    {}={} {}: {}\n",
            text(c, &["type"]).unwrap_or_default(),
            text(c, &["status"]).unwrap_or_default(),
            text(c, &["reason"]).unwrap_or_default(),
            text(c, &["message"]).unwrap_or_default()
        ));
    }
    out.push_str("  Next:\n");
    for n in &d.next {
        out.push_str(&format!("    {n}\n"));
    }
    out.push_str("  Events:\n");
    for e in &d.events {
        out.push_str(&format!("    {e}\n"));
    }
    out
}
