//! The dashboard's entry point: `cargo xtask dist` bundles it from `admin.html` into
//! `dist/admin/`, and the server serves it at `/admin`.

use tether_demo::Dashboard;

fn main() {
    yew::Renderer::<Dashboard>::new().render();
}
