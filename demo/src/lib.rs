//! The demo app's pages, built only on `tether-yew`'s public API: what an integrator
//! writes. `main.rs` is the app's entry point and `admin.rs` the dashboard's.

pub mod chat;
pub mod dashboard;
pub mod details;
pub mod echo;
pub mod poker;

pub use dashboard::Dashboard;
pub use details::ConnectionDetails;
pub use echo::EchoPage;
pub use poker::PokerTable;
