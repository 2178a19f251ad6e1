//! The bank suite's workload, a user of the public [`ChaosWorkload`] API:
//! accounts opened and linked to owners, then transfers (half of them on
//! four hot accounts, now and then more than an account holds) and
//! consolidations, judged by the simulator's bank model and the examples'
//! own `Audit`.

use super::ChaosConfig;
use crate::faults::FaultRng;
use crate::ledger::{owner, Consolidate, Link};
use crate::workload::{ChaosCommand, ChaosWorkload};
use eventcore::{RecordedEvent, StreamId};
use eventcore_examples::bank::{account, Audit, OpenAccount, Transfer, PREFIX};
use eventcore_sim::check::DomainModel;
use eventcore_sim::workload::bank::BankModel;

pub(super) struct Bank {
    accounts: u32,
    owners: u32,
    initial_balance: u64,
}

impl Bank {
    pub(super) fn new(config: &ChaosConfig) -> Self {
        Bank {
            accounts: config.accounts,
            owners: config.owners,
            initial_balance: config.initial_balance,
        }
    }
}

impl ChaosWorkload for Bank {
    fn setup(&self) -> Vec<ChaosCommand> {
        let mut commands = Vec::new();
        for n in 1..=self.accounts {
            let command = OpenAccount {
                account: account(n),
                initial: self.initial_balance,
            };
            commands.push(ChaosCommand::new(format!("open {}", command.account), command));
        }
        for o in 1..=self.owners {
            for k in 0..4 {
                let number = ((o - 1) * 4 + k) % self.accounts.max(1) + 1;
                let command = Link {
                    owner: owner(o),
                    account: number,
                };
                commands.push(ChaosCommand::new(
                    format!("link account-{number} to owner-{o}"),
                    command,
                ));
            }
        }
        commands
    }

    fn next(&self, _client: u64, rng: &mut FaultRng) -> ChaosCommand {
        if rng.percent(15) {
            let command = Consolidate {
                owner: owner(rng.between(1, u64::from(self.owners.max(1))) as u32),
                amount: 5,
            };
            return ChaosCommand::new(format!("consolidate {} by {}", command.owner, command.amount), command);
        }
        // Half of the transfers touch the hot accounts (1..=4).
        let accounts = u64::from(self.accounts);
        let pick = |rng: &mut FaultRng| {
            if rng.percent(50) {
                rng.between(1, 4.min(accounts))
            } else {
                rng.between(1, accounts)
            }
        };
        let from = pick(rng);
        let mut to = pick(rng);
        if to == from {
            to = from % accounts + 1;
        }
        let command = Transfer {
            from: account(from as u32),
            to: account(to as u32),
            // Now and then more than an account may hold, so that the
            // domain refuses (and the checker verifies it wrote nothing).
            amount: if rng.percent(10) {
                rng.between(self.initial_balance / 2, self.initial_balance * 2)
            } else {
                rng.between(1, 30)
            },
        };
        ChaosCommand::new(
            format!("transfer {} -> {}: {}", command.from, command.to, command.amount),
            command,
        )
    }

    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        vec![Box::new(BankModel::for_prefix(PREFIX))]
    }

    fn audit(&self, events: &[RecordedEvent]) -> Vec<String> {
        Audit::of(events).violations
    }

    fn hot_streams(&self) -> Vec<StreamId> {
        (1..=4.min(self.accounts)).map(account).collect()
    }
}
