//! Fuzzing Tether on the stable toolchain.
//!
//! libFuzzer's usual setup (`cargo fuzz`) wants a nightly compiler for its sanitizer
//! flags; this crate needs nothing but stable Rust. Each [`targets`] module is one
//! thing Tether must survive (a decoder, the outbox's snapshot, tokens, the client
//! core, a live server), driven by bytes: the fuzzer ([`engine`]) makes them at random
//! or by mutating earlier inputs ([`mutate`]), and the targets read them through
//! structure-aware generators ([`generate`]), so that a flipped byte becomes a missing field,
//! a duplicated key or a frame out of order rather than only noise.
//!
//! An input that panics or breaks a target's invariant is saved under
//! `fuzz/reproducers/<target>/` ([`reproducers`]) and replayed by this crate's tests
//! from then on.

pub mod engine;
pub mod generate;
pub mod mutate;
pub mod reproducers;
pub mod targets;

pub use engine::{Budget, Outcome, Report, Target};
