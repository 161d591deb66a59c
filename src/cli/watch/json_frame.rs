//! A frame as one line of JSON, for scripts (`watch --json`; PROTOCOL.md
//! has the schema).

use super::model::{Cell, Frame};
use super::render::time_of_day;
use crate::cli::json;

/// One frame as one line of JSON (PROTOCOL.md has the schema).
pub(super) fn render(frame: &Frame) -> String {
    let mut out = String::new();
    let mut o = json::Object::new(&mut out);
    let nodes = o.key("nodes");
    nodes.push('[');
    for (i, c) in frame.columns.iter().enumerate() {
        if i > 0 {
            nodes.push_str(", ");
        }
        json::string(nodes, c);
    }
    nodes.push(']');
    let rows = o.key("rows");
    rows.push('[');
    for (i, row) in frame.rows.iter().enumerate() {
        if i > 0 {
            rows.push_str(", ");
        }
        let mut r = json::Object::new(rows);
        r.str("node", &row.node)
            .raw("age_ms", row.age_ms)
            .raw("stale", row.stale);
        let links = r.key("links");
        links.push('{');
        let listed = frame.columns.iter().zip(&row.cells);
        for (j, (c, cell)) in listed.filter(|(_, c)| **c != Cell::Unlisted).enumerate() {
            if j > 0 {
                links.push_str(", ");
            }
            json::string(links, c);
            links.push_str(if *cell == Cell::Up {
                ": true"
            } else {
                ": false"
            });
        }
        links.push('}');
        r.end();
    }
    rows.push(']');
    let events = o.key("events");
    events.push('[');
    for (i, e) in frame.events.iter().enumerate() {
        if i > 0 {
            events.push_str(", ");
        }
        let mut ev = json::Object::new(events);
        ev.str("time", &time_of_day(e.time_ms))
            .str("node", &e.node)
            .str("event", e.what.word())
            .str("detail", &e.detail)
            .raw("count", e.count);
        let seen_by = ev.key("seen_by");
        seen_by.push('[');
        for (i, by) in e.seen_by.iter().enumerate() {
            if i > 0 {
                seen_by.push_str(", ");
            }
            json::string(seen_by, by);
        }
        seen_by.push(']');
        ev.end();
    }
    events.push(']');
    o.raw("links_up", frame.links_up)
        .raw("links", frame.links)
        .raw("stale_rows", frame.stale_rows)
        .raw("hidden_nodes", frame.hidden_columns);
    o.end();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::Cluster;
    use super::super::parse::parse_line;
    use super::*;

    #[test]
    fn json_frame() {
        let mut c = Cluster::default();
        for l in [
            "05:10:00.300 [INFO] w3@127.0.0.63[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": true]",
            "05:10:01.100 [WARN] node w3@127.0.0.63 is down: connection refused",
            "05:10:01.100 [INFO] w1@127.0.0.61[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false]",
            "05:10:01.200 [WARN] node w3@127.0.0.63 is down: connection refused",
            "05:10:01.200 [INFO] w2@127.0.0.62[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false]",
        ] {
            c.add(parse_line(l).expect("parses"));
        }
        let f = c.frame(2500, 3000, 60_000);
        let j = render(&f);
        assert!(j.starts_with("{\"nodes\": [\"w1@127.0.0.61\", "), "{j}");
        assert!(
            j.contains("{\"node\": \"w1@127.0.0.61\", \"age_ms\": 2600, \"stale\": false, \"links\": {\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false}}"),
            "{j}"
        );
        assert!(
            j.contains("\"event\": \"down\", \"detail\": \"connection refused\", \"count\": 2")
        );
        assert!(
            j.ends_with("\"links_up\": 4, \"links\": 6, \"stale_rows\": 1, \"hidden_nodes\": 0}\n")
        );
        assert_eq!(j.matches('\n').count(), 1);
    }
}
