//! Conversion between `v1alpha1` and `v1beta1` objects, as the conversion webhook serves it.
//!
//! It works on the JSON objects, not on typed copies: every field a conversion does not move
//! passes through as it came, so a round trip cannot add defaults or drop what a later release
//! added. What `v1beta1` cannot say of a `v1alpha1` object (a lifetime written in minutes, a
//! `renewBefore` given without a `rotation` block) travels in one annotation,
//! [`ALPHA_FIELDS_ANNOTATION`], and is restored on the way back. Both round trips are lossless
//! for every object the schema admits (`tests` below, over generated objects).
//!
//! Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::GROUP;

pub const V1ALPHA1: &str = "tokens.frontegg-operator.io/v1alpha1";
pub const V1BETA1: &str = "tokens.frontegg-operator.io/v1beta1";
/// On a `v1beta1` object: what its `v1alpha1` form said that `v1beta1` has no field for.
/// Reserved: the conversion owns it.
pub const ALPHA_FIELDS_ANNOTATION: &str = "conversion.tokens.frontegg-operator.io/v1alpha1";
/// Kinds whose versions differ; the environments' versions have one schema.
const TOKEN_KINDS: [&str; 4] = [
    "UserApiToken",
    "UserAccessToken",
    "TenantApiToken",
    "TenantAccessToken",
];
/// Status fields `v1beta1` keeps under `status.internal`.
const INTERNAL_FIELDS: [&str; 3] = ["settledAttempt", "handledRotationRequest", "lastAttempt"];

/// Why an object could not be converted. Says nothing of the object's content.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConversionError {
    #[error("the object is not a JSON object with apiVersion and kind")]
    NotAnObject,
    #[error("cannot convert {from} to {to}")]
    UnknownVersion { from: String, to: String },
}

/// What a `v1alpha1` object said that `v1beta1` cannot.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlphaFields {
    /// The lifetime was `expiresInMinutes` with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in_minutes: Option<u64>,
    /// `renewBefore` was set without a `rotation` block.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    rotation_absent: bool,
}

impl AlphaFields {
    fn is_empty(&self) -> bool {
        *self == AlphaFields::default()
    }
}

/// Converts one object to `desired` (`group/version`). An object already in that version, and
/// the environments' kinds, only get the new `apiVersion`.
pub fn convert(mut object: Value, desired: &str) -> Result<Value, ConversionError> {
    let from = version_of(&object)?;
    let token = object
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| TOKEN_KINDS.contains(&k));
    let obj = object.as_object_mut().ok_or(ConversionError::NotAnObject)?;
    match (from.as_str(), desired) {
        (a, b) if a == b || !token => {}
        (V1ALPHA1, V1BETA1) => to_beta(obj),
        (V1BETA1, V1ALPHA1) => to_alpha(obj),
        (a, b) => {
            return Err(ConversionError::UnknownVersion {
                from: a.into(),
                to: b.into(),
            });
        }
    }
    if !desired.starts_with(&format!("{GROUP}/")) {
        return Err(ConversionError::UnknownVersion {
            from,
            to: desired.into(),
        });
    }
    obj.insert("apiVersion".into(), Value::String(desired.into()));
    Ok(object)
}

fn version_of(object: &Value) -> Result<String, ConversionError> {
    let version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    match (version, kind) {
        (Some(v), Some(_)) => Ok(v.to_string()),
        _ => Err(ConversionError::NotAnObject),
    }
}

fn to_beta(obj: &mut Map<String, Value>) {
    let mut kept = AlphaFields::default();
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        kept = spec_to_beta(spec);
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let internal: Map<String, Value> = INTERNAL_FIELDS
            .iter()
            .filter_map(|f| status.remove(*f).map(|v| (f.to_string(), v)))
            .collect();
        if !internal.is_empty() {
            status.insert("internal".into(), Value::Object(internal));
        }
    }
    let annotation = (!kept.is_empty())
        .then(|| serde_json::to_string(&kept).ok())
        .flatten();
    set_annotation(obj, annotation);
}

