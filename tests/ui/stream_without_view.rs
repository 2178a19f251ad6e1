use eventcore::{Command, StreamId};

#[derive(Command)]
struct Deposit {
    #[stream]
    account: StreamId,
}

fn main() {}
