//! `eventcore retention run`: physically remove the events a retention
//! policy allows (or, with `--dry-run`, say which), as the maintenance job
//! of `docs/data-lifecycle.md` ("Retention").

use crate::args::{Connection, RetentionArgs};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::output::{Align, Out, Table};
use eventcore::{RetentionOptions, RetentionPlan, RetentionPolicy, RetentionReport, Time};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `retention run --json` prints.
#[derive(Debug, Serialize)]
struct ReportJson<'a> {
    category: &'a str,
    dry_run: bool,
    events_removed: u64,
    archived: u64,
    batches: u64,
    ranges: Vec<RangeJson<'a>>,
}

/// One removed range, as JSON.
#[derive(Debug, Serialize)]
struct RangeJson<'a> {
    stream: &'a str,
    first_version: u64,
    last_version: u64,
    first_position: u64,
    last_position: u64,
    reason: &'static str,
    removed_at_ns: u64,
}

/// The policy the command line describes.
fn policy(args: &RetentionArgs) -> Result<RetentionPolicy, CliError> {
    let mut policy = RetentionPolicy::new(&args.category);
    if let Some(age) = args.max_age {
        policy = policy.with_max_age(age.0);
    }
    if let Some(count) = args.max_count {
        policy = policy.with_max_count(count);
    }
    if args.tombstoned {
        policy = policy.removing_tombstoned(args.tombstone_grace.map_or(Duration::ZERO, |g| g.0));
    }
    if !policy.removes_anything() {
        return Err(CliError::Usage(
            "retention run: give at least one of --max-age, --max-count, --tombstoned".to_owned(),
        ));
    }
    Ok(policy)
}

/// Runs `retention run`.
pub async fn run(connection: &Connection, args: &RetentionArgs, out: &mut Out) -> Result<(), CliError> {
    let plan = RetentionPlan::new([policy(args)?]);
    let mut options = RetentionOptions {
        dry_run: args.dry_run,
        archive: args.archive,
        ..RetentionOptions::default()
    };
    if let Some(batch) = args.batch_size {
        options.batch_size = batch;
    }
    let store = connect_migrated(connection).await?;
    let report = store.apply_retention(&plan, now(), options).await?;
    if out.json {
        return out.document(&json(&args.category, &report));
    }
    let verb = if report.dry_run { "would remove" } else { "removed" };
    let mut summary = format!(
        "category {:?}: {verb} {} events in {} ranges",
        args.category,
        report.events_removed(),
        report.ranges.len()
    );
    if !report.dry_run {
        summary.push_str(&format!(" ({} transactions", report.batches));
        if options.archive {
            summary.push_str(&format!(", {} archived", report.archived));
        }
        summary.push(')');
    }
    out.text(&summary)?;
    if report.ranges.is_empty() {
        return Ok(());
    }
    let mut table = Table::new(&[
        ("STREAM", Align::Left),
        ("VERSIONS", Align::Right),
        ("POSITIONS", Align::Right),
        ("REASON", Align::Left),
    ]);
    for range in &report.ranges {
        table.row(vec![
            range.stream.to_string(),
            format!("{}..={}", range.first_version, range.last_version),
            format!("{}..={}", range.first_position, range.last_position),
            range.reason.to_string(),
        ]);
    }
    out.table(&table)
}

fn json<'a>(category: &'a str, report: &'a RetentionReport) -> ReportJson<'a> {
    ReportJson {
        category,
        dry_run: report.dry_run,
        events_removed: report.events_removed(),
        archived: report.archived,
        batches: report.batches,
        ranges: report
            .ranges
            .iter()
            .map(|r| RangeJson {
                stream: r.stream.as_str(),
                first_version: r.first_version.get(),
                last_version: r.last_version.get(),
                first_position: r.first_position.get(),
                last_position: r.last_position.get(),
                reason: r.reason.as_str(),
                removed_at_ns: r.removed_at.as_unix_nanos(),
            })
            .collect(),
    }
}

/// The wall clock: ages are measured against it.
#[allow(clippy::disallowed_methods)] // the job runs against the wall clock
fn now() -> Time {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Time::from_unix_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// A duration on the command line: a number and a unit, `s`, `m`, `h` or
/// `d` (`90d`, `12h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Age(pub Duration);

impl std::str::FromStr for Age {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not a duration like 90d, 12h, 30m or 45s");
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        Ok(Age(Duration::from_secs(n.checked_mul(seconds).ok_or_else(bad)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_with_their_unit_and_refuse_anything_else() {
        assert_eq!("90d".parse(), Ok(Age(Duration::from_secs(90 * 86_400))));
        assert_eq!("12h".parse(), Ok(Age(Duration::from_secs(12 * 3_600))));
        assert_eq!("30m".parse(), Ok(Age(Duration::from_secs(1_800))));
        assert_eq!("45s".parse(), Ok(Age(Duration::from_secs(45))));
        for bad in ["90", "d", "90w", "-1d", "1.5d", ""] {
            assert!(bad.parse::<Age>().is_err(), "{bad}");
        }
    }
}