/// Moves the spec's fields to their `v1beta1` places; returns what has no place there.
fn spec_to_beta(spec: &mut Map<String, Value>) -> AlphaFields {
    let mut kept = AlphaFields::default();
    // The schema admits whole minutes only; anything else (no stored object can hold it) is
    // dropped rather than carried into an annotation the other way.
    if let Some(minutes) = spec.remove("expiresInMinutes").and_then(|m| m.as_u64()) {
        if !spec.contains_key("expiresIn") {
            spec.insert("expiresIn".into(), Value::String(format!("{minutes}m")));
        }
        kept.expires_in_minutes = Some(minutes);
    }
    if let Some(renew) = spec.remove("renewBefore") {
        kept.rotation_absent = !spec.contains_key("rotation");
        if let Some(rotation) = object_entry(spec, "rotation") {
            rotation.insert("renewBefore".into(), renew);
        }
    }
    let import = spec.remove("import");
    let token_id = spec.remove("tokenId");
    let existing = match (import, token_id) {
        (Some(Value::Object(mut import)), _) => {
            let mut existing = Map::new();
            if let Some(id) = import.remove("tokenId") {
                existing.insert("id".into(), id);
            }
            existing.extend(import);
            Some(Value::Object(existing))
        }
        (_, Some(id)) => Some(serde_json::json!({ "id": id })),
        (other, None) => other,
    };
    if let Some(existing) = existing {
        spec.insert("existingToken".into(), existing);
    }
    kept
}

fn to_alpha(obj: &mut Map<String, Value>) {
    let kept = take_annotation(obj);
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec_to_alpha(spec, kept);
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(Value::Object(internal)) = status.remove("internal")
    {
        status.extend(internal);
    }
}

fn spec_to_alpha(spec: &mut Map<String, Value>, kept: AlphaFields) {
    if let Some(minutes) = kept.expires_in_minutes {
        let written = spec.get("expiresIn").and_then(Value::as_str);
        if written == Some(format!("{minutes}m").as_str()) {
            spec.remove("expiresIn");
            spec.insert("expiresInMinutes".into(), minutes.into());
        }
    }
    if let Some(Value::Object(rotation)) = spec.get_mut("rotation")
        && let Some(renew) = rotation.remove("renewBefore")
    {
        let empty = rotation.is_empty();
        spec.insert("renewBefore".into(), renew);
        if empty && kept.rotation_absent {
            spec.remove("rotation");
        }
    }
    match spec.remove("existingToken") {
        Some(Value::Object(mut existing)) if existing.contains_key("secretRef") => {
            let mut import = Map::new();
            if let Some(id) = existing.remove("id") {
                import.insert("tokenId".into(), id);
            }
            import.extend(existing);
            spec.insert("import".into(), Value::Object(import));
        }
        Some(Value::Object(mut existing)) => {
            if let Some(id) = existing.remove("id") {
                spec.insert("tokenId".into(), id);
            }
        }
        Some(other) => {
            spec.insert("existingToken".into(), other);
        }
        None => {}
    }
}

/// The entry `key` of `map` as an object, created empty when absent. None when it holds
/// something else (the schema forbids that; the value is then left as it is).
fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    map.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

fn set_annotation(obj: &mut Map<String, Value>, value: Option<String>) {
    let Some(meta) = object_entry(obj, "metadata") else {
        return;
    };
    match value {
        Some(value) => {
            if let Some(annotations) = object_entry(meta, "annotations") {
                annotations.insert(ALPHA_FIELDS_ANNOTATION.into(), Value::String(value));
            }
        }
        None => {
            if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
                annotations.remove(ALPHA_FIELDS_ANNOTATION);
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
}

/// Removes the annotation and reads it. One that does not parse (edited by hand) is dropped:
/// the object converts as if it had none.
fn take_annotation(obj: &mut Map<String, Value>) -> AlphaFields {
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        return AlphaFields::default();
    };
    let Some(Value::Object(annotations)) = meta.get_mut("annotations") else {
        return AlphaFields::default();
    };
    let raw = annotations.remove(ALPHA_FIELDS_ANNOTATION);
    if annotations.is_empty() {
        meta.remove("annotations");
    }
    raw.as_ref()
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
