//! pulse inside another program: two nodes started from code share a
//! registry directory; the program prints what the first one sees, stops
//! the second, prints the leave, and stops the first.
//!
//! ```sh
//! cargo run --example embed
//! ```

use std::time::{Duration, Instant};

use pulse::EpmdMode;
use pulse::{Config, Event, Node};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("pulse-embed-{}", std::process::id()));
    let config = |name: &str| -> Result<Config, pulse::ConfigError> {
        let mut config = Config::for_node(name, "embed-example")?;
        config.sync_dir = dir.clone();
        config.interval = Duration::from_millis(200);
        config.timeout = Duration::from_millis(100);
        config.ttl = Duration::from_secs(1);
        // Both nodes live in this process; the registry is all they need.
        config.epmd = EpmdMode::Off;
        Ok(config)
    };
    let a = Node::start(&config("a@127.0.0.1")?)?;
    let b = Node::start(&config("b@127.0.0.1")?)?;
    let events = a.events();

    let deadline = Instant::now() + Duration::from_secs(5);
    while a.members().iter().filter(|m| m.alive).count() < 2 {
        if Instant::now() >= deadline {
            return Err(format!("a never saw both nodes alive: {:?}", a.members()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for member in a.members() {
        println!("a sees {} (alive: {})", member.name, member.alive);
    }

    b.shutdown();
    loop {
        match events.recv_timeout(Duration::from_secs(5))? {
            event @ Event::Left(_) => {
                println!("a: {event}");
                break;
            }
            event => println!("a: {event}"),
        }
    }
    a.shutdown();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
