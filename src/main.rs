//! The `pulse` command: parse, call the library, turn the result into an
//! exit code.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use log::error;
use pulse::internals::{self as pulse_internals, Args, Command, USAGE};
use pulse::{Config, Node};

/// Exit codes, as documented in `--help`.
const OK: u8 = 0;
const FAILURE: u8 = 1;
const USAGE_ERROR: u8 = 2;
const INTERRUPTED: i32 = 130;
/// How long the console may take to show the last lines at exit.
const CONSOLE_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let args =
        match pulse_internals::parse(std::env::args_os().skip(1), |var| std::env::var(var).ok()) {
            Ok(args) => args,
            Err(why) => return usage_error(&why),
        };
    if let Command::Help = args.command() {
        print!("{USAGE}");
        return ExitCode::from(OK);
    }
    if let Command::Version = args.command() {
        println!("pulse {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::from(OK);
    }
    if let Command::Watch = args.command() {
        return ExitCode::from(watch(&args));
    }
    let config = match args.resolve() {
        Ok(config) => config,
        Err(why) => return usage_error(&why),
    };
    let code = match args.command() {
        Command::Status => match pulse_internals::status(
            &config,
            args.json,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ) {
            Ok(true) => OK,
            Ok(false) => FAILURE,
            Err(e) => {
                eprintln!("pulse: {e}");
                FAILURE
            }
        },
        Command::Health => match pulse_internals::health(&config, args.name.is_some()) {
            Ok(true) => OK,
            Ok(false) => FAILURE,
            Err(why) => {
                eprintln!("pulse: {why}");
                FAILURE
            }
        },
        _ => {
            let code = run(&config);
            // Lines still queued for a console that reads slowly; one nobody
            // reads must not keep the process from exiting.
            pulse_internals::finish_logging(CONSOLE_GRACE);
            code
        }
    };
    ExitCode::from(code)
}

/// A bad flag or value: the reason and where to read more, no more, so the
/// reason stays on the screen.
fn usage_error(why: &str) -> ExitCode {
    eprintln!("pulse: {why}\nTry 'pulse --help' for the options and their values.");
    ExitCode::from(USAGE_ERROR)
}

/// Draws the cluster from the shared log until SIGINT or SIGTERM (or once).
/// Needs no cookie: it only reads the log.
fn watch(args: &Args) -> u8 {
    let terminal = std::io::stdout().is_terminal();
    let opts = pulse_internals::WatchOptions {
        log_file: args
            .log_file
            .clone()
            .unwrap_or_else(|| pulse_internals::DEFAULT_LOG_FILE.into()),
        interval: Duration::from_millis(args.interval_ms()),
        once: args.once,
        json: args.json,
        terminal,
        colour: terminal && !args.no_color,
        width: args.columns,
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    if !opts.once {
        let handler = ctrlc::set_handler(move || {
            let _ = tx.try_send(());
        });
        if let Err(e) = handler {
            eprintln!("pulse: cannot install the signal handler: {e}");
            return FAILURE;
        }
    }
    match pulse_internals::watch(&opts, &mut std::io::stdout().lock(), &rx) {
        Ok(true) => OK,
        Ok(false) => FAILURE,
        Err(why) => {
            eprintln!("pulse: {why}");
            FAILURE
        }
    }
}

/// Runs a node until SIGINT or SIGTERM, then leaves gracefully. A second
/// signal exits at once.
fn run(config: &Config) -> u8 {
    // Before any thread starts: they all inherit it. A host that refuses
    // (a strict seccomp profile) costs only CPU, so that is not worth a word.
    let _ = pulse_internals::batch();
    if let Err(why) = pulse_internals::init_logging(&config.log_file) {
        eprintln!("pulse: {why}");
        return FAILURE;
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    static SIGNALLED: AtomicBool = AtomicBool::new(false);
    let handler = ctrlc::set_handler(move || {
        if SIGNALLED.swap(true, Ordering::SeqCst) {
            std::process::exit(INTERRUPTED);
        }
        let _ = tx.try_send(());
    });
    if let Err(e) = handler {
        error!("cannot install the signal handler: {e}");
        return FAILURE;
    }
    pulse_internals::raise_for(pulse_internals::MAX_INBOUND);
    let node = match Node::start(config) {
        Ok(node) => node,
        Err(e) => {
            error!("{e}");
            return FAILURE;
        }
    };
    // The handler's sender lives for the whole process, so this returns
    // only on a signal.
    let _ = rx.recv();
    node.shutdown();
    OK
}
