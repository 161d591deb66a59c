//! The command line's own subcommands, which run no node: `pulse status`
//! and `pulse health` (one round of pings from a short-lived hidden node),
//! `pulse watch` (the cluster drawn from the shared log), and the JSON
//! writer both use for `--json`.

pub(crate) mod json;
pub(crate) mod status;
pub(crate) mod watch;
