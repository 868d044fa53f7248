//! Takes `{"items": [{"name": "...", "price": 1.5, "qty": 2}, ...]}` and returns totals.
use serde::{Deserialize, Serialize};

kith_sdk::function!(transform);

#[derive(Deserialize)]
struct Order {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    name: String,
    price: f64,
    #[serde(default = "one")]
    qty: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize)]
struct Summary {
    count: usize,
    total: f64,
    most_expensive: Option<String>,
    names: Vec<String>,
}

fn transform(input: &[u8]) -> Result<Vec<u8>, String> {
    let order: Order = serde_json::from_slice(input).map_err(|e| format!("bad order JSON: {e}"))?;
    kith_sdk::log(
        kith_sdk::LogLevel::Info,
        &format!("{} items", order.items.len()),
    );
    let total = order.items.iter().map(|i| i.price * f64::from(i.qty)).sum();
    let most_expensive = order
        .items
        .iter()
        .max_by(|a, b| a.price.total_cmp(&b.price))
        .map(|i| i.name.clone());
    let mut names: Vec<String> = order.items.iter().map(|i| i.name.to_uppercase()).collect();
    names.sort();
    let summary = Summary {
        count: order.items.len(),
        total,
        most_expensive,
        names,
    };
    serde_json::to_vec(&summary).map_err(|e| e.to_string())
}
