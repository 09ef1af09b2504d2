//! `docs/protocol.md` against the declarations it describes: its route table names every route
//! and nothing else, its frames are the protocol's frame types, its grants table is each
//! handler's spec. A change to the protocol or the route table that the page does not follow
//! fails here.

use std::collections::BTreeSet;

use wsstack_handlers::protocol::ClientMessage;
use wsstack_routes::{Handler, ROUTES, Table};

fn page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md")
}

/// The rows of the first table after `heading` (a line of the page), as cells.
fn table_after(page: &str, heading: &str) -> Vec<Vec<String>> {
    let start = page
        .find(heading)
        .unwrap_or_else(|| panic!("docs/protocol.md has no {heading:?}"));
    page[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

#[test]
fn the_route_table_names_every_route_once() {
    let rows = table_after(&page(), "The protocol a client sees:");
    let documented: Vec<&str> = rows.iter().map(|r| unquote(&r[0])).collect();
    let declared: BTreeSet<&str> = ROUTES.iter().map(|r| r.key).collect();
    assert_eq!(
        documented.iter().copied().collect::<BTreeSet<_>>(),
        declared,
        "docs/protocol.md's route table"
    );
    assert_eq!(documented.len(), declared.len(), "a route documented twice");
    // Every client action's documented example is a message of its type.
    for m in ClientMessage::examples() {
        let row = rows
            .iter()
            .find(|r| unquote(&r[0]) == m.action())
            .expect("documented");
        assert!(
            row[1].contains(&format!("\"action\": \"{}\"", m.action())),
            "{}: the row shows no example message",
            m.action()
        );
    }
}

#[test]
fn every_frame_type_is_documented() {
    let page = page();
    let doc = wsstack_handlers::protocol::asyncapi_document();
    let frames = doc["operations"]
        .as_object()
        .expect("operations")
        .values()
        .filter(|op| op["action"] == "send")
        .count();
    assert!(frames >= 8);
    for kind in [
        "message",
        "direct",
        "push",
        "connections",
        "joined",
        "left",
        "accepted",
        "error",
    ] {
        assert!(
            doc["components"]["messages"][format!("{kind}Frame")].is_object(),
            "{kind}"
        );
        assert!(
            page.contains(&format!("\"type\": \"{kind}\"")),
            "docs/protocol.md shows no `{kind}` frame"
        );
    }
}

#[test]
fn the_grants_table_is_each_handlers_spec() {
    let rows = table_after(
        &page(),
        "Each role gets exactly the actions its handler calls",
    );
    let documented: BTreeSet<String> = rows.iter().map(|r| unquote(&r[0]).to_owned()).collect();
    let with_tables: BTreeSet<String> = Handler::ALL
        .into_iter()
        .filter(|h| Table::ALL.iter().any(|t| !h.table_actions(*t).is_empty()) || h.is_route())
        .map(|h| h.name().to_owned())
        .collect();
    assert_eq!(documented, with_tables, "handlers in the grants table");
    for row in &rows {
        let h = Handler::from_name(unquote(&row[0])).expect("a handler");
        for (i, table) in Table::ALL.into_iter().enumerate() {
            let want: Vec<&str> = h
                .table_actions(table)
                .iter()
                .map(|a| a.iam_action().trim_start_matches("dynamodb:"))
                .collect();
            assert_eq!(row[i + 1], want.join(", "), "{} on {table:?}", h.name());
        }
    }
}
