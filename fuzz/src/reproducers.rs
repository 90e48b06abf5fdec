//! Saved failing inputs: `fuzz/reproducers/<target>/<hash>.bin`, the input's bytes as
//! the target read them, with `<hash>.txt` beside it saying what failed. This crate's
//! tests replay every one, so a bug once found stays fixed.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The folder of reproducers in this workspace: `fuzz/reproducers/`.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/reproducers"))
}

/// Saves `input` as a reproducer for `target` under `root`, with `message` beside it;
/// returns the input's path. The name is a hash of the bytes, so saving twice is
/// harmless.
pub fn save(root: &Path, target: &str, input: &[u8], message: &str) -> std::io::Result<PathBuf> {
    let folder = root.join(target);
    std::fs::create_dir_all(&folder)?;
    let mut hasher = std::hash::DefaultHasher::new();
    input.hash(&mut hasher);
    let path = folder.join(format!("{:016x}.bin", hasher.finish()));
    std::fs::write(&path, input)?;
    std::fs::write(path.with_extension("txt"), format!("{message}\n"))?;
    Ok(path)
}

/// Every saved reproducer under `root`: (target, path), sorted.
pub fn all(root: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(targets) = std::fs::read_dir(root) else { return found };
    for target in targets.flatten().filter(|entry| entry.path().is_dir()) {
        let name = target.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(target.path()) else { continue };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|ext| ext == "bin") {
                found.push((name.clone(), path));
            }
        }
    }
    found.sort();
    found
}

/// The target a reproducer belongs to: the name of its folder.
pub fn target_of(path: &Path) -> Option<String> {
    Some(path.parent()?.file_name()?.to_string_lossy().into_owned())
}
