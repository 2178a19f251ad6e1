//! PostgreSQL only: concurrent multi-stream transfers from many connections
//! through the real `Executor`; afterwards money is conserved, no balance
//! went negative and every stream's versions are contiguous.

use eventcore::{
    CommandError, EventFilter, ExecutionError, ExecutionPolicy, GlobalPosition, RecordedEvent, RetryPolicy,
};
use eventcore_examples::bank::{account, Audit, BankError, OpenAccount, Transfer};
use eventcore_postgres::PostgresStore;
use eventcore_tests::conformance::read_all_request;
use eventcore_tests::postgres::{fresh_store_with, options};
use eventcore_tokio::{EventStore, Executor};
use std::sync::Arc;

async fn whole_log(store: &PostgresStore) -> Vec<RecordedEvent> {
    let mut after = GlobalPosition::START;
    let mut log = Vec::new();
    loop {
        let page = store
            .read_all(&read_all_request(after, 500, EventFilter::all()))
            .await
            .expect("read_all");
        if page.events.is_empty() && page.complete_through == after {
            return log;
        }
        after = page.complete_through;
        log.extend(page.events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_from_many_connections_conserve_money() {
    let Some(store) = fresh_store_with(options("bank").max_connections(12)).await else {
        return;
    };
    // Twelve writers on ten accounts conflict a lot: allow enough retries
    // that every transfer either commits or is refused by the domain.
    let policy = ExecutionPolicy::default().with_retry(RetryPolicy {
        max_attempts: 200,
        ..RetryPolicy::default()
    });
    let executor = Arc::new(Executor::new(store.clone()).with_policy(policy));
    let accounts = 10u32;
    for n in 0..accounts {
        executor
            .execute(OpenAccount {
                account: account(n),
                initial: 1_000,
            })
            .await
            .expect("open account");
    }

    let tasks = 12u64;
    let transfers_per_task = 25u64;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let executor = executor.clone();
        handles.push(tokio::spawn(async move {
            let mut committed = 0u32;
            for i in 0..transfers_per_task {
                let from = (task + i) % u64::from(accounts);
                let to = (from + 1 + (task * 7 + i) % u64::from(accounts - 1)) % u64::from(accounts);
                let transfer = Transfer {
                    from: account(from as u32),
                    to: account(to as u32),
                    amount: 1 + (task * 31 + i * 17) % 300,
                };
                match executor.execute(transfer).await {
                    Ok(_) => committed += 1,
                    Err(ExecutionError {
                        error: CommandError::Domain(BankError::InsufficientFunds { .. }),
                        ..
                    }) => {}
                    Err(error) => panic!("transfer failed: {error}"),
                }
            }
            committed
        }));
    }
    let mut committed = 0u32;
    for handle in handles {
        committed += handle.await.expect("transfer task");
    }
    assert!(committed > 0, "some transfers commit");

    let log = whole_log(&store).await;
    let audit = Audit::of(&log);
    assert!(audit.violations.is_empty(), "invariants hold: {:?}", audit.violations);
    assert_eq!(audit.opened_total, u64::from(accounts) * 1_000);
    assert_eq!(audit.final_total, audit.opened_total, "money is conserved");
    assert_eq!(
        log.len(),
        accounts as usize + 2 * committed as usize,
        "one Opened per account and two events per committed transfer"
    );
}
