//! Metrics, table sizes and the markdown report.

use crate::load::State;
use crate::Result;
use sqlx::Row;

/// Sizes are compared from the first level holding at least this many
/// events: below it fixed page overheads dominate.
pub const SIZE_BASE_MIN: u64 = 100_000;
/// How far from its base a metric may be and still count as flat.
pub const TOLERANCE: f64 = 0.2;

/// How a metric is printed and compared.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// Latency; compared with the first level.
    Micros,
    /// Throughput; compared with the first level.
    Rate,
    /// Bytes per event or per row; compared with the size base.
    Size,
    /// Printed, not compared.
    Info,
}

/// One figure of one level.
pub struct Metric {
    name: String,
    value: f64,
    kind: Kind,
}

pub fn metric(name: impl Into<String>, value: f64, kind: Kind) -> Metric {
    Metric {
        name: name.into(),
        value,
        kind,
    }
}

/// Sizes of the store's tables: the events heap and each of its indexes
/// in bytes per event (= MB per million events), `streams` and `commands`
/// in bytes per row (their rows per event depend on the mix of appends, not
/// on scale), any other table in kB (they do not grow with events here).
pub async fn sizes(state: &State) -> Result<Vec<Metric>> {
    let schema = &state.store.options().schema;
    let per = |bytes: i64, rows: u64| bytes as f64 / rows.max(1) as f64;
    let pool = state.store.pool();
    let failed = |e: sqlx::Error| format!("sizes: {e}");
    let tables = sqlx::query(
        "SELECT c.relname::text, pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname <> 'events', c.relname",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .map_err(failed)?;
    let indexes = sqlx::query(
        "SELECT i.relname::text, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = to_regclass(format('%I.events', $1::text)) ORDER BY i.relname",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .map_err(failed)?;
    let (events, streams) = (state.stored, (state.slots.len() + state.hot.len()) as u64);
    let mut out = Vec::new();
    let mut all = 0i64;
    for row in &tables {
        let name: String = row.get(0);
        let (heap, index, total): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
        all += total;
        let size = match name.as_str() {
            "events" => {
                out.push(metric("size: events heap (B/event)", per(heap, events), Kind::Size));
                for index in &indexes {
                    let (index_name, bytes): (String, i64) = (index.get(0), index.get(1));
                    out.push(metric(
                        format!("size: index {index_name} (B/event)"),
                        per(bytes, events),
                        Kind::Size,
                    ));
                }
                out.push(metric(
                    "size: events, all indexes (B/event)",
                    per(index, events),
                    Kind::Size,
                ));
                metric("size: events, total (B/event)", per(total, events), Kind::Size)
            }
            "streams" => metric("size: streams, total (B/stream)", per(total, streams), Kind::Size),
            "commands" => metric(
                "size: commands, total (B/append)",
                per(total, state.commands),
                Kind::Size,
            ),
            _ => metric(format!("size: {name}, total (kB)"), total as f64 / 1024.0, Kind::Info),
        };
        out.push(size);
    }
    out.push(metric("size: whole schema (B/event)", per(all, events), Kind::Size));
    out.push(metric("size: whole schema (MB)", all as f64 / 1e6, Kind::Info));
    Ok(out)
}

pub fn fmt_int(value: f64) -> String {
    let digits = (value.round() as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The markdown table, and the metrics outside the tolerance.
pub fn report(results: &[(u64, Vec<Metric>)]) -> (String, Vec<String>) {
    let mut names: Vec<(&str, Kind)> = Vec::new();
    for (_, metrics) in results {
        for m in metrics {
            if !names.iter().any(|(n, _)| *n == m.name) {
                names.push((&m.name, m.kind));
            }
        }
    }
    let value = |level: usize, name: &str| results[level].1.iter().find(|m| m.name == name).map(|m| m.value);
    let sized = "events in the store when sized";
    let size_base = (0..results.len())
        .find(|&i| value(i, sized).is_some_and(|v| v >= SIZE_BASE_MIN as f64))
        .unwrap_or(0);
    let mut out = String::from("| metric |");
    let mut rule = String::from("|---|");
    for (i, (level, _)) in results.iter().enumerate() {
        out.push_str(&format!(" level {} |", fmt_int(*level as f64)));
        rule.push_str("---|");
        if i > 0 {
            out.push_str(" ratio |");
            rule.push_str("---|");
        }
    }
    out.push('\n');
    out.push_str(&rule);
    let mut flagged = Vec::new();
    for (name, kind) in names {
        out.push_str(&format!("\n| {name} |"));
        let base = if kind == Kind::Size { size_base } else { 0 };
        for (i, (level, _)) in results.iter().enumerate() {
            let v = value(i, name);
            let cell = match (v, kind) {
                (None, _) => "—".to_owned(),
                (Some(v), Kind::Size) => format!("{v:.1}"),
                (Some(v), _) => fmt_int(v),
            };
            out.push_str(&format!(" {cell} |"));
            if i == 0 {
                continue;
            }
            let ratio = match (v, value(base, name)) {
                _ if kind == Kind::Info || i < base => "—".to_owned(),
                _ if i == base => "base".to_owned(),
                (Some(v), Some(b)) if b > 0.0 => {
                    let r = v / b;
                    if (r - 1.0).abs() > TOLERANCE {
                        flagged.push(format!("{name} at level {}: {r:.2}×", fmt_int(*level as f64)));
                        format!("{r:.2}× ⚠")
                    } else {
                        format!("{r:.2}×")
                    }
                }
                _ => "—".to_owned(),
            };
            out.push_str(&format!(" {ratio} |"));
        }
    }
    (out, flagged)
}
