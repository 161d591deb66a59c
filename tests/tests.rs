//! Integration tests: real `pulse` processes on 127.0.0.x, each test with its
//! own registry and log in a temp dir. One test binary keeps link time down.

mod cli;
mod cluster;
mod dns;
mod embed;
mod epmd;
mod erlang;
mod faults;
mod forged;
mod fresh_epmd;
mod halfopen;
mod hostile;
mod join;
mod links;
mod mixed;
mod otp;
mod overload;
mod process;
mod registry;
mod s3;
mod s3_hosts;
mod util;
mod watch;
