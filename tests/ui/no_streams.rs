use eventcore::{Command, StreamId};

#[derive(Command)]
struct Deposit {
    account: StreamId,
    amount: u64,
}

fn main() {}
