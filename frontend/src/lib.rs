//! Tether for Yew: components and hooks that keep a browser app connected to a Tether
//! server. The demo app built on them is the `tether-demo` crate (`demo/`).

pub mod components;
pub mod endpoint;
pub mod hooks;
pub mod http_socket;
pub mod link;
pub mod persist;
pub mod provider;
pub mod room;
pub mod shared_state;
pub mod socket;

pub use components::{ConnectionIndicator, OfflineBanner, QueueStatus};
pub use endpoint::default_socket_url;
pub use hooks::{UseWebSocket, UseWebSocketOptions, use_connection, use_link, use_status, use_websocket};
pub use link::{Link, LinkOptions, Status, TokenError, TokenProvider};
pub use persist::StorageWarning;
pub use provider::{TetherContext, WebSocketProvider};
pub use room::{Delivery, Message, Presence, UseChannel, UseRoom, use_channel, use_room, use_typing};
pub use shared_state::{UseSharedState, use_shared_state};
