//! What pulse asks of the operating system, kept apart from the protocols
//! that use it: socket deadlines, an `accept` thread that can be stopped,
//! the descriptor limit, and the scheduling policy of the binary's threads.

pub(crate) mod acceptor;
pub(crate) mod deadline;
pub(crate) mod fds;
pub(crate) mod sched;
