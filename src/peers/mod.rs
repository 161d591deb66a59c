//! How the node reaches its peers: the link table (one link per node pair,
//! each with one reader), the listener that admits the links peers open,
//! the prober that pings over the links and dials the missing ones, and
//! the limiter that keeps rejected handshakes from flooding the log.
//! Where the peers come from is not decided here (see `sources`).

pub(crate) mod limiter;
pub(crate) mod links;
pub(crate) mod listener;
pub(crate) mod probe;
