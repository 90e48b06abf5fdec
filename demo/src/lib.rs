//! The demo app's pages, built only on `tether-yew`'s public API: what an integrator
//! writes. `main.rs` is the entry point trunk builds into the bundle.

pub mod chat;
pub mod dashboard;
pub mod details;
pub mod echo;

pub use dashboard::Dashboard;
pub use details::ConnectionDetails;
pub use echo::EchoPage;
