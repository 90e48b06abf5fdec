//! Who a connection is: ids and the identity handed out in dev mode.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A random id with a readable prefix, such as `c_3f9a1c0e5b7d2a41`.
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}", fastrand::u64(..))
}

/// Colours for avatars, readable on light and dark backgrounds, in order of hue (red,
/// orange, gold, green, teal, blue, purple, magenta), so that two entries far apart in the
/// list are far apart to the eye.
const PALETTE: [&str; 8] =
    ["#cf222e", "#d4661a", "#9a7b00", "#1a7f37", "#0a7ea4", "#1f6feb", "#8957e5", "#bf3989"];

/// How far apart on the palette's wheel two dev users who arrive one after the other
/// are: three steps of eight, about 135° of hue, so red never follows orange.
const DEV_COLOUR_DISTANCE: usize = 3;

/// The palette entry of the last dev user handed out (`usize::MAX`: none yet).
static LAST_DEV_COLOUR: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Dev mode: no token, so the display name is taken at its word and the id is fresh.
/// A name is trimmed to 32 characters; an empty or missing one becomes `guest-xxxx`.
///
/// A user's colour follows from their id (so that a refreshed token keeps it), and the
/// id is drawn until its colour is far from the previous dev user's: two people who
/// open the demo side by side can tell each other apart.
pub fn dev_user(name: Option<&str>) -> tether_shared::User {
    let id = dev_id_after(LAST_DEV_COLOUR.load(Ordering::Relaxed));
    LAST_DEV_COLOUR.store(palette_index(&id), Ordering::Relaxed);
    let name: String =
        name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or_default().chars().take(32).collect();
    let name = if name.is_empty() { format!("guest-{}", &id[2..6]) } else { name };
    let color = color_for(&id);
    tether_shared::User::new(id, name, color)
}

/// A fresh dev user id whose colour is far from palette entry `last` (any colour when
/// `last` is none).
fn dev_id_after(last: usize) -> String {
    loop {
        let id = random_id("u");
        if last >= PALETTE.len() || wheel_distance(palette_index(&id), last) >= DEV_COLOUR_DISTANCE {
            return id;
        }
    }
}

/// A stable colour for a user id.
pub fn color_for(id: &str) -> &'static str {
    PALETTE[palette_index(id)]
}

fn palette_index(id: &str) -> usize {
    let hash = id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    hash as usize % PALETTE.len()
}

/// Steps between two palette entries, the short way round.
fn wheel_distance(a: usize, b: usize) -> usize {
    let d = a.abs_diff(b);
    d.min(PALETTE.len() - d)
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
        let user = dev_user(Some("Ada"));
        assert_eq!(user.color, color_for(&user.id), "a refreshed token keeps the colour");
    }

    #[test]
    fn dev_users_who_arrive_one_after_the_other_get_colours_far_apart() {
        let mut last = usize::MAX;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let colour = palette_index(&dev_id_after(last));
            if last != usize::MAX {
                assert!(
                    wheel_distance(colour, last) >= DEV_COLOUR_DISTANCE,
                    "{} then {}",
                    PALETTE[last],
                    PALETTE[colour]
                );
            }
            seen.insert(colour);
            last = colour;
        }
        assert_eq!(seen.len(), PALETTE.len(), "every colour is still used");
    }
}
