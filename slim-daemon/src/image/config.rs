//! The slim image's config: the original's, with only the root file system and the history
//! replaced.
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ImageError;

/// The original config with only the root file system and the history replaced: every other
/// field (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal,
/// Healthcheck, Shell, OnBuild, and any the engine adds later) is carried over as it was.
pub fn slim_config(
    original: &[u8],
    diff_id: &str,
    created_by: &str,
    comment: &str,
    created: Option<&str>,
) -> Result<Vec<u8>, ImageError> {
    let bad = |e: serde_json::Error| {
        ImageError::Unsupported(format!("an image config that is not a JSON object ({e})"))
    };
    let mut config: Value = serde_json::from_slice(original).map_err(bad)?;
    let obj = config.as_object_mut().ok_or_else(|| {
        ImageError::Unsupported("an image config that is not a JSON object".into())
    })?;
    if let Some(created) = created {
        obj.insert("created".into(), json!(created));
    }
    let created = obj.get("created").cloned().unwrap_or(Value::Null);
    obj.insert(
        "rootfs".into(),
        json!({ "type": "layers", "diff_ids": [diff_id] }),
    );
    obj.insert(
        "history".into(),
        json!([{ "created": created, "created_by": created_by, "comment": comment }]),
    );
    Ok(serde_json::to_vec(&config).expect("JSON values serialise"))
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_unknown_fields_and_their_order() {
        let original = br#"{"architecture":"amd64","config":{"Cmd":["sh"],"StopSignal":"SIGINT","X-Future":1},"created":"2024-01-01T00:00:00Z","history":[{"created_by":"a"},{"created_by":"b"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;
        let out = slim_config(original, "sha256:cc", "slimd build", "from x", None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["config"]["X-Future"], 1);
        assert_eq!(v["config"]["StopSignal"], "SIGINT");
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:cc"]));
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert_eq!(v["history"][0]["created"], "2024-01-01T00:00:00Z");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "architecture",
                "config",
                "created",
                "history",
                "os",
                "rootfs"
            ]
        );
    }
}
