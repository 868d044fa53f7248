//! Reads the counts `visit-counter` keeps: the whole document, or one visitor's count
//! when the input names one. Its manifest may only read the document, so it cannot
//! change a count even by mistake.

const VISITS: &str = "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c/visits";

kith_sdk::function!(report);
kith_sdk::manifest!(
    fuel = 50_000_000,
    timeout_ms = 2_000,
    memory_bytes = 4 << 20,
    state_read = &[VISITS]
);

fn report(input: &[u8]) -> Result<String, String> {
    let visitor = std::str::from_utf8(input).map_err(|e| format!("input is not UTF-8: {e}"))?;
    let doc = kith_sdk::state::Doc::new(VISITS);
    let err = |e: kith_sdk::state::StateError| e.to_string();
    if visitor.is_empty() {
        let all: serde_json::Value = doc.read().map_err(err)?;
        return Ok(serde_json::json!({
            "total": all.get("total").cloned().unwrap_or(0.into()),
            "by_visitor": all.get("by_visitor").cloned().unwrap_or_default(),
            "visits_logged": all.get("log").and_then(|l| l.as_array()).map_or(0, Vec::len),
        })
        .to_string());
    }
    let count: Option<i64> = doc.get(&format!("by_visitor/{visitor}")).map_err(err)?;
    Ok(serde_json::json!({ "visitor": visitor, "visits": count.unwrap_or(0) }).to_string())
}
