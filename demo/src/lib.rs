//! The demo app's pages, built only on `tether-yew`'s public API: what an integrator
//! writes. `main.rs` is the chat app's entry point, `poker_app.rs` the poker table's and
//! `admin.rs` the dashboard's; `shell` is what the first two share.

pub mod chat;
pub mod dashboard;
pub mod details;
pub mod echo;
pub mod poker;
pub mod shell;

pub use dashboard::Dashboard;
pub use details::ConnectionDetails;
pub use echo::EchoPage;
pub use poker::PokerTable;
