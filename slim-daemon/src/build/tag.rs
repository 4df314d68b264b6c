//! The default name of a slim image.

/// `app:1.0` → `app:1.0-slim`, `app` → `app:latest-slim`, `reg:5000/app` →
/// `reg:5000/app:latest-slim`, `app@sha256:…` → `app:slim`, and an image id → `slimd/<id>:slim`.
pub fn slim_tag(reference: &str, image_id: &str) -> String {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
    if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_hexdigit()) && hex.starts_with(bare) {
        return format!("slimd/{}:slim", &hex[..12.min(hex.len())]);
    }
    if let Some((name, _digest)) = reference.split_once('@') {
        return format!("{name}:slim");
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    if reference[last_slash..].contains(':') {
        format!("{reference}-slim")
    } else {
        format!("{reference}:latest-slim")
    }
}

#[cfg(test)]
mod tests {
    use super::slim_tag;

    const ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn default_tags() {
        assert_eq!(slim_tag("app:1.0", ID), "app:1.0-slim");
        assert_eq!(slim_tag("app", ID), "app:latest-slim");
        assert_eq!(
            slim_tag("reg:5000/team/app", ID),
            "reg:5000/team/app:latest-slim"
        );
        assert_eq!(slim_tag("reg:5000/app:2", ID), "reg:5000/app:2-slim");
        assert_eq!(slim_tag("app@sha256:feed", ID), "app:slim");
        assert_eq!(slim_tag(ID, ID), "slimd/0123456789ab:slim");
        assert_eq!(slim_tag("0123456789ab", ID), "slimd/0123456789ab:slim");
    }
}
