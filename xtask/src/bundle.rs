//! The release bundle, built with cargo, wasm-bindgen and wasm-opt: the same three steps
//! trunk takes for `trunk build --release`, without trunk.
//!
//! trunk is a development server first (`trunk serve`: live reload, proxying), and it is
//! the slowest tool to install here (about ten minutes of compiling on two cores). The
//! bundle needs none of what it adds, so `cargo xtask run`, `dist` and `test` build it
//! from the same `index.html`, `poker.html` and `admin.html` trunk reads: their
//! `data-trunk` links say which binary and stylesheet to bundle, and are replaced by
//! plain tags here.

use std::path::{Path, PathBuf};

use crate::setup;
use crate::sh::{self, Cmd, fail};

/// One page of the bundle: an HTML template whose `data-trunk` links name what it loads.
pub struct Page {
    /// The template, relative to the workspace root.
    template: &'static str,
    /// Where its files go, relative to `dist/`.
    subdir: &'static str,
}

/// The app at `/`, the poker table at `/poker/` and the dashboard at `/admin/`, each a
/// bundle of its own so that the app never loads the others' code.
const PAGES: [Page; 3] = [
    Page { template: "index.html", subdir: "" },
    Page { template: "poker.html", subdir: "poker" },
    Page { template: "admin.html", subdir: "admin" },
];

/// What a page's `<link data-trunk rel="rust" …>` asks for.
struct RustLink {
    /// The demo crate's binary (`data-bin`).
    binary: String,
    /// The cargo profile (`data-cargo-profile-release`).
    profile: String,
    /// wasm-opt's level and flags (`data-wasm-opt`, `data-wasm-opt-params`).
    wasm_opt: Vec<String>,
}

impl RustLink {
    fn of(page: &Page, html: &str) -> Result<RustLink, String> {
        let link = data_trunk_links(html)
            .into_iter()
            .find(|link| attribute(link, "rel").as_deref() == Some("rust"))
            .ok_or_else(|| format!("{} has no data-trunk rust link", page.template))?;
        let binary = attribute(link, "data-bin").ok_or_else(|| format!("{}: no data-bin", page.template))?;
        let profile = attribute(link, "data-cargo-profile-release").unwrap_or_else(|| "release".into());
        let level = attribute(link, "data-wasm-opt").unwrap_or_else(|| "z".into());
        let mut wasm_opt = vec![format!("-O{level}")];
        wasm_opt.extend(
            attribute(link, "data-wasm-opt-params").unwrap_or_default().split_whitespace().map(str::to_owned),
        );
        Ok(RustLink { binary, profile, wasm_opt })
    }
}

/// Builds every page into `dist` (emptied first): one cargo build per profile for all
/// their binaries, then per page wasm-bindgen, wasm-opt, the stylesheet and the page.
pub fn build(root: &Path, dist: &Path) -> Result<(), String> {
    let mut pages = Vec::new();
    for page in &PAGES {
        let html = read(&root.join(page.template))?;
        let rust = RustLink::of(page, &html)?;
        pages.push((page, html, rust));
    }
    let mut profiles: Vec<&str> = pages.iter().map(|(_, _, rust)| rust.profile.as_str()).collect();
    profiles.sort_unstable();
    profiles.dedup();
    for profile in profiles {
        sh::step(&format!("building the browser bundles (cargo build --profile {profile}, wasm32)"));
        let mut cargo =
            Cmd::new("cargo").args(["build", "-p", "tether-demo", "--target", "wasm32-unknown-unknown"]);
        cargo = cargo.args(["--profile", profile]);
        for (_, _, rust) in pages.iter().filter(|(_, _, rust)| rust.profile == profile) {
            cargo = cargo.args(["--bin", &rust.binary]);
        }
        cargo.dir(root).run()?;
    }
    if dist.exists() {
        std::fs::remove_dir_all(dist).map_err(|e| format!("emptying {}: {e}", dist.display()))?;
    }
    for (page, html, rust) in &pages {
        sh::step(&format!("bundling {} ({})", rust.binary, page.template));
        page.bundle(root, html, rust, &dist.join(page.subdir))?;
    }
    Ok(())
}

