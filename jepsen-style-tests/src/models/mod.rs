//! Sequential specifications for the linearizability checker.
//!
//! Owns: [`register::CasRegister`] (the Jepsen compare-and-set register of the
//! checker corpus) and [`seat::SeatModel`] (one seat of the booking store).
//! Must not: do I/O or read clocks; a model is a pure function of
//! (state, input, output), so the search can memoise on its states.
//! Caveat: a model's states are hashed and cloned on every step of the search;
//! keep them small.

pub mod register;
pub mod seat;
