//! Who a connection is: ids and the identity handed out in dev mode.

/// A random id with a readable prefix, such as `c_3f9a1c0e5b7d2a41`.
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}", fastrand::u64(..))
}

/// Colours for avatars, readable on light and dark backgrounds.
const PALETTE: &[&str] =
    &["#1f6feb", "#d29922", "#8957e5", "#1a7f37", "#cf222e", "#bf3989", "#0a7ea4", "#9a6700"];

/// Dev mode: no token, so the display name is taken at its word and the id is fresh.
/// A name is trimmed to 32 characters; an empty or missing one becomes `guest-xxxx`.
pub fn dev_user(name: Option<&str>) -> tether_shared::User {
    let id = random_id("u");
    let name: String =
        name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or_default().chars().take(32).collect();
    let name = if name.is_empty() { format!("guest-{}", &id[2..6]) } else { name };
    tether_shared::User { color: color_for(&id).into(), id, name }
}

/// A stable colour for a user id.
pub fn color_for(id: &str) -> &'static str {
    let hash = id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[hash as usize % PALETTE.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_names_are_trimmed_and_defaulted() {
        assert_eq!(dev_user(Some("  Ada ")).name, "Ada");
        assert!(dev_user(None).name.starts_with("guest-"));
        assert!(dev_user(Some("   ")).name.starts_with("guest-"));
        assert_eq!(dev_user(Some(&"x".repeat(100))).name.chars().count(), 32);
    }

    #[test]
    fn colours_are_stable_per_user() {
        assert_eq!(color_for("u_1"), color_for("u_1"));
        assert!(PALETTE.contains(&color_for("anything")));
    }
}
