//! A visit counter kept in application state (ABI 2): each call counts one visit by the
//! visitor named in the input, in the document `VISITS`, and answers with the totals.
//! Run it on any node: the counts add up across nodes (Automerge counters), and
//! `visit-report` reads them back wherever it runs.
//!
//! `VISITS` is `NAMESPACE/NAME`; the namespace here is the examples' namespace, whose
//! secret key is public (`sdk/functions/example-namespace.key`: anyone can grant in it,
//! so never keep real data there). Its owner must grant the function before it may
//! touch the document (`kith grant NAMESPACE --function ID`). For your own app, use
//! your publisher key's id (`kith key list`).

const VISITS: &str = "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c/visits";

kith_sdk::function!(visit);
kith_sdk::manifest!(
    fuel = 50_000_000,
    timeout_ms = 3_000,
    memory_bytes = 2 << 20,
    state_write = &[VISITS]
);

#[derive(serde::Serialize)]
struct Visit<'a> {
    visitor: &'a str,
    at_ms: i64,
}

fn visit(input: &[u8]) -> Result<String, String> {
    let visitor = std::str::from_utf8(input).map_err(|e| format!("input is not UTF-8: {e}"))?;
    let visitor = if visitor.is_empty() {
        "anonymous"
    } else {
        visitor
    };
    if visitor.contains('/') || visitor.len() > 64 {
        return Err("a visitor name is at most 64 bytes, without '/'".into());
    }
    let doc = kith_sdk::state::Doc::new(VISITS);
    let err = |e: kith_sdk::state::StateError| e.to_string();
    let total = doc.increment("total", 1).map_err(err)?;
    let yours = doc
        .increment(&format!("by_visitor/{visitor}"), 1)
        .map_err(err)?;
    doc.append(
        "log",
        &Visit {
            visitor,
            at_ms: kith_sdk::now_ms(),
        },
    )
    .map_err(err)?;
    Ok(serde_json::json!({ "visitor": visitor, "yours": yours, "total": total }).to_string())
}