impl Page {
    fn bundle(&self, root: &Path, template: &str, rust: &RustLink, out: &Path) -> Result<(), String> {
        let binary = rust.binary.as_str();
        let built =
            root.join("target/wasm32-unknown-unknown").join(&rust.profile).join(format!("{binary}.wasm"));
        Cmd::new("wasm-bindgen")
            .args(["--target", "web", "--no-typescript", "--out-name", binary, "--out-dir"])
            .args([out, &built])
            .run()?;
        let bindgen_wasm = out.join(format!("{binary}_bg.wasm"));
        Cmd::new(setup::tools_bin().join("wasm-opt"))
            .args(&rust.wasm_opt)
            .args([&bindgen_wasm, Path::new("-o"), &bindgen_wasm])
            .run()?;
        // Names carry a hash of the contents, as trunk's do, so a cache never serves an
        // old module beside a new page.
        let js = hashed(&out.join(format!("{binary}.js")))?;
        let wasm = hashed(&bindgen_wasm)?;
        let public = if self.subdir.is_empty() { "/".to_owned() } else { format!("/{}/", self.subdir) };
        let mut tags = Vec::new();
        for link in data_trunk_links(template) {
            match attribute(link, "rel").as_deref() {
                Some("css") => {
                    let href = attribute(link, "href").ok_or("a css link without href")?;
                    let css = out.join(Path::new(&href).file_name().ok_or("a css href without a name")?);
                    std::fs::copy(root.join(&href), &css).map_err(|e| format!("copying {href}: {e}"))?;
                    tags.push(format!(r#"<link rel="stylesheet" href="{public}{}" />"#, hashed(&css)?));
                }
                Some("rust") => tags.extend([
                    format!(r#"<link rel="modulepreload" href="{public}{js}" crossorigin="anonymous" />"#),
                    format!(
                        r#"<link rel="preload" href="{public}{wasm}" as="fetch" type="application/wasm" crossorigin="anonymous" />"#
                    ),
                    format!(
                        "<script type=\"module\">import init from '{public}{js}'; await init({{ module_or_path: '{public}{wasm}' }});</script>"
                    ),
                ]),
                other => return fail(format!("{}: a data-trunk link of rel {other:?} is not bundled", self.template)),
            }
        }
        let index = out.join("index.html");
        std::fs::write(&index, replace_links(template, &tags.join("\n    ")))
            .map_err(|e| format!("writing {}: {e}", index.display()))?;
        report_size(out)
    }
}

/// The `<link data-trunk …>` elements of a page, in order.
fn data_trunk_links(html: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<link") {
        let tail = &rest[start..];
        let end = tail.find('>').map_or(tail.len(), |i| i + 1);
        let link = &tail[..end];
        if link.contains("data-trunk") {
            links.push(link);
        }
        rest = &tail[end..];
    }
    links
}

/// The page with its `data-trunk` links replaced by `tags`, at the first one's place.
fn replace_links(html: &str, tags: &str) -> String {
    let mut page = html.to_owned();
    for (i, link) in data_trunk_links(html).into_iter().enumerate() {
        page = page.replacen(link, if i == 0 { tags } else { "" }, 1);
    }
    page.lines().filter(|line| !line.trim().is_empty()).collect::<Vec<_>>().join("\n") + "\n"
}

/// The value of `name="…"` in a tag, which may be split over several lines.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let tag = tag.split_whitespace().collect::<Vec<_>>().join(" ");
    let pattern = format!(" {name}=\"");
    let start = tag.find(&pattern)? + pattern.len();
    tag[start..].split('"').next().map(str::to_owned)
}

/// Renames `path` to `stem-HASH.ext` (64-bit FNV-1a of its bytes) and returns the new name.
fn hashed(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or("a file name that is not text")?;
    let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
    let new_name = format!("{stem}-{hash:016x}.{ext}");
    let target: PathBuf = path.with_file_name(&new_name);
    std::fs::rename(path, &target).map_err(|e| format!("renaming {}: {e}", path.display()))?;
    Ok(new_name)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Prints the size of a bundle's code (`.wasm` and `.js`), raw and gzipped.
pub fn report_size(dist: &Path) -> Result<(), String> {
    let mut raw = 0;
    let mut gzipped = 0;
    let entries = std::fs::read_dir(dist).map_err(|e| format!("reading {}: {e}", dist.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let wanted = matches!(path.extension().and_then(|e| e.to_str()), Some("wasm" | "js"));
        if wanted {
            let bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
            let size = sh::gzip_size(&path)?;
            println!(
                "  {:<48} {:>8} B raw {:>8} B gzip",
                path.file_name().unwrap_or_default().to_string_lossy(),
                bytes,
                size
            );
            raw += bytes as usize;
            gzipped += size;
        }
    }
    println!("bundle (.wasm + .js): {raw} B raw, {gzipped} B gzip ({:.1} KB)", gzipped as f64 / 1000.0);
    Ok(())
}
