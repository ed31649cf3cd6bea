//! A compare-and-set register: read, write, cas; initially nil.
//!
//! Owns: the model and its operation types. Must not: know any file format;
//! `crate::corpus` turns Jepsen logs into these operations.
//! Caveat: a failed cas (`fail`) is not given to the checker at all: under
//! Jepsen's semantics it did not happen. An unknown read constrains nothing
//! and is dropped by the decoder for the same reason.

use std::fmt::Debug;
use std::hash::Hash;

use crate::linearizability::Model;

/// What was asked of the register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp<V> {
    Read,
    Write(V),
    Cas { from: V, to: V },
}

/// What an operation that completed `ok` returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterRet<V> {
    /// What a read saw; `None` is nil (never written).
    Value(Option<V>),
    /// A write, or a cas that swapped, was acknowledged.
    Done,
}

/// The register's sequential specification; the state is its value.
#[derive(Clone, Debug, Default)]
pub struct CasRegister<V> {
    pub initial: Option<V>,
}

impl<V: Clone + Eq + Hash + Debug> Model for CasRegister<V> {
    type State = Option<V>;
    type Input = RegisterOp<V>;
    type Output = RegisterRet<V>;

    fn init(&self) -> Option<V> {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &Option<V>,
        input: &RegisterOp<V>,
        output: Option<&RegisterRet<V>>,
    ) -> Option<Option<V>> {
        match (input, output) {
            (RegisterOp::Read, Some(RegisterRet::Value(seen))) => {
                (seen == state).then(|| state.clone())
            }
            // An unknown read changes nothing (callers normally drop it).
            (RegisterOp::Read, None) => Some(state.clone()),
            (RegisterOp::Write(v), None | Some(RegisterRet::Done)) => Some(Some(v.clone())),
            // An unknown cas whose compare fails here has no effect: that is
            // the same as never happening, which the search already covers.
            (RegisterOp::Cas { from, to }, None | Some(RegisterRet::Done)) => {
                (state.as_ref() == Some(from)).then(|| Some(to.clone()))
            }
            // A read acknowledged without a value, or a write returning one:
            // the decoder never builds these.
            (RegisterOp::Read, Some(RegisterRet::Done))
            | (RegisterOp::Write(_) | RegisterOp::Cas { .. }, Some(RegisterRet::Value(_))) => {
                panic!("malformed register operation: {input:?} returning {output:?}")
            }
        }
    }
}
