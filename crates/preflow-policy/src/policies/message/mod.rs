//! Message-building policies: AssignMessage and RaiseFault, which share the Copy, Remove,
//! Add, Set and AssignVariable vocabulary.

mod assign_message;
mod ops;
mod raise_fault;

pub use assign_message::AssignMessage;
pub(crate) use assign_message::AssignMessagePolicy;
pub use ops::{
    Add, AssignTo, AssignVariable, Copy, MessageOps, MessageType, NamedTemplate, Payload, Remove,
    Selection, Set,
};
pub(crate) use ops::{apply_ops, message_ops, render};
pub use raise_fault::RaiseFault;
pub(crate) use raise_fault::RaiseFaultPolicy;
