//! The one vocabulary that Tether's browser client, native clients and server share.
//!
//! Everything here is plain data and pure logic: no sockets, no clock, no runtime.
//! That is what lets the same code run in `wasm32` inside a browser and natively in
//! the server's tests.

pub mod frame;

pub use frame::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};
