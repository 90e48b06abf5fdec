//! The demo's server side: the handlers of the demo's two channels, which
//! `tether-demo-server` registers with `tether-server`, and which the tests drive
//! through a real Tether.

pub mod chat;
pub mod poker;
