//! Tether for Yew: components and hooks that keep a browser app connected to a Tether
//! server, and the pages of the demo app built on them.

pub mod echo;
pub mod endpoint;
pub mod hooks;
pub mod link;
pub mod provider;
pub mod socket;

pub use echo::EchoPage;
pub use endpoint::default_socket_url;
